// Package proc holds what every nex process (nexd and its nexlets) sets up the same way:
// its logger, the logging of its NATS connection, and the default data directory.
package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nexrun/nex/internal/tick"
)

// NewLogger builds a process's zap logger on stderr.
func NewLogger(level string, asJSON bool) (*zap.Logger, error) {
	log, _, err := NewMovableLogger(level, asJSON)
	return log, err
}

// LogSink is where a logger writes: stderr until MoveTo sends it to a file.
type LogSink struct {
	w atomic.Pointer[zapcore.WriteSyncer]
}

// Write implements zapcore.WriteSyncer.
func (s *LogSink) Write(p []byte) (int, error) { return (*s.w.Load()).Write(p) }

// Sync implements zapcore.WriteSyncer.
func (s *LogSink) Sync() error { return (*s.w.Load()).Sync() }

// MoveTo sends everything logged from now on to the file at path (appended to).
func (s *LogSink) MoveTo(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	ws := zapcore.Lock(f)
	s.w.Store(&ws)
	return nil
}

// NewMovableLogger is NewLogger whose output can be moved to a file later (a nexlet whose
// nexd died, so that its stderr is a terminal or pipe nobody reads any more).
func NewMovableLogger(level string, asJSON bool) (*zap.Logger, *LogSink, error) {
	sink := &LogSink{}
	stderr := zapcore.Lock(os.Stderr)
	sink.w.Store(&stderr)
	log, err := newLogger(level, asJSON, sink)
	return log, sink, err
}

func newLogger(level string, asJSON bool, out zapcore.WriteSyncer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if asJSON {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, out, lvl)), nil
}

// SurviveSIGPIPE keeps a write to a closed stdout or stderr from killing this process (the
// write fails with EPIPE instead). It catches SIGPIPE rather than ignoring it: an ignored
// signal stays ignored in every process this one starts (a workload, a nexlet, the
// sandbox helper and what it starts), a caught one is the default again after exec.
func SurviveSIGPIPE() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// OnParentGone calls fn once when this process's parent has gone (it was reparented),
// checking every interval, on node nodeID's instants (tick.ForNode), until ctx ends.
func OnParentGone(ctx context.Context, every time.Duration, nodeID string, fn func()) {
	parent := os.Getppid()
	t := tick.ForNode(nodeID, every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != parent {
				fn()
				return
			}
		}
	}
}

// DefaultDataDir is /var/lib/nex for root, else $XDG_DATA_HOME/nex or ~/.local/share/nex.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/nex"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "nex")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".nex"
	}
	return filepath.Join(home, ".local", "share", "nex")
}

// PingEvery is how often nexd and nexlet-native check their NATS connections
// (CheckConns), and PingWait how long a check waits for the server's answer, then
// recheckWait more for a second ping: a server that drops off without closing the
// connection is left for another within 4.5-6.5 s, about as nats.go's own pings every
// 2 s, two unanswered, left it (4-6 s; not its defaults' 2 min x 2). nats.go still pings
// every backstopPing, for a process whose checks stopped.
const (
	PingEvery    = 2 * time.Second
	PingWait     = 2 * PingEvery
	recheckWait  = 500 * time.Millisecond
	backstopPing = 30 * time.Second
)

// ConnLogging logs a process's NATS connection losing and finding its server, so an
// operator sees a gap in service for what it is; the connection is to be checked with
// CheckConns.
func ConnLogging(log *zap.Logger) []nats.Option {
	return []nats.Option{
		nats.PingInterval(backstopPing), nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil && !nc.IsClosed() {
				log.Warn("NATS connection lost; reconnecting", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connection restored", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
	}
}

// Checked is a connection for CheckConns, with the socket it was dialled through, which
// CheckConns closes to leave a server that does not answer (a natsconn.Socket: requests
// in flight wait on through the reconnect, where ForceReconnect fails them, and a store
// write is to ride a reconnect out).
type Checked struct {
	Conn   *nats.Conn
	Socket interface{ Close() bool }
}

// CheckConns pings the server of each connection (nil ones aside) every PingEvery, on node
// nodeID's instants (tick.ForNode: with the rest of the node's periodic work, where
// nats.go's own ping timers woke the process at moments of their own), and leaves a
// server that answers neither that ping within PingWait nor a second one within
// recheckWait for another (it closes the socket), until ctx ends.
func CheckConns(ctx context.Context, nodeID string, log *zap.Logger, conns ...Checked) {
	t := tick.ForNode(nodeID, PingEvery)
	defer t.Stop()
	checking := make([]atomic.Bool, len(conns))
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, c := range conns {
			// one check at a time: a server that does not answer is waited for once
			if c.Conn == nil || !c.Conn.IsConnected() || !checking[i].CompareAndSwap(false, true) {
				continue
			}
			wg.Go(func() {
				defer checking[i].Store(false)
				// once more, briefly, before giving up: a process paused past the wait
				// finds the answer and its timer both due when it runs again
				if answers(ctx, c.Conn, PingWait) || answers(ctx, c.Conn, recheckWait) || !c.Conn.IsConnected() {
					return
				}
				log.Warn("NATS server did not answer two pings; connecting again", zap.String("server", c.Conn.ConnectedUrlRedacted()),
					zap.Duration("waited", PingWait+recheckWait))
				_ = c.Socket.Close()
			})
		}
	}
}

// StartChecks runs CheckConns in the background until the stop it returns is called, and
// waits for it to end there (nexd and nexlet-native check their connections until they
// are done, past a SIGTERM).
func StartChecks(nodeID string, log *zap.Logger, conns ...Checked) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		CheckConns(ctx, nodeID, log, conns...)
	}()
	return func() { cancel(); <-done }
}

// answers says whether nc's server answered a ping within wait, or whether the question
// went away (the connection reconnecting or closed, ctx ended). It waits no longer than
// wait even when the connection's writer is stuck on a socket that takes nothing, holding
// its lock: a flush cannot begin then. The flush left behind ends by its own timeout, or
// as the connection leaves the socket.
func answers(ctx context.Context, nc *nats.Conn, wait time.Duration) bool {
	flushed := make(chan error, 1)
	go func() { flushed <- nc.FlushTimeout(wait) }()
	t := time.NewTimer(wait + 100*time.Millisecond)
	defer t.Stop()
	select {
	case err := <-flushed:
		return !errors.Is(err, nats.ErrTimeout)
	case <-ctx.Done():
		return true
	case <-t.C:
		return false
	}
}

// DirLock is an exclusive lock on a data directory, held until Release or the process's
// end (the kernel lets go of it when the process dies, kill -9 included).
type DirLock struct{ f *os.File }

// ErrDirLocked means another process holds a data directory's lock.
var ErrDirLocked = errors.New("data directory is in use")

// LockDir takes the exclusive lock of dir (creating it), or fails at once naming the
// directory and the PID that holds it. Nothing in dir is touched when it fails.
func LockDir(dir, who string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock of data dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by %s; each %s needs its own --data-dir", ErrDirLocked, dir, describeHolder(holder), who)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d (%s)\n", os.Getpid(), who)), 0)
	return &DirLock{f: f}, nil
}

// LockHolder says whether a live process holds dir's lock (taken by LockDir), and its
// PID as the lock file names it (0 when it names none). The lock goes with its holder's
// death, so a held lock is a process that still runs.
func LockHolder(dir string) (pid int, held bool) {
	path := filepath.Join(dir, "lock")
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0, false
	}
	b, _ := os.ReadFile(path)
	_, _ = fmt.Sscanf(string(b), "pid %d", &pid)
	return pid, true
}

func describeHolder(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "another process"
	}
	return s
}

// Release lets go of the lock.
func (l *DirLock) Release() {
	if l != nil && l.f != nil {
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		_ = l.f.Close()
	}
}

// Executable says whether st is of a file one can run: not a directory, with an execute bit.
func Executable(st os.FileInfo) bool { return !st.IsDir() && st.Mode().Perm()&0o111 != 0 }
