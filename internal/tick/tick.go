// Package tick puts a node's periodic work on common instants. An idle Go process costs
// in proportion to how often it wakes, not to what it does when awake: each wake-up
// sets the runtime's sysmon thread polling for a while, and threads handing work to one
// another. nexd's announcement, its coordinator's lease renewal and its connection
// checks, and its nexlet's heartbeat and checks, each on a ticker of its own, woke an idle
// node at as many moments of each period. Tickers of one phase fire at the instants
// phase + k × period of the wall clock, the same instants in every process of the node
// (nexd and its nexlets share the node's ID, so its phase): they wake together.
package tick

import (
	"hash/fnv"
	"sync"
	"time"
)

// Phase is where in each second the periodic work of the node nodeID falls: a different
// moment for each node, so that nodes do not all announce themselves at once.
func Phase(nodeID string) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(nodeID))
	return time.Duration(h.Sum64() % uint64(time.Second))
}

// PhaseOf is the phase of a task of period every on node nodeID: Phase for periods up to
// 2 s; for longer ones, Phase and a whole number of 2 s, so that nodes spread such work
// over its period (a cluster's credential renewals, every 20 min, would otherwise all
// fall in one second: a storm of reconnects and logins at the servers) while each node's
// still falls on one of its 2 s instants.
func PhaseOf(nodeID string, every time.Duration) time.Duration {
	const step = 2 * time.Second
	if every <= step {
		return Phase(nodeID)
	}
	h := fnv.New64a()
	h.Write([]byte(nodeID))
	h.Write([]byte{'/'})
	return Phase(nodeID) + time.Duration(h.Sum64()%uint64(every/step))*step
}

// Next is the first instant after now of the form phase + k × every (of the wall
// clock's Unix time); now itself when every is not positive.
func Next(now time.Time, every, phase time.Duration) time.Time {
	if every <= 0 {
		return now
	}
	e := int64(every)
	past := (now.UnixNano() - int64(phase)%e) % e // since the last instant
	if past < 0 {
		past += e
	}
	return now.Add(time.Duration(e - past))
}

// Ticker is a time.Ticker whose ticks fall on Next's instants (as closely as timers
// fire): its first tick at the first such instant after it was made, then one at each
// instant. Each tick is timed from the wall clock anew, so the ticks of a process whose
// clock was set (NTP at boot) fall on the instants again, as its nexlets' do. Like
// time.Ticker's, a tick that finds the last one unread is dropped.
type Ticker struct {
	C    <-chan time.Time
	stop chan struct{}
	once sync.Once
}

// ForNode starts a ticker of period every on node nodeID's instants for it (PhaseOf).
func ForNode(nodeID string, every time.Duration) *Ticker {
	return NewTicker(every, PhaseOf(nodeID, every))
}

// NewTicker starts a ticker of period every on the instants of phase.
func NewTicker(every, phase time.Duration) *Ticker {
	if every <= 0 {
		panic("tick: non-positive interval for NewTicker")
	}
	c := make(chan time.Time, 1)
	t := &Ticker{C: c, stop: make(chan struct{})}
	go t.run(c, every, phase)
	return t
}

func (t *Ticker) run(c chan time.Time, every, phase time.Duration) {
	timer := time.NewTimer(time.Until(Next(time.Now(), every, phase)))
	defer timer.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-timer.C:
			// the time it fired, not the timer's value: that is when it was due (Go's
			// timers send it), which after a pause (SIGSTOP, a frozen VM) is before the
			// pause: the node could not tell it had been away (its late tick starts a
			// catch-up), and each re-arm from it was due at once, a burst of ticks
			now := time.Now()
			select {
			case c <- now:
			default:
			}
			timer.Reset(time.Until(After(now, every, phase)))
		}
	}
}

// After is the instant after the one a timer for it fired at, at now: Next of a little
// later (50 ms, or a tenth of a shorter period), so that a timer that fires a little
// before its instant by the wall clock (a clock being slewed) does not fire for it twice,
// while one that fired late (a loaded machine) keeps the next instant: half a period on
// skipped it for a timer late by more than that, and a coordinator renewing its lease
// every second with a 3 s window could go 2 s without a renewal.
func After(now time.Time, every, phase time.Duration) time.Time {
	return Next(now.Add(min(every/10, 50*time.Millisecond)), every, phase)
}

// Stop turns the ticker off (a tick sent as it was called may still be read).
func (t *Ticker) Stop() { t.once.Do(func() { close(t.stop) }) }
