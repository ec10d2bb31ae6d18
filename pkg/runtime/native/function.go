package native

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
)

// MaxReplyBytes bounds the stdout of a function invocation that answers a request.
const MaxReplyBytes = 1 << 20

// Headers on a function's reply.
const (
	HeaderExitCode = "Nex-Exit-Code"
	HeaderError    = "Nex-Error"
)

// function is the trigger side of a function workload: its subscriptions, a semaphore
// for the concurrency limit, and the process groups of running invocations.
type function struct {
	conn *nats.Conn // the workload's own connection when it has credentials
	subs []*nats.Subscription
	sem  chan struct{}
	wg   sync.WaitGroup

	mu          sync.Mutex
	running     map[int]struct{} // pgids of invocations in flight
	invocations uint64
}

// serve subscribes to every trigger with a queue group named after the workload, so
// replicas (clones) share the load.
func (h *handle) serveFunction() error {
	conc := h.sr.Concurrency
	if conc <= 0 {
		conc = 1
	}
	f := &function{sem: make(chan struct{}, conc), running: map[int]struct{}{}, conn: h.d.opts.Conn}
	h.fn = f
	if h.creds != "" {
		// Triggers arrive through the workload's own scoped connection, so a function
		// can only be triggered from its namespace.
		nc, err := nats.Connect(h.d.opts.NATSURL, nats.UserCredentials(h.creds), nats.Name("nex function "+h.id),
			nats.CustomInboxPrefix(creds.InboxPrefix(h.def.Namespace)), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect with the workload's credentials: %w", err)
		}
		f.conn = nc
	}
	queue := "nex-fn-" + h.def.Namespace + "-" + h.def.Name
	for _, subject := range h.sr.Triggers {
		sub, err := f.conn.QueueSubscribe(subject, queue, h.invoke)
		if err != nil {
			f.unsubscribe()
			return err
		}
		_ = sub.SetPendingLimits(-1, 64<<20)
		f.subs = append(f.subs, sub)
	}
	// A denied subscription shows up as an error on the next round trip.
	if err := f.conn.FlushTimeout(5 * time.Second); err != nil {
		f.unsubscribe()
		return err
	}
	if err := f.conn.LastError(); err != nil {
		f.unsubscribe()
		return fmt.Errorf("subscribe to triggers: %w", err)
	}
	return nil
}

func (f *function) unsubscribe() {
	for _, s := range f.subs {
		_ = s.Unsubscribe()
	}
	if f.conn != nil {
		_ = f.conn.Flush()
	}
}

// close ends the workload's own connection, if it has one.
func (f *function) close(shared *nats.Conn) {
	if f.conn != nil && f.conn != shared {
		f.conn.Close()
	}
}

// invoke runs the executable once for m. It blocks while the concurrency limit is
// reached, which holds further messages in the subscription's queue.
func (h *handle) invoke(m *nats.Msg) {
	f := h.fn
	select {
	case f.sem <- struct{}{}:
	case <-h.stopCh:
		return
	}
	f.wg.Add(1)
	go func() {
		defer func() { <-f.sem; f.wg.Done() }()
		h.runInvocation(m)
	}()
}

func (h *handle) runInvocation(m *nats.Msg) {
	f := h.fn
	began := time.Now()
	cmd := exec.Command(h.sr.path, h.sr.Argv...)
	cmd.Dir = h.workdir
	cmd.Env = append(h.environment(), "NEX_TRIGGER_SUBJECT="+m.Subject)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdin = bytes.NewReader(m.Data)
	cmd.WaitDelay = 2 * time.Second
	stderr := h.d.writer(h.def.Namespace, h.id, "stderr")
	var reply limitedBuffer
	var stdoutLog interface{ Close() error }
	if m.Reply != "" {
		cmd.Stdout = &reply
	} else {
		w := h.d.writer(h.def.Namespace, h.id, "stdout")
		cmd.Stdout, stdoutLog = w, w
	}
	cmd.Stderr = stderr
	code, errMsg := -1, ""
	if err := cmd.Start(); err != nil {
		errMsg = "start: " + err.Error()
	} else {
		pid := cmd.Process.Pid
		f.mu.Lock()
		f.running[pid] = struct{}{}
		f.mu.Unlock()
		var timedOut atomic.Bool
		if h.sr.timeout > 0 {
			t := time.AfterFunc(h.sr.timeout, func() {
				timedOut.Store(true)
				killGroup(pid, syscall.SIGKILL)
			})
			defer t.Stop()
		}
		err := cmd.Wait()
		code = exitCode(err)
		if timedOut.Load() {
			errMsg = "timed out after " + h.sr.timeout.String()
		}
		killGroup(pid, syscall.SIGKILL)
		f.mu.Lock()
		delete(f.running, pid)
		f.mu.Unlock()
	}
	_ = stderr.Close()
	if stdoutLog != nil {
		_ = stdoutLog.Close()
	}
	dur := time.Since(began)
	if m.Reply != "" {
		out := &nats.Msg{Subject: m.Reply, Data: reply.Bytes(), Header: nats.Header{HeaderExitCode: []string{strconv.Itoa(code)}}}
		if reply.truncated {
			out.Header.Set(HeaderError, "reply truncated at "+strconv.Itoa(MaxReplyBytes)+" bytes")
		}
		if errMsg != "" {
			out.Header.Set(HeaderError, errMsg)
		}
		_ = f.conn.PublishMsg(out)
	}
	f.mu.Lock()
	f.invocations++
	f.mu.Unlock()
	h.mu.Lock()
	h.exitCode = &code
	if errMsg != "" {
		h.lastError = errMsg
	}
	h.mu.Unlock()
	data := map[string]any{"subject": m.Subject, "duration_ms": float64(dur.Microseconds()) / 1000}
	if errMsg != "" {
		data["error"] = errMsg
	}
	h.d.opts.Feed.Event(v1.Event{Type: v1.EventTriggered, WorkloadID: h.id, Namespace: h.def.Namespace, ExitCode: &code, Data: data})
	if errMsg != "" {
		h.log.Debug("invocation failed", zap.String("error", errMsg))
	}
}

// stopFunction stops taking messages, then ends running invocations as stop ends a
// service: SIGTERM, the grace period, SIGKILL.
func (h *handle) stopFunction(grace time.Duration) {
	f := h.fn
	f.unsubscribe()
	defer f.close(h.d.opts.Conn)
	f.mu.Lock()
	pids := make([]int, 0, len(f.running))
	for pid := range f.running {
		pids = append(pids, pid)
	}
	f.mu.Unlock()
	for _, pid := range pids {
		killGroup(pid, syscall.SIGTERM)
	}
	idle := make(chan struct{})
	go func() { f.wg.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(grace):
		f.mu.Lock()
		for pid := range f.running {
			killGroup(pid, syscall.SIGKILL)
		}
		f.mu.Unlock()
		<-idle
	}
}

// limitedBuffer keeps the first MaxReplyBytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	truncated bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := MaxReplyBytes - b.Len(); len(p) > room {
		b.truncated = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
