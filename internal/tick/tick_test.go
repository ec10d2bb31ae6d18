package tick

import (
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
	at := Next(base, 30*time.Second, p)
	for _, every := range []time.Duration{time.Second, 2 * time.Second, 10 * time.Second} {
		if got := Next(at.Add(-time.Nanosecond), every, p); !got.Equal(at) {
			t.Errorf("every %v: %v is not an instant (next %v)", every, at, got)
		}
	}
	if p < 0 || p >= time.Second || p == Phase("another node") {
		t.Errorf("phases %v and %v", p, Phase("another node"))
	}
}

// A ticker's ticks come on its instants, one a period, until it stops.
func TestTickerTicksOnItsInstants(t *testing.T) {
	const every, phase = 100 * time.Millisecond, 37 * time.Millisecond
	tk := NewTicker(every, phase)
	made := time.Now()
	var ticks []time.Time
	deadline := time.After(10 * time.Second)
	for len(ticks) < 4 {
		select {
		case now := <-tk.C:
			ticks = append(ticks, now)
		case <-deadline:
			t.Fatalf("%d ticks in 10 s", len(ticks))
		}
	}
	tk.Stop()
	if want := Next(made, every, phase); ticks[0].Before(want) {
		t.Errorf("first tick %v before its instant %v", ticks[0], want)
	}
	for _, at := range ticks {
		// how far past its instant a tick came: timer latency, tens of ms on a loaded machine
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
	case <-time.After(3 * every):
	}
}
