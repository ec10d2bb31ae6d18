package svc

import (
	"errors"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The server reports a denied publish asynchronously; a request would then just time
// out. Connections made with ErrorHandler record those reports so requests can fail at
// once with a clear permission error instead.

type permWatch struct {
	mu   sync.Mutex
	last string
	ch   chan struct{} // closed and replaced on every violation
}

var watches sync.Map // *nats.Conn -> *permWatch

func watchOf(nc *nats.Conn) *permWatch {
	w, _ := watches.LoadOrStore(nc, &permWatch{ch: make(chan struct{})})
	return w.(*permWatch)
}

// ErrorHandler is a nats.ErrHandler that records permission violations for Call and FanOut.
func ErrorHandler(nc *nats.Conn, _ *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	w := watchOf(nc)
	w.mu.Lock()
	w.last = err.Error()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

// violations returns a channel closed at the next violation, and a check for whether
// the latest one concerns subject.
func violations(nc *nats.Conn) (<-chan struct{}, func(subject string) error) {
	w := watchOf(nc)
	w.mu.Lock()
	ch := w.ch
	w.mu.Unlock()
	return ch, func(subject string) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if strings.Contains(w.last, `"`+subject+`"`) {
			return v1.NewError(403, v1.CodeForbidden, "permission denied: this NATS user may not publish to %s (%s)", subject, w.last)
		}
		return nil
	}
}
