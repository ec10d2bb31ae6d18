package svc

import (
	"cmp"
	"errors"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The server reports a denied publish asynchronously; a request would then just time
// out. Connections made with ConnOptions record those reports so requests can fail at
// once with a clear permission error instead.

type permWatch struct {
	mu   sync.Mutex
	last string
	ch   chan struct{} // closed and replaced on every violation
}

// watches holds one entry per open connection that made a request or had a violation;
// an entry goes when its connection closes (ConnOptions' ClosedHandler), and entries of
// connections made without it are swept whenever a new one is added.
var watches sync.Map // *nats.Conn -> *permWatch

func watchOf(nc *nats.Conn) *permWatch {
	if w, ok := watches.Load(nc); ok {
		return w.(*permWatch)
	}
	if nc.IsClosed() { // nothing to wait for, and nothing would remove the entry
		return &permWatch{ch: make(chan struct{})}
	}
	w, loaded := watches.LoadOrStore(nc, &permWatch{ch: make(chan struct{})})
	if !loaded {
		watches.Range(func(k, _ any) bool {
			if c := k.(*nats.Conn); c != nc && c.IsClosed() {
				watches.Delete(c)
			}
			return true
		})
	}
	return w.(*permWatch)
}

// ConnOptions are the options a connection needs for Call and FanOut to report a
// denied publish at once: ErrorHandler, and a ClosedHandler that forgets the connection.
func ConnOptions() []nats.Option {
	return []nats.Option{
		nats.ErrorHandler(ErrorHandler),
		nats.ClosedHandler(func(nc *nats.Conn) { watches.Delete(nc) }),
	}
}

// ErrorHandler is a nats.ErrHandler that records permission violations for Call and FanOut.
func ErrorHandler(nc *nats.Conn, _ *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) || nc.IsClosed() {
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
			return v1.Errorf(v1.CodeForbidden, "permission denied: this NATS user may not publish to %s (%s)", subject, w.last)
		}
		// the replies' inbox: no answer could ever arrive, so say so now, not at the timeout
		if inbox := cmp.Or(nc.Opts.InboxPrefix, nats.InboxPrefix); strings.Contains(w.last, "Subscription") && strings.Contains(w.last, `"`+strings.TrimSuffix(inbox, ".")+".") {
			return v1.Errorf(v1.CodeForbidden, "permission denied: this NATS user may not subscribe to its replies' inbox %s.> (%s): give it that right, or the prefix it may subscribe to with --nats.inbox-prefix (a user made by nex security user has _INBOX_<name>)", strings.TrimSuffix(inbox, "."), w.last)
		}
		return nil
	}
}
