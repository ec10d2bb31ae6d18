package natsconn

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// A nats-server ends a connection when the user JWT it authenticated with expires; there
// is no way to hand it a new one on the same connection. nex renews credentials files
// well before that (at a third of their lifetime), so a client can move to the new ones
// at a moment of its choosing. Renewal does it without losing anything a plain
// reconnect keeps: it closes the connection's socket itself, so nats.go reconnects the
// way it does after any network error (subscriptions sent again, publishes buffered,
// requests in flight still waiting for their replies, which ForceReconnect would fail),
// and it skips the reconnect delay for that one attempt (nats.go otherwise waits
// ReconnectWait, 2 s, before trying the only server again). The gap is a round trip to
// the server: a reply the server had to deliver in it is lost, as in any reconnect.

// Socket keeps a connection's socket (nats.CustomDialer: Option) so that its owner can
// close it (Close): nats.go then reconnects as after any network error, requests in
// flight waiting on for their replies (ForceReconnect fails them), nothing flushed to a
// socket that may take nothing.
type Socket struct {
	dialer net.Dialer
	mu     sync.Mutex
	conn   net.Conn
}

// NewSocket is a Socket that dials with a connect timeout (0: nats.go's default).
func NewSocket(timeout time.Duration) *Socket {
	if timeout <= 0 {
		timeout = nats.DefaultTimeout
	}
	return &Socket{dialer: net.Dialer{Timeout: timeout}}
}

// Option is the connection option that dials through s.
func (s *Socket) Option() nats.Option { return nats.SetCustomDialer(s) }

// Dial opens the connection's socket (nats.CustomDialer).
func (s *Socket) Dial(network, address string) (net.Conn, error) {
	c, err := s.dialer.Dial(network, address)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	return c, nil
}

// Close closes the socket the connection has now, if it has one; it says whether it had.
func (s *Socket) Close() bool {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return false
	}
	_ = c.Close()
	return true
}

// Renewal follows a credentials file that is replaced before it expires.
type Renewal struct {
	*Socket
	path string
	wait time.Duration // the reconnect delay after a real failure

	renewing atomic.Bool
	renewals atomic.Int64
}

// NewRenewal follows the credentials file at path.
func NewRenewal(path string) *Renewal {
	return &Renewal{Socket: NewSocket(0), path: path, wait: nats.DefaultReconnectWait}
}

// Options are the nats.Options a connection that follows the file needs: the
// credentials themselves, a dialer that lets Renewal close the socket, and the reconnect
// delay it skips for a renewal.
func (r *Renewal) Options() []nats.Option {
	return []nats.Option{
		nats.UserCredentials(r.path),
		nats.SetCustomDialer(r),
		nats.CustomReconnectDelay(func(int) time.Duration {
			if r.renewing.Swap(false) {
				return 0
			}
			return r.wait + rand.N(100*time.Millisecond)
		}),
	}
}

// Renewals counts the reconnects Renewal made.
func (r *Renewal) Renewals() int64 { return r.renewals.Load() }

// Reconnect moves the connection to the credentials in the file now.
func (r *Renewal) Reconnect() {
	r.renewing.Store(true)
	if r.Close() {
		r.renewals.Add(1)
	} else {
		r.renewing.Store(false)
	}
}

// Follow reconnects whenever the file is replaced (checked every interval), until ctx
// ends.
func (r *Renewal) Follow(ctx context.Context, every time.Duration) {
	WatchFile(ctx, r.path, every, r.Reconnect)
}

// WatchFile calls changed each time the file at path is replaced or rewritten (checked
// every interval), until ctx ends.
func WatchFile(ctx context.Context, path string, every time.Duration, changed func()) {
	follow(ctx, path, every, nil, changed)
}

// notifyBackstop is how often WatchFileNotify checks the file when the kernel tells it of
// changes all the same.
const notifyBackstop = 30 * time.Second

// WatchFileNotify is WatchFile for a daemon that should sleep when nothing changes: it
// wakes on the kernel's word that the file's directory changed (inotify), checking the
// file every 30 s besides, and every interval only where no watch can be had, or the
// watch failed (the directory removed, the path a symlink, whose target's changes the
// directory's events would not name). One process holds one inotify instance per call, of
// a per-user limit (128 by default): a workload's SDK polls instead.
func WatchFileNotify(ctx context.Context, path string, every time.Duration, changed func()) {
	events, stop := watchDir(path)
	defer stop()
	follow(ctx, path, every, events, changed)
}

// follow calls changed each time the file at path changes, checking it when events says
// so and every notifyBackstop, or every interval without events (nil, or once closed).
func follow(ctx context.Context, path string, every time.Duration, events <-chan struct{}, changed func()) {
	last := fileVersion(path)
	interval := every
	if events != nil {
		interval = notifyBackstop
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	check := func() {
		if v := fileVersion(path); v != (version{}) && v != last {
			last = v
			changed()
		}
	}
	if events != nil {
		check() // a change between the first look and the watch
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case _, ok := <-events:
			if !ok { // the watch failed: check every interval from now on
				events = nil
				t.Reset(every)
			}
		}
		check()
	}
}

// version tells one file at a path from the next: a replaced file has a new inode.
type version struct {
	mod  time.Time
	size int64
	ino  uint64
}

func fileVersion(path string) version {
	st, err := os.Stat(path)
	if err != nil {
		return version{}
	}
	return version{mod: st.ModTime(), size: st.Size(), ino: inode(st)}
}

func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}
