package tick

import (
	"fmt"
	"testing"
	"time"
)

func TestNextFallsOnThePhase(t *testing.T) {
	base := time.Unix(1_800_000_000, 0) // a whole minute
	for _, c := range []struct {
		now          time.Time
		every, phase time.Duration
		want         time.Time
	}{
		{base, 2 * time.Second, 0, base.Add(2 * time.Second)}, // on an instant: the next one
		{base.Add(time.Millisecond), 2 * time.Second, 0, base.Add(2 * time.Second)},
		{base, 2 * time.Second, 300 * time.Millisecond, base.Add(300 * time.Millisecond)},
		{base.Add(400 * time.Millisecond), 2 * time.Second, 300 * time.Millisecond, base.Add(2300 * time.Millisecond)},
		{base, time.Second, 300 * time.Millisecond, base.Add(300 * time.Millisecond)},
		{base.Add(30 * time.Millisecond), 50 * time.Millisecond, 300 * time.Millisecond, base.Add(50 * time.Millisecond)}, // a phase over the period
		{base, 30 * time.Second, 300 * time.Millisecond, base.Add(300 * time.Millisecond)},
	} {
		if got := Next(c.now, c.every, c.phase); !got.Equal(c.want) {
			t.Errorf("Next(%v, %v, %v) = %v, want %v", c.now.Sub(base), c.every, c.phase, got.Sub(base), c.want.Sub(base))
		}
	}
	// the instants of a longer period are instants of the shorter ones: a node's work
	// every 2 s, every second and every 30 s falls together
	p := Phase("NBPR7WGBGW6Y2UB3XWGVRS2D4W3GLFXT73MLXVAAZFPDX3FKFWWRLMVW")
	at30 := Next(base, 30*time.Second, p)
	for _, every := range []time.Duration{time.Second, 2 * time.Second, 10 * time.Second} {
		if got := Next(at30.Add(-time.Nanosecond), every, p); !got.Equal(at30) {
			t.Errorf("every %v: %v is not an instant (next %v)", every, at30, got)
		}
	}
	if p < 0 || p >= time.Second || p == Phase("another node") {
		t.Errorf("phases %v and %v", p, Phase("another node"))
	}
	// long periods: spread over the period from node to node, each on its node's 2 s
	// instants; short ones: the node's phase
	if PhaseOf("n", time.Second) != Phase("n") || PhaseOf("n", 2*time.Second) != Phase("n") {
		t.Error("short periods take the node's phase")
	}
	seen := map[time.Duration]bool{}
	for i := range 20 {
		id := fmt.Sprint("node-", i)
		ph := PhaseOf(id, 20*time.Minute)
		if ph < 0 || ph >= 20*time.Minute || (ph-Phase(id))%(2*time.Second) != 0 {
			t.Errorf("%s: phase %v for 20 min is not one of its 2 s instants (phase %v)", id, ph, Phase(id))
		}
		seen[ph.Truncate(time.Second)] = true
	}
	if len(seen) < 15 {
		t.Errorf("20 nodes' 20 min work falls in %d seconds: not spread", len(seen))
	}
	// the instant after a timer fired for one, early or late by less than half a period
	at := Next(base, 2*time.Second, p)
	for _, fired := range []time.Time{at.Add(-time.Millisecond), at, at.Add(900 * time.Millisecond)} {
		if got := After(fired, 2*time.Second, p); !got.Equal(at.Add(2 * time.Second)) {
			t.Errorf("After(%v) = %v, want %v", fired.Sub(at), got.Sub(at), 2*time.Second)
		}
	}
}

// A ticker's ticks come on its instants, one a period, until it stops.
func TestTickerTicksOnItsInstants(t *testing.T) {
	const every, phase = 500 * time.Millisecond, 137 * time.Millisecond
	made := time.Now()
	tk := NewTicker(every, phase)
	var ticks []time.Time
	deadline := time.After(20 * time.Second)
	for len(ticks) < 4 {
		select {
		case now := <-tk.C:
			ticks = append(ticks, now)
		case <-deadline:
			t.Fatalf("%d ticks in 20 s", len(ticks))
		}
	}
	tk.Stop()
	if want := Next(made, every, phase); ticks[0].Before(want) {
		t.Errorf("first tick %v before its instant %v", ticks[0], want)
	}
	for _, at := range ticks {
		// how far past its instant a tick came: timer latency, which a loaded machine
		// stretches (unaligned ticks would be anywhere in the period)
		late := time.Duration((at.UnixNano() - int64(phase)) % int64(every))
		if late > every/2 {
			t.Errorf("tick at %v is %v past an instant of phase %v", at, late, phase)
		}
	}
	select {
	case <-tk.C:
	default:
	}
	select {
	case <-tk.C:
		t.Error("a tick after Stop")
	case <-time.After(2 * every):
	}
}
