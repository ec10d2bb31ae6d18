package native

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
)

// MaxReplyBytes bounds the stdout of a function invocation that answers a request.
const MaxReplyBytes = 1 << 20

// function is the trigger side of a function workload: its subscriptions, a semaphore
// for the concurrency limit, and the process groups of running invocations.
type function struct {
	sem chan struct{}
	wg  sync.WaitGroup // every invocation

	mu          sync.Mutex
	cur         *triggerConn
	running     map[int]struct{} // pgids of invocations in flight
	invocations uint64
}

// triggerConn is a connection the triggers arrive on and its subscriptions. A function
// with credentials has its own; when they are renewed a new one takes over before the
// old one is retired, so no trigger finds nobody listening.
type triggerConn struct {
	nc       *nats.Conn
	own      bool
	subs     []*nats.Subscription
	inflight sync.WaitGroup // invocations that must reply through nc
}

// serveFunction subscribes to every trigger with a queue group named after the workload,
// so replicas (clones) share the load.
func (h *handle) serveFunction() error {
	conc := h.sr.Concurrency
	if conc <= 0 {
		conc = 1
	}
	f := &function{sem: make(chan struct{}, conc), running: map[int]struct{}{}}
	h.fn.Store(f)
	tc, err := h.listen()
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.cur = tc
	f.mu.Unlock()
	return nil
}

// listen opens the trigger connection (the workload's own scoped one when it has
// credentials, so a function can only be triggered from its namespace) and subscribes.
func (h *handle) listen() (*triggerConn, error) {
	tc := &triggerConn{nc: h.d.opts.Conn}
	if h.wd.Creds() != "" {
		nc, err := nats.Connect(h.d.opts.NATSURL, h.wd.CredsOption(), nats.Name("nex function "+h.id),
			nats.CustomInboxPrefix(creds.InboxPrefix(h.def.Namespace)), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("connect with the workload's credentials: %w", err)
		}
		tc.nc, tc.own = nc, true
	}
	queue := "nex-fn-" + h.def.Namespace + "-" + h.def.Name
	for _, subject := range h.sr.Triggers {
		sub, err := tc.nc.QueueSubscribe(subject, queue, func(m *nats.Msg) {
			// JetStream delivers a push consumer's messages under the subject they were
			// stored with, and its heartbeats as status messages: another namespace's
			// consumer aimed at this trigger is not a trigger
			if !svc.DeliveredMsg(subject, m) {
				h.invoke(tc, m)
			}
		})
		if err != nil {
			tc.close()
			return nil, err
		}
		_ = sub.SetPendingLimits(-1, 64<<20)
		tc.subs = append(tc.subs, sub)
	}
	// A denied subscription shows up as an error on the next round trip.
	if err := tc.nc.FlushTimeout(5 * time.Second); err != nil {
		tc.close()
		return nil, err
	}
	if err := tc.nc.LastError(); err != nil {
		tc.close()
		return nil, fmt.Errorf("subscribe to triggers: %w", err)
	}
	return tc, nil
}

// renewed hands the triggers to a connection made with the renewed credentials, then
// retires the old one: its subscriptions are drained (messages already delivered to it
// still run) and it closes once their invocations have replied.
func (h *handle) renewed() {
	f := h.fn.Load()
	f.mu.Lock()
	old := f.cur
	f.mu.Unlock()
	if old == nil || !old.own {
		return
	}
	tc, err := h.listen()
	if err != nil {
		// the old connection reconnects with the new credentials when the server ends it
		h.log.Warn("function: triggers stay on the old connection", zap.Error(err))
		return
	}
	f.mu.Lock()
	if f.cur != old { // stopped meanwhile
		f.mu.Unlock()
		tc.close()
		return
	}
	f.cur = tc
	f.mu.Unlock()
	go old.retire()
}

func (tc *triggerConn) retire() {
	for _, s := range tc.subs {
		closed := s.StatusChanged(nats.SubscriptionClosed)
		if s.Drain() == nil {
			<-closed
		}
	}
	tc.inflight.Wait()
	tc.close()
}

// unsubscribe stops taking messages.
func (tc *triggerConn) unsubscribe() {
	for _, s := range tc.subs {
		_ = s.Unsubscribe()
	}
	_ = tc.nc.Flush()
}

// close ends the connection if it is the workload's own.
func (tc *triggerConn) close() {
	if tc.own {
		tc.nc.Close()
	}
}

// invoke runs the executable once for m. It blocks while the concurrency limit is
// reached, which holds further messages in the subscription's queue.
func (h *handle) invoke(tc *triggerConn, m *nats.Msg) {
	f := h.fn.Load()
	select {
	case f.sem <- struct{}{}:
	case <-h.stops.Asked():
		return
	}
	f.wg.Add(1)
	tc.inflight.Add(1)
	go func() {
		defer func() { <-f.sem; tc.inflight.Done(); f.wg.Done() }()
		h.runInvocation(tc, m)
	}()
}

func (h *handle) runInvocation(tc *triggerConn, m *nats.Msg) {
	f := h.fn.Load()
	began := time.Now()
	stderr := h.d.writer(h.def.Namespace, h.id, "stderr")
	reply := spawn.LimitedBuffer{Max: MaxReplyBytes}
	var stdoutLog interface{ Close() error }
	s := spawn.Spec{Path: h.sr.path, Argv: h.sr.Argv, Dir: h.wd.Path, Env: append(h.environment(), v1.EnvTriggerSubject+"="+m.Subject),
		Attr: h.procAttr(), NoNewPrivs: h.identity() != nil, Stdin: bytes.NewReader(m.Data), Stderr: stderr, Cgroup: h.cg}
	if m.Reply != "" {
		s.Stdout = &reply
	} else {
		w := h.d.writer(h.def.Namespace, h.id, "stdout")
		s.Stdout, stdoutLog = w, w
	}
	code, errMsg := -1, ""
	ooms := h.cg.OOMs()
	if c, err := h.startChild(s); err != nil {
		errMsg = "start: " + err.Error()
	} else {
		pid := c.Pid
		f.mu.Lock()
		f.running[pid] = struct{}{}
		f.mu.Unlock()
		var timedOut atomic.Bool
		if h.sr.timeout > 0 {
			t := time.AfterFunc(h.sr.timeout, func() {
				timedOut.Store(true)
				spawn.KillGroup(pid, syscall.SIGKILL)
			})
			defer t.Stop()
		}
		code = spawn.StatusCode(c.Wait())
		switch {
		case timedOut.Load():
			errMsg = "timed out after " + h.sr.timeout.String()
		case h.cg.OOMs() > ooms:
			errMsg = v1.ExitOOMKilled + ": " + h.oomMessage()
		}
		spawn.KillGroup(pid, syscall.SIGKILL)
		f.mu.Lock()
		delete(f.running, pid)
		f.mu.Unlock()
	}
	_ = stderr.Close()
	if stdoutLog != nil {
		_ = stdoutLog.Close()
	}
	dur := time.Since(began)
	// only to an inbox: a tenant that set a trigger's reply subject to the system
	// namespace's LAMEDUCK had its function's output published there (svc.InboxReply)
	if m.Reply != "" && svc.InboxReply(m.Reply) {
		out := &nats.Msg{Subject: m.Reply, Data: reply.Bytes(), Header: nats.Header{v1.HeaderExitCode: []string{strconv.Itoa(code)}}}
		if reply.Truncated {
			out.Header.Set(v1.HeaderError, "reply truncated at "+strconv.Itoa(MaxReplyBytes)+" bytes")
		}
		if errMsg != "" {
			out.Header.Set(v1.HeaderError, errMsg)
		}
		_ = tc.nc.PublishMsg(out)
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
func (h *handle) stopFunction(ctx context.Context, wait time.Duration) {
	f := h.fn.Load()
	f.mu.Lock()
	tc := f.cur
	f.cur = nil
	f.mu.Unlock()
	if tc != nil {
		tc.unsubscribe()
		defer tc.close()
	}
	f.mu.Lock()
	pids := make([]int, 0, len(f.running))
	for pid := range f.running {
		pids = append(pids, pid)
	}
	f.mu.Unlock()
	for _, pid := range pids {
		spawn.KillGroup(pid, syscall.SIGTERM)
	}
	idle := make(chan struct{})
	go func() { f.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		return
	case <-time.After(wait):
	case <-ctx.Done(): // the nexlet is shutting down: no more grace
	}
	f.mu.Lock()
	for pid := range f.running {
		spawn.KillGroup(pid, syscall.SIGKILL)
	}
	f.mu.Unlock()
	<-idle
}
