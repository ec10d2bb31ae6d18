package registry

import (
	"context"
	"testing"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

func TestHealth(t *testing.T) {
	at := time.Unix(1000, 0)
	iv := 2 * time.Second
	for _, c := range []struct {
		ready bool
		age   time.Duration
		want  string
	}{
		{false, 0, v1.HealthRegistering},
		{false, 12 * time.Second, v1.HealthRegistering},
		{false, 13 * time.Second, v1.HealthLost},
		{true, 0, v1.HealthHealthy},
		{true, 6 * time.Second, v1.HealthHealthy},
		{true, 7 * time.Second, v1.HealthDegraded},
		{true, 12 * time.Second, v1.HealthDegraded},
		{true, 13 * time.Second, v1.HealthLost},
	} {
		if got := Health(c.ready, at, at.Add(c.age), iv); got != c.want {
			t.Errorf("ready %v, heard %s ago: %s, want %s", c.ready, c.age, got, c.want)
		}
	}
}

// A registration is made ready only by its own Ready: a newer registration of the same
// nexlet stays registering until its workloads are indexed.
func TestReadyIsPerRegistration(t *testing.T) {
	r := New(time.Second)
	now := time.Now()
	first := r.Register(v1.RegisterRequest{NexletID: "native", RegisterType: "native"}, now)
	second := r.Register(v1.RegisterRequest{NexletID: "native", RegisterType: "native"}, now)
	r.Ready("native", first)
	if e, _ := r.Get("native", now); e.Ready || e.Health != v1.HealthRegistering {
		t.Fatalf("the second registration was made ready by the first's: %+v", e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx, "native"); err == nil {
		t.Fatal("Wait returned before a registration of the type was ready")
	}
	done := make(chan error, 1)
	go func() { done <- r.Wait(context.Background(), "native") }()
	r.Ready("native", second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e, _ := r.Get("native", now); !e.Ready || e.Health != v1.HealthHealthy {
		t.Fatalf("after its own Ready: %+v", e)
	}
}

// A lost nexlet is reported once; a heartbeat makes it count again, and its next loss is
// reported again. A copy handed out changes nothing inside.
func TestNewlyLostOnceAndCopies(t *testing.T) {
	r := New(time.Second)
	t0 := time.Now()
	r.Ready("a", r.Register(v1.RegisterRequest{NexletID: "a"}, t0))
	r.Ready("b", r.Register(v1.RegisterRequest{NexletID: "b"}, t0))
	later := t0.Add(7 * time.Second)
	r.Heartbeat("b", t0.Add(5*time.Second), Stats{States: map[string]int{"running": 3}})
	if lost := r.NewlyLost(later); len(lost) != 1 || lost[0] != "a" {
		t.Fatalf("lost %v, want [a]", lost)
	}
	if lost := r.NewlyLost(later); len(lost) != 0 {
		t.Fatalf("reported again: %v", lost)
	}
	if r.Heartbeat("c", later, Stats{}) {
		t.Fatal("a heartbeat of a nexlet never registered was taken")
	}
	r.Heartbeat("a", later, Stats{})
	if lost := r.NewlyLost(later.Add(7 * time.Second)); len(lost) != 2 {
		t.Fatalf("after a heartbeat and a second silence: %v, want [a b]", lost)
	}
	all := r.All(later)
	all[0].Reg.NexletID = "changed"
	if e, _ := r.Get("a", later); e.Reg.NexletID != "a" {
		t.Fatal("a copy handed out changed the registry")
	}
}
