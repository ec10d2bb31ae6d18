package native

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native/health"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
	"go.uber.org/zap"
)

// A service's health check (start_request.health): package health's types.
type (
	HealthCheck = health.Check
	ExecCheck   = health.ExecCheck
	HTTPCheck   = health.HTTPCheck
	TCPCheck    = health.TCPCheck
)

// runningState is the state of a service whose process just started: starting until its
// first passing check when it has one. Caller holds h.mu.
func (h *handle) runningState() string {
	if h.sr.health != nil {
		h.health = v1.WorkloadHealthStarting
		return v1.StateStarting
	}
	return v1.StateRunning
}

// checkHealth runs the service's health check against the attempt whose process is pid
// (health.Watch), until the returned function is called. A failing service is marked
// unhealthy and its attempt ended, so the run loop restarts it per its policy.
func (h *handle) checkHealth(pid int) (stop func()) {
	hc := h.sr.health
	if hc == nil {
		return func() {}
	}
	return health.Watch(hc, pid, h.sr.grace, health.Hooks{
		Exec: h.execProbe,
		Pass: func(first bool) {
			if first || h.healthIs(v1.WorkloadHealthUnhealthy) {
				h.setHealth(v1.WorkloadHealthHealthy)
				h.event(v1.EventHealthy, nil, "")
			}
		},
		Fail: func(msg string, err error) {
			h.setHealth(v1.WorkloadHealthUnhealthy)
			h.mu.Lock()
			h.lastError = msg
			h.mu.Unlock()
			h.event(v1.EventUnhealthy, nil, msg)
			h.log.Warn("service unhealthy: restarting it per its policy", zap.Error(err))
			h.killedUnhealthy.Store(true)
		},
		Kill: func() { h.cg.Kill() },
		As:   h.identity(),
	})
}

func (h *handle) healthIs(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.health == s
}

// setHealth records the verdict; the first pass turns a starting service running.
func (h *handle) setHealth(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.health = s
	if s == v1.WorkloadHealthHealthy && h.state == v1.StateStarting {
		h.state = v1.StateRunning
	}
}

// runBeside runs argv beside the workload, as the workload (its user, a sandbox of its
// own, its workdir, environment and cgroup): a health check's exec and nex workload exec.
// Its process group is killed when ctx ends, and at the latest when it exits.
func (h *handle) runBeside(ctx context.Context, argv []string, stdout, stderr io.Writer, tty *os.File) (syscall.WaitStatus, error) {
	s := spawn.Spec{Path: argv[0], Argv: argv[1:], Dir: h.wd.Path, Env: h.environment(), Attr: h.procAttr(), NoNewPrivs: h.identity() != nil, Stdout: stdout, Stderr: stderr, TTY: tty, Cgroup: h.cg}
	c, err := h.startChild(s) // sandboxed: it sees what the workload sees, no more
	if tty != nil {
		_ = tty.Close() // the command has it; the master reads EIO once the command's side is closed
	}
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { spawn.KillGroup(c.Pid, syscall.SIGKILL) })
	ws := c.Wait()
	stop()
	spawn.KillGroup(c.Pid, syscall.SIGKILL)
	return ws, nil
}

// execProbe runs argv as the workload (its user, sandbox, workdir, environment and cgroup).
func (h *handle) execProbe(ctx context.Context, argv []string) error {
	out := spawn.LimitedBuffer{Max: MaxReplyBytes}
	var mu sync.Mutex
	w := spawn.WriterFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	ws, err := h.runBeside(ctx, argv, w, w, nil)
	if err != nil {
		return fmt.Errorf("run %s: %v", argv[0], err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s timed out", argv[0])
	}
	if code := spawn.StatusCode(ws); code != 0 {
		mu.Lock()
		last := health.LastLine(out.String())
		mu.Unlock()
		if last != "" {
			return fmt.Errorf("%s exited %d: %s", argv[0], code, last)
		}
		return fmt.Errorf("%s exited %d", argv[0], code)
	}
	return nil
}
