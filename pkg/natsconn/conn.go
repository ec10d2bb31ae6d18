package natsconn

import (
	"errors"
	"sync"

	"github.com/nats-io/nats.go"
)

// Conn is a NATS connection together with the permission violations the server reported
// on it. The server reports a denied publish or subscribe asynchronously, so a request
// that was denied would only time out; a Conn made by Watch keeps the latest report, and
// nex's requests (internal/svc) fail at once with a clear error instead.
//
// A Conn is made once per connection, by whoever makes or first receives the connection
// (the CLI, node.New, nexlet.Start), and shared by everything that uses it. It holds no
// global state: it goes when the connection's last user lets go of it.
type Conn struct {
	*nats.Conn
	denied *denials // nil for a Conn made by Plain
}

type denials struct {
	mu   sync.Mutex
	last string
	next chan struct{} // closed and replaced at every violation
}

// Watch wraps nc and records every permission violation the server reports on it, then
// passes the report on to the error handler nc had. Call it once per connection: each
// call puts one more handler in front of the connection's own.
func Watch(nc *nats.Conn) *Conn {
	d := &denials{next: make(chan struct{})}
	prev := nc.ErrorHandler()
	nc.SetErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			d.mu.Lock()
			d.last = err.Error()
			close(d.next)
			d.next = make(chan struct{})
			d.mu.Unlock()
		}
		if prev != nil {
			prev(c, s, err)
		}
	})
	return &Conn{Conn: nc, denied: d}
}

// Plain wraps nc without watching it: a request that is denied is reported when it times
// out, as with nats.go's own requests.
func Plain(nc *nats.Conn) *Conn { return &Conn{Conn: nc} }

// Denials returns a channel closed at the next violation reported after the call (nil,
// never closed, on a Conn made by Plain) and a function that gives the latest report's
// text ("" for none).
func (c *Conn) Denials() (next <-chan struct{}, last func() string) {
	d := c.denied
	if d == nil {
		return nil, func() string { return "" }
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.next, func() string {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.last
	}
}
