package supervise_test

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/pkg/node/supervise"
)

func TestSuperviseGivesUpAfterLimit(t *testing.T) {
	var mu sync.Mutex
	var events []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		supervise.Run(context.Background(), supervise.Process{Name: "false", Path: "/bin/false", Output: io.Discard, RestartLimit: 2,
			OnEvent:   func(typ, _ string) { mu.Lock(); events = append(events, typ); mu.Unlock() },
			AfterStop: func() { mu.Lock(); events = append(events, "after_stop"); mu.Unlock() }}, zap.NewNop())
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("supervisor did not give up")
	}
	mu.Lock()
	defer mu.Unlock()
	// once given up on, what it left is cleaned up (AfterStop)
	want := []string{"nexlet_restarting", "nexlet_restarting", "nexlet_failed", "after_stop"}
	if len(events) != len(want) {
		t.Fatalf("events %v, want %v", events, want)
	}
	for i := range want {
		if events[i] != want[i] {
			t.Fatalf("events %v, want %v", events, want)
		}
	}
}

func TestSuperviseAdoptsLiveInstance(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	alive, probes := true, 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		supervise.Run(ctx, supervise.Process{Name: "x", Path: "/bin/sleep", Args: []string{"60"}, Output: io.Discard,
			Alive: func(context.Context) bool { mu.Lock(); defer mu.Unlock(); probes++; return alive }}, zap.NewNop())
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		p := probes
		mu.Unlock()
		if p >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("supervisor never probed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done // returns without starting anything: the live instance is not its child
}
