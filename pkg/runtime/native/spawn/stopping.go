package spawn

import (
	"context"
	"sync"
)

// Stopping is the stop of one workload, which several callers may ask for at once (a
// node back from a pause stops it on two or three paths): the first carries it out, and
// the others wait for it. Each sent its own SIGTERM (three within 0.4 s in a walk), and
// a program that takes a second one for "exit now" skipped its graceful shutdown.
type Stopping struct {
	once        sync.Once
	asked, done chan struct{}
}

// NewStopping returns a stop not asked for yet.
func NewStopping() *Stopping {
	return &Stopping{asked: make(chan struct{}), done: make(chan struct{})}
}

// Do asks for the stop: the first caller runs stop; the others wait until it is done
// (or until ctx ends).
func (s *Stopping) Do(ctx context.Context, stop func()) {
	first := false
	s.once.Do(func() { close(s.asked); first = true })
	if first {
		defer close(s.done)
		stop()
		return
	}
	select {
	case <-s.done:
	case <-ctx.Done():
	}
}

// Asked is closed once a stop is asked for.
func (s *Stopping) Asked() <-chan struct{} { return s.asked }
