package tick

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
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
	for _, fired := range []time.Time{at.Add(-time.Millisecond), at, at.Add(900 * time.Millisecond), at.Add(1500 * time.Millisecond)} { // late by 1.5 s: the next instant all the same
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

// TestMain runs, in a child, a ticker that prints each tick's value and when it was
// received (TestTickAfterAPauseIsItsTime).
func TestMain(m *testing.M) {
	if os.Getenv("TICK_CHILD") == "1" {
		tk := NewTicker(100*time.Millisecond, 0)
		for v := range tk.C {
			fmt.Println(v.UnixNano(), time.Now().UnixNano())
		}
	}
	os.Exit(m.Run())
}

// A tick after the process was paused (SIGSTOP, as a frozen VM or a long GC pause) is the
// time it came, and one comes, not a burst: the ticks said when they had been due, before
// the pause, so the node could not tell it had been away (its catch-up waited for a
// reconnect: chaos seed 1's copies moved away during a pause ran on 5 s longer), and
// every re-arm from that time was due at once.
func TestTickAfterAPauseIsItsTime(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "TICK_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan [2]int64, 1000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			v, _ := strconv.ParseInt(f[0], 10, 64)
			r, _ := strconv.ParseInt(f[1], 10, 64)
			lines <- [2]int64{v, r}
		}
		close(lines)
	}()
	for range 3 { // it ticks
		if _, ok := <-lines; !ok {
			t.Fatal("the child ended")
		}
	}
	_ = cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(time.Second) // the pause, a fault injected (nothing waited for)
	for len(lines) > 0 {
		<-lines // printed before the stop took
	}
	resumed := time.Now()
	_ = cmd.Process.Signal(syscall.SIGCONT)
	var after [][2]int64
	deadline := time.After(10 * time.Second)
	for len(after) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the child ended")
			}
			if l[1] >= resumed.UnixNano() {
				after = append(after, l)
			}
		case <-deadline:
			t.Fatalf("%d ticks in 10 s after the resume", len(after))
		}
	}
	first := time.Duration(after[0][1] - after[0][0])
	if first > 300*time.Millisecond {
		t.Errorf("the first tick after a 1 s pause was dated %v before it came", first)
	}
	if gap := time.Duration(after[2][1] - after[0][1]); gap < 120*time.Millisecond {
		t.Errorf("three ticks within %v of the resume: a burst (at least 150 ms apart: one at once, then on the instants at least 50 ms on)", gap)
	}
}
