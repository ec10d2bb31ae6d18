package native

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/retry"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/runtime/native/asuser"
	"github.com/nexrun/nex/pkg/runtime/native/cgroups"
	"github.com/nexrun/nex/pkg/runtime/native/runas"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
	"github.com/nexrun/nex/pkg/runtime/native/workdir"
)

// healthyReset is how long a service must run before its backoff starts over.
const healthyReset = 10 * time.Minute

// handle owns one workload: its process (one at a time), its restarts and its state.
type handle struct {
	d      *Driver
	id     string
	nodeID string
	def    v1.WorkloadDefinition
	sr     *parsed
	wd     *workdir.Dir // its workdir, and its credentials there
	uid    uint32       // the workload's own user (and group); 0: the nexlet's
	runAs  *runas.User  // the user it asked to run as (start_request.user)
	cg     *cgroups.Cgroup
	log    *zap.Logger

	fn        atomic.Pointer[function] // set for the function lifecycle (while the handle is already listed)
	env       map[string]string        // the environment with sealed values opened
	cleanOnce sync.Once
	// gate: every process of the workload (its own, a command beside it, a probe, an
	// invocation) is made under its read lock, and cleaned is set under its write lock
	// before the UID is given back: no process is made as the UID after its sweep.
	gate        sync.RWMutex
	cleaned     bool
	stops       *spawn.Stopping // asked for once; other stops wait for the first
	done        chan struct{}   // closed when the run loop has ended
	started     chan struct{}   // closed when Start has returned, whatever the outcome
	cancelStart context.CancelFunc

	mu          sync.Mutex
	state       string
	pid         int
	createdAt   time.Time
	startedAt   time.Time
	exitCode    *int
	exitReason  string
	health      string // with a health check: v1.WorkloadHealth*
	restarts    int
	nextRestart time.Time
	lastError   string
	dropped     uint64

	killedUnhealthy atomic.Bool  // the health check ended the current attempt
	diskUsed        atomic.Int64 // bytes in its workdir at the last check (with a disk limit)
}

// process is one attempt: the process, the writers that ship its output, and the
// cgroup's OOM kill count when it started.
type process struct {
	c              *spawn.Child
	stdout, stderr *nexlet.LineWriter
	ooms           int
}

// startProcess starts one attempt of the workload in its own process group (and its
// cgroup, when it has limits).
func (h *handle) startProcess() (*process, error) {
	p := &process{stdout: h.d.writer(h.def.Namespace, h.id, "stdout"), stderr: h.d.writer(h.def.Namespace, h.id, "stderr"), ooms: h.cg.OOMs()}
	s := spawn.Spec{Path: h.sr.path, Argv: h.sr.Argv, Dir: h.wd.Path, Env: h.environment(), Attr: h.procAttr(), Stdout: p.stdout, Stderr: p.stderr, Cgroup: h.cg, NoNewPrivs: h.identity() != nil}
	if h.sr.Stdin != nil {
		s.Stdin = strings.NewReader(*h.sr.Stdin)
	}
	c, err := h.startChild(s)
	if err != nil {
		return nil, err
	}
	p.c = c
	return p, nil
}

// startChild starts s, sandboxed as the workload is, unless the workload is being removed
// (gate): a process made as its UID once the UID was given back would outlive the UID's
// sweep, and run as the UID's next holder. The gate is held only while the process is
// made; the sweep kills whatever was made before.
func (h *handle) startChild(s spawn.Spec) (*spawn.Child, error) {
	h.sandboxed(&s)
	h.gate.RLock()
	defer h.gate.RUnlock()
	if h.cleaned {
		return nil, errors.New("the workload is being removed")
	}
	return spawn.Start(s)
}

// procAttr puts a workload process in its own process group, ends it with the nexlet,
// and runs it as the workload's user when it has one (no supplementary groups).
func (h *handle) procAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid, gid, ok := h.user(); ok {
		a.Credential = &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	}
	return a
}

// sandboxed makes s start the workload's process in a sandbox of its own, where this
// driver sandboxes and the workload runs as a user other than the nexlet's.
func (h *handle) sandboxed(s *spawn.Spec) {
	if uid, gid, ok := h.user(); ok && h.d.sandbox != "" {
		var tmp int64 // its private /tmp counts against its disk limit too
		if h.sr.Resources != nil {
			tmp = int64(h.sr.Resources.Disk)
		}
		s.Sandbox(h.d.sandbox, uid, gid, tmp)
	}
}

// sandboxPIDs is what a sandbox's init may hold of its workload's pids limit: its own
// threads (1 for nex-sandbox, 8 for the Go helper), and a health check's or invocation's.
const sandboxPIDs = 16

// cgroupLimits is what the workload's cgroup enforces: its resources, with room in pids
// for its sandbox's init, which runs in the cgroup too and is not the workload's to count.
func (h *handle) cgroupLimits() *v1.Resources {
	r := h.sr.Resources
	if _, _, ok := h.user(); ok && h.d.sandbox != "" && r != nil && r.PIDs > 0 {
		with := *r
		with.PIDs += sandboxPIDs
		return &with
	}
	return r
}

// user is the UID and GID the workload runs as, when not the nexlet's own.
func (h *handle) user() (uid, gid uint32, ok bool) {
	if h.runAs != nil {
		uid, gid := h.runAs.IDs()
		return uid, gid, true
	}
	return h.uid, h.uid, h.uid != 0
}

// identity is the filesystem identity of the workload's user, nil when it runs as the
// nexlet's own user.
func (h *handle) identity() *asuser.Identity {
	uid, gid, ok := h.user()
	if !ok {
		return nil
	}
	return &asuser.Identity{UID: uid, GID: gid}
}

func (h *handle) environment() []string {
	env := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	own := h.sr.Environment
	if h.env != nil { // opened by the SDK: sealed values in clear, for the process only
		own = h.env
	}
	for k, v := range own {
		env[k] = v
	}
	env[v1.EnvWorkloadID] = h.id
	env[v1.EnvNamespace] = h.def.Namespace
	env[v1.EnvNodeID] = h.nodeID
	env[v1.EnvNexletID] = h.d.opts.NexletID
	env[v1.EnvWorkloadName] = h.def.Name
	if h.runAs != nil {
		env["HOME"], env["USER"] = h.runAs.Home(), h.runAs.Name()
	} else if h.uid != 0 { // a user of its own, with no home but its workdir
		env["HOME"] = h.wd.Path
		env["USER"] = "nex-" + strconv.FormatUint(uint64(h.uid), 10)
	}
	if h.d.opts.NATSURL != "" {
		env[v1.EnvNATSURL] = h.d.opts.NATSURL
	}
	if path := h.wd.Creds(); path != "" {
		env[v1.EnvNATSCreds] = path
		env[v1.EnvInboxPrefix] = creds.InboxPrefix(h.def.Namespace)
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// run supervises the workload until it is stopped, a job ends, or a service gives up.
// p is the already-started first attempt.
func (h *handle) run(p *process) {
	defer close(h.done)
	defer h.d.changed()
	defer h.cg.Remove() // it has ended for good: its cgroup goes now, not at its removal
	backoff := retry.Backoff{First: h.sr.initialDelay, Max: max(h.sr.initialDelay, h.sr.maxDelay)}
	for {
		began := time.Now()
		code, reason := h.wait(p)
		ev := v1.Event{Type: v1.EventExited, WorkloadID: h.id, Namespace: h.def.Namespace, ExitCode: &code}
		if reason != "" {
			ev.Data = map[string]any{"reason": reason}
		}
		h.d.opts.Feed.Event(ev)
		end := v1.LogEnd{ExitCode: code, Reason: reason, Final: true}
		if h.stopping() {
			h.d.opts.Feed.EndAfter(h.def.Namespace, h.id, end, p.stdout, p.stderr)
			return
		}
		if time.Since(began) >= healthyReset {
			backoff.Reset()
		}
		end.Final = !h.again(code)
		h.d.opts.Feed.EndAfter(h.def.Namespace, h.id, end, p.stdout, p.stderr) // once its lines are out
		if end.Final {
			return
		}
		wait := jitter(backoff.Next())
		h.mu.Lock()
		h.state = v1.StateBackoff
		h.nextRestart = time.Now().Add(wait)
		h.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-h.stops.Asked():
			t.Stop()
			return
		case <-t.C:
		}
		var err error
		p, err = h.startProcess()
		h.mu.Lock()
		h.restarts++
		h.nextRestart = time.Time{}
		if err != nil {
			h.state = v1.StateFailed
			h.lastError = err.Error()
			h.mu.Unlock()
			h.event(v1.EventFailed, nil, err.Error())
			h.d.opts.Feed.End(h.def.Namespace, h.id, v1.LogEnd{ExitCode: code, Reason: "could not start again: " + err.Error(), Final: true})
			return
		}
		h.state, h.pid, h.startedAt = h.runningState(), p.c.Pid, time.Now().UTC()
		h.lastError = "" // running again: the last exit is in last_exit_code and last_exit_reason
		attempt := h.restarts
		h.mu.Unlock()
		h.eventData(v1.EventRestarted, map[string]any{"attempt": attempt, "pid": p.c.Pid, "delay": wait.Round(time.Millisecond).String()})
	}
}

// again decides, after an exit with code, whether to run the workload again; when not,
// it sets the final state. A service always restarts until max_restarts is spent; a job
// is retried on a non-zero exit while retries remain.
func (h *handle) again(code int) bool {
	again, failed := h.decide(code)
	if failed != "" { // published once the lock is let go: no I/O under it
		h.event(v1.EventFailed, &code, failed)
	}
	return again
}

// decide is again under the handle's lock; failed is the reason a service gave up.
func (h *handle) decide(code int) (again bool, failed string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.exitReason == v1.ExitDiskLimit { // starting it again would find the same workdir
		h.state = v1.StateFailed
		return false, h.lastError
	}
	switch h.def.Lifecycle {
	case v1.LifecycleService:
		if h.sr.maxRestarts < 0 || h.restarts < h.sr.maxRestarts {
			return true, ""
		}
		h.state = v1.StateFailed
		h.lastError = "restart limit of " + strconv.Itoa(h.sr.maxRestarts) + " reached"
		return false, h.lastError
	default:
		if code != 0 && h.restarts < h.sr.Retries {
			return true, ""
		}
		h.state = v1.StateStopped
		return false, ""
	}
}

// jitter spreads restarts of many workloads that failed together: ±20 %.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// wait waits for the process, then makes sure nothing of its group survives it (a
// crashed service must not leave orphans behind before it is restarted). A job with a
// timeout gets SIGTERM when it runs out, and SIGKILL a grace period later. It returns the
// exit code and, when the code alone does not tell, why the process ended.
func (h *handle) wait(p *process) (int, string) {
	pid := p.c.Pid
	var timedOut atomic.Bool
	if h.sr.timeout > 0 && h.def.Lifecycle == v1.LifecycleJob {
		t := time.AfterFunc(h.sr.timeout, func() {
			timedOut.Store(true)
			spawn.KillGroup(pid, syscall.SIGTERM)
			time.AfterFunc(h.sr.grace, func() { spawn.KillGroup(pid, syscall.SIGKILL) })
		})
		defer t.Stop()
	}
	stopChecks := h.checkHealth(pid)
	var overDisk atomic.Bool
	stopDisk := h.watchDisk(pid, func() {
		overDisk.Store(true)
		spawn.KillGroup(pid, syscall.SIGTERM)
		time.AfterFunc(h.sr.grace, func() { spawn.KillGroup(pid, syscall.SIGKILL) })
	})
	ws := p.c.Wait()
	stopChecks()
	stopDisk()
	// wait has drained the pipes; ship a last line that had no newline.
	_ = p.stdout.Close()
	_ = p.stderr.Close()
	code := spawn.StatusCode(ws)
	spawn.KillGroup(pid, syscall.SIGKILL)
	reason := ""
	switch {
	case h.cg.OOMs() > p.ooms:
		reason = v1.ExitOOMKilled
	case overDisk.Load():
		reason = v1.ExitDiskLimit
	case timedOut.Load():
		reason = v1.ExitTimedOut
	case h.killedUnhealthy.Swap(false):
		reason = v1.ExitUnhealthy
	}
	dropped := p.stdout.Dropped() + p.stderr.Dropped()
	h.mu.Lock()
	h.exitCode = &code
	h.exitReason = reason
	h.pid = 0
	h.dropped += dropped
	switch reason {
	case v1.ExitTimedOut:
		h.lastError = "timed out after " + h.sr.timeout.String()
	case v1.ExitOOMKilled:
		h.lastError = h.oomMessage()
	case v1.ExitDiskLimit:
		h.lastError = "its workdir held " + v1.ByteSize(h.diskUsed.Load()).String() + ", over its disk limit of " + h.sr.Resources.Disk.String()
	}
	h.mu.Unlock()
	if dropped > 0 {
		h.eventData(v1.EventLogsDropped, map[string]any{"lines": dropped})
	}
	return code, reason
}

// oomMessage says why the kernel killed a process of the workload.
func (h *handle) oomMessage() string {
	return "killed for going over its memory limit of " + h.sr.Resources.Memory.String()
}

func (h *handle) stopping() bool {
	select {
	case <-h.stops.Asked():
		return true
	default:
		return false
	}
}

// stop ends the workload: SIGTERM to the group, the grace period, SIGKILL, and returns
// only when every process of the group is gone.
func (h *handle) stop(ctx context.Context, grace time.Duration) {
	h.mu.Lock()
	pid := h.pid
	if h.state == v1.StateRunning || h.state == v1.StateStarting {
		h.state = v1.StateStopping
	}
	h.mu.Unlock()
	h.stops.Do(ctx, func() { // the first stop asked signals it; others wait for it
		if h.fn.Load() != nil {
			h.stopFunction(ctx, grace)
			h.setState(v1.StateStopped)
			return
		}
		if pid > 0 {
			spawn.KillGroup(pid, syscall.SIGTERM)
			// the grace ends with ctx (the nexlet shutting down): a workload ignoring SIGTERM holds nothing up
			gctx, cancel := context.WithTimeout(ctx, grace)
			select {
			case <-h.done:
				// the leader is gone; give the rest of the group what is left of the grace
				spawn.WaitGroupGone(pid, gctx.Done())
			case <-gctx.Done():
			}
			cancel()
			spawn.KillGroup(pid, syscall.SIGKILL)
			h.cg.Kill()                           // what left the group (setsid) but not its cgroup
			spawn.WaitGroupGone(pid, gctx.Done()) // done: cancelled
		}
		<-h.done
		h.setState(v1.StateStopped)
	})
}

func (h *handle) setState(s string) {
	h.mu.Lock()
	h.state = s
	h.mu.Unlock()
}

func (h *handle) finished() bool {
	if h.fn.Load() != nil {
		return h.stopping()
	}
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

func (h *handle) event(typ string, code *int, msg string) {
	h.d.opts.Feed.Event(v1.Event{Type: typ, WorkloadID: h.id, Namespace: h.def.Namespace, ExitCode: code, Message: msg})
}

func (h *handle) eventData(typ string, data map[string]any) {
	h.d.opts.Feed.Event(v1.Event{Type: typ, WorkloadID: h.id, Namespace: h.def.Namespace, Data: data})
}

// info describes the workload, with the runtime details as metadata.
func (h *handle) info() v1.WorkloadInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	md := map[string]string{
		"state":    h.state,
		"restarts": strconv.Itoa(h.restarts),
		"workdir":  h.wd.Path,
	}
	if h.pid > 0 {
		md["pid"] = strconv.Itoa(h.pid)
		md["uptime"] = time.Since(h.startedAt).Round(time.Second).String()
	}
	if h.exitCode != nil {
		md["last_exit_code"] = strconv.Itoa(*h.exitCode)
	}
	if !h.nextRestart.IsZero() {
		md["next_restart"] = h.nextRestart.UTC().Format(time.RFC3339Nano)
	}
	if len(h.sr.ExposePorts) > 0 {
		ports := make([]string, len(h.sr.ExposePorts))
		for i, p := range h.sr.ExposePorts {
			ports[i] = strconv.Itoa(p)
		}
		md["ports"] = strings.Join(ports, ",")
	}
	if h.lastError != "" {
		md["error"] = h.lastError
	}
	if h.dropped > 0 {
		md["dropped_lines"] = strconv.FormatUint(h.dropped, 10)
	}
	if fn := h.fn.Load(); fn != nil {
		fn.mu.Lock()
		md["invocations"] = strconv.FormatUint(fn.invocations, 10)
		md["running_invocations"] = strconv.Itoa(len(fn.running))
		fn.mu.Unlock()
		md["triggers"] = strings.Join(h.sr.Triggers, ",")
	}
	info := v1.WorkloadInfo{
		ID: h.id, Namespace: h.def.Namespace, Name: h.def.Name, Description: h.def.Description,
		Type: h.def.Type, Lifecycle: h.def.Lifecycle, Tags: h.def.Tags, State: h.state,
		NodeID: h.nodeID, NexletID: h.d.opts.NexletID, StartedAt: h.createdAt, Metadata: md,
		Definition: &h.def, Group: h.def.Group, GroupVersion: h.def.GroupVersion,
	}
	if h.state == v1.StateStopped || h.state == v1.StateFailed {
		info.ExitCode = h.exitCode
	}
	if h.exitCode != nil {
		info.ExitReason = h.exitReason
		code := *h.exitCode
		info.LastExitCode = &code
	}
	info.Restarts, info.Error = uint64(h.restarts), h.lastError
	if h.exitReason != "" {
		md["last_exit_reason"] = h.exitReason
	}
	info.Health = h.health
	if h.cg != nil {
		md["cgroups"] = h.cg.Kind()
	}
	if h.sr.Resources != nil && h.sr.Resources.Disk > 0 {
		md["disk_used"] = v1.ByteSize(h.diskUsed.Load()).String()
	}
	return info
}

func (h *handle) cleanup() { h.cleanOnce.Do(h.clean) }

func (h *handle) clean() {
	h.gate.Lock()
	h.cleaned = true
	h.gate.Unlock()
	if h.wd.Own {
		if err := os.RemoveAll(h.wd.Path); err != nil {
			h.log.Warn("remove workdir", zap.Error(err))
		}
	} else {
		h.wd.RemoveCreds() // from a workdir it was lent: what the nexlet wrote, nothing else
	}
	if h.uid != 0 {
		h.d.uids.Release(h.uid)
	}
	h.cg.Remove()
}
