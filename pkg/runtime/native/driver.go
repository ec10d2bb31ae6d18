// Package native is the runtime of nexlet-native: it runs OS executables as services,
// jobs and functions, one handle per workload, each in its own process group.
package native

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/cgroupfs"
	"github.com/nexrun/nex/internal/hostusers"
	"github.com/nexrun/nex/internal/ports"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/runtime/native/artifacts"
	"github.com/nexrun/nex/pkg/runtime/native/asuser"
	"github.com/nexrun/nex/pkg/runtime/native/cgroups"
	"github.com/nexrun/nex/pkg/runtime/native/health"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
	"github.com/nexrun/nex/pkg/runtime/native/uids"
	"github.com/nexrun/nex/pkg/runtime/native/workdir"
)

// DefaultUIDs is the range --workload-uids takes by default (hostusers.DefaultUIDs).
const DefaultUIDs = hostusers.DefaultUIDs

// UIDRange is the first and last UID workloads may run as.
type UIDRange = hostusers.UIDRange

// ParseUIDRange reads "FIRST-LAST" (e.g. 200000-265535).
func ParseUIDRange(s string) (UIDRange, error) { return hostusers.ParseUIDRange(s) }

// Options configure the driver.
type Options struct {
	NodeID       string
	NexletID     string
	DataDir      string
	NATSURL      string       // handed to workloads as NATS_URL
	Conn         *nats.Conn   // subscribes function triggers
	Feed         *nexlet.Feed // defaults to a feed on Conn
	Logger       *zap.Logger
	DefaultGrace time.Duration
	MaxWorkloads int
	// Tee, when set, receives every workload output line (nexd --show-workload-logs).
	Tee func(wid, stream string, line []byte)
	// UIDs, when set, runs every workload as a UID (and GID) of its own from this range;
	// the nexlet must be root (uids.CanSwitchUsers). UIDLockDir is where the machine's nexlets
	// lock the UIDs they use (uids.DefaultLockDir).
	UIDs       *UIDRange
	UIDLockDir string
	// NoCgroups leaves resource limits unenforced: workloads that ask for them are refused.
	NoCgroups bool
	// DefaultLimits are the resource limits of a workload that asks for none (each
	// resource on its own); MaxLimits the most one may ask for. Both need cgroups.
	DefaultLimits, MaxLimits v1.Resources
	// SandboxExe is a program that calls SandboxMain first thing (nexlet-native itself):
	// with it, a workload of its own user runs in mount, IPC and PID namespaces of its own
	// (spawn.Spec.Sandbox), where the machine allows it. Empty: no sandbox.
	SandboxExe string
	// SandboxFallback is the helper to sandbox through when SandboxExe fails its probe
	// (nexlet-native itself; see spawn.ChooseSandbox).
	SandboxFallback string
	// CacheMaxBytes bounds the cache of fetched artifacts (and so any one download);
	// 0: artifacts.DefaultCacheMaxBytes. The least recently used go first.
	CacheMaxBytes int64
	// WorkdirRoots are the directories under which a start request's own workdir may lie
	// (lent by the operator). Empty: none, when workloads run as users of their own;
	// anywhere outside the nexlet's data dir when they run as the nexlet's user.
	WorkdirRoots []string
	// RunAs is who each namespace's workloads may ask to run as (start_request.user and
	// .group); nil: no one. Only a nexlet running as root runs workloads as others.
	RunAs RunAsPolicy
}

// Lifecycles are the lifecycles this runtime supports.
var Lifecycles = []string{v1.LifecycleService, v1.LifecycleJob, v1.LifecycleFunction}

// Driver implements nexlet.Runtime for OS processes.
type Driver struct {
	opts Options
	log  *zap.Logger

	mu       sync.Mutex
	handles  map[string]*handle
	ports    map[int]string // exposed port -> workload ID
	lameduck bool
	onChange func()
	uids     *uids.Pool // nil: workloads run as this process's user
	sandbox  string     // SandboxExe, when workloads are sandboxed here
	cache    *artifacts.Cache
	cg       *cgroups.Setup
}

// Isolation is what keeps this driver's workloads apart on the machine: "uid" (each its
// own user) or "none".
func (d *Driver) Isolation() string {
	if d.uids != nil {
		return v1.IsolationUID
	}
	return v1.IsolationNone
}

// Sandbox says whether this driver runs each workload of its own user in namespaces of
// its own (v1.SandboxNamespaces) or not (v1.SandboxNone).
func (d *Driver) Sandbox() string {
	if d.sandbox != "" {
		return v1.SandboxNamespaces
	}
	return v1.SandboxNone
}

// Cgroups says how this driver enforces resource limits (v1.CgroupsV2, V1 or None) and
// which resources it can limit (disk always: it checks workdirs itself).
func (d *Driver) Cgroups() (kind string, limits []string) {
	have := d.cg.Limits()
	return d.cg.Kind(), append(have[:len(have):len(have)], v1.ResourceDisk)
}

// Stats are the log counters of every workload so far.
func (d *Driver) Stats() map[string]uint64 { return d.opts.Feed.Stats() }

// OnChange registers f to be called when a workload finishes for good.
func (d *Driver) OnChange(f func()) {
	d.mu.Lock()
	d.onChange = f
	d.mu.Unlock()
}

func (d *Driver) changed() {
	d.mu.Lock()
	f := d.onChange
	d.mu.Unlock()
	if f != nil {
		f()
	}
}

var (
	_ nexlet.Runtime = (*Driver)(nil)
	_ nexlet.Briefer = (*Driver)(nil)
)

// New returns a driver; DataDir holds per-workload working directories.
func New(opts Options) (*Driver, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.DefaultGrace <= 0 {
		opts.DefaultGrace = 10 * time.Second
	}
	if opts.DataDir == "" || opts.Conn == nil {
		return nil, fmt.Errorf("native driver: data dir and NATS connection are required")
	}
	if abs, err := filepath.Abs(opts.DataDir); err == nil {
		opts.DataDir = abs // workdirs are handed to workloads and their sandboxes
	}
	if opts.Feed == nil {
		opts.Feed = nexlet.NewFeed(opts.Conn, opts.NodeID)
	}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "workloads"), 0o750); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", opts.DataDir, err)
	}
	if err := opts.RunAs.Check(); err != nil {
		return nil, err
	}
	d := &Driver{opts: opts, log: opts.Logger.Named("native"), handles: map[string]*handle{}, ports: map[int]string{}}
	d.cache = artifacts.NewCache(filepath.Join(opts.DataDir, "cache"), opts.CacheMaxBytes)
	if opts.UIDs != nil {
		if err := uids.CanSwitchUsers(); err != nil {
			return nil, fmt.Errorf("workloads as users of their own: %w", err)
		}
		if err := workdir.OpenWorkloadsRoot(opts.DataDir); err != nil {
			return nil, err
		}
		pool, err := uids.NewPool(*opts.UIDs, opts.UIDLockDir, nil, d.log)
		if err != nil {
			return nil, err
		}
		d.uids = pool
		if opts.SandboxExe != "" {
			var err error
			if d.sandbox, err = spawn.ChooseSandbox(opts.SandboxExe, opts.SandboxFallback); err != nil && d.sandbox != "" {
				d.log.Warn("the sandbox helper failed its probe; workloads are sandboxed through "+d.sandbox+" instead, a few ms slower per start (reinstall nex-sandbox from this build)", zap.String("helper", opts.SandboxExe), zap.Error(err))
			} else if err != nil {
				d.log.Warn("workloads run without a sandbox of their own (mount, IPC and PID namespaces: private /tmp and /dev/shm, their own processes only): it needs CAP_SYS_ADMIN", zap.String("helper", opts.SandboxExe), zap.Error(err))
			}
		}
	}
	if d.opts.Feed.OnHistoryDrop == nil {
		d.opts.Feed.OnHistoryDrop = func(ns, wid string, lines uint64, reason string) {
			d.log.Warn("the log history refused lines", zap.String("namespace", ns), zap.String("workload_id", wid), zap.Uint64("lines", lines), zap.String("reason", reason))
		}
	}
	d.killOrphans()
	if opts.NoCgroups {
		d.cg = cgroups.None("resource limits are turned off here")
	} else {
		d.cg = cgroups.Detect(cgroupfs.Base(opts.NodeID, opts.NexletID), d.log)
		d.cg.Sweep(d.log)
	}
	// what a workload that asks for nothing gets must be within the ceiling and enforceable
	var none *v1.Resources
	both, err := none.WithLimits(opts.DefaultLimits, opts.MaxLimits, "--default-limits")
	if err != nil {
		return nil, err
	}
	if both != nil {
		if why := d.cg.Enforces(both); why != "" {
			return nil, fmt.Errorf("--default-limits/--max-limits %s: %s", both, why)
		}
	}
	return d, nil
}

func (d *Driver) writer(ns, wid, stream string) *nexlet.LineWriter {
	w := d.opts.Feed.LineWriter(ns, wid, stream)
	if d.opts.Tee != nil {
		w.Tee = func(stream string, line []byte) { d.opts.Tee(wid, stream, line) }
	}
	return w
}

// Start starts the workload's first process and supervises it from then on.
func (d *Driver) Start(_ context.Context, req v1.StartWorkloadRequest) (v1.WorkloadInfo, error) {
	def := req.Definition
	sr, err := parseStartRequest(def.StartRequest, d.opts.DefaultGrace)
	if err != nil {
		return v1.WorkloadInfo{}, err
	}
	sr.fromDefinition(def)
	if err := checkLifecycleFields(def.Lifecycle, sr); err != nil {
		return v1.WorkloadInfo{}, err
	}
	if sr.health, err = health.Parse(sr.Health, def.Lifecycle, parseDuration); err != nil {
		return v1.WorkloadInfo{}, err
	}
	if sr.Resources, err = sr.Resources.WithLimits(d.opts.DefaultLimits, d.opts.MaxLimits, "start_request.resources"); err != nil {
		return v1.WorkloadInfo{}, err
	}
	if sr.Resources != nil {
		if why := d.cg.Enforces(sr.Resources); why != "" {
			return v1.WorkloadInfo{}, v1.Errorf(v1.CodeStartFailed, "start_request.resources: %s", why)
		}
	}
	inUse := ports.InUse(sr.ExposePorts) // binds: before the lock, never under it
	d.mu.Lock()
	if d.lameduck {
		d.mu.Unlock()
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeLameduck, "%s", ErrLameduck)
	}
	if _, dup := d.handles[req.WorkloadID]; dup {
		d.mu.Unlock()
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeConflict, "workload %s already exists", req.WorkloadID)
	}
	if d.opts.MaxWorkloads > 0 && len(d.handles) >= d.opts.MaxWorkloads {
		d.mu.Unlock()
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeUnavailable, "%s (%d workloads)", ErrCapacity, d.opts.MaxWorkloads)
	}
	startCtx, cancelStart := context.WithCancel(context.Background())
	defer cancelStart()
	h := &handle{
		d: d, id: req.WorkloadID, nodeID: req.NodeID, def: def, sr: sr, env: req.Environment,
		stops: spawn.NewStopping(), done: make(chan struct{}), started: make(chan struct{}), cancelStart: cancelStart,
		state: v1.StateStarting, createdAt: time.Now().UTC(), restarts: int(req.Restarts),
		log: d.log.With(zap.String("workload_id", req.WorkloadID), zap.String("namespace", def.Namespace)),
	}
	if sr.Workdir == "" { // decided before the handle is visible: List reads it
		h.wd = workdir.Own(filepath.Join(d.opts.DataDir, "workloads"), h.id, h.user)
	} else {
		h.wd = workdir.Lent(sr.Workdir, h.user)
	}
	if err := d.reservePorts(h.id, def.Namespace, sr.ExposePorts, inUse); err != nil {
		d.mu.Unlock()
		return v1.WorkloadInfo{}, err
	}
	d.handles[h.id] = h // reserve the ID while starting
	d.mu.Unlock()
	defer close(h.started)

	fail := func(err error) (v1.WorkloadInfo, error) {
		d.remove(h.id)
		h.cleanup()
		return v1.WorkloadInfo{}, err
	}
	if err := h.prepare(startCtx, req.Creds); err != nil {
		return fail(err)
	}
	if def.Lifecycle == v1.LifecycleFunction {
		if err := h.serveFunction(); err != nil {
			return fail(v1.NewError(500, v1.CodeStartFailed, "subscribe to triggers: %v", err))
		}
		h.setState(v1.StateRunning)
		h.eventData(v1.EventStarted, map[string]any{"triggers": sr.Triggers})
		h.log.Info("function waiting for triggers", zap.Strings("triggers", sr.Triggers))
		return h.info(), nil
	}
	p, err := h.startProcess()
	if err != nil {
		return fail(v1.NewError(500, v1.CodeStartFailed, "start %s: %v", sr.path, asuser.ExplainExecError(h.identity(), sr.path, err)))
	}
	h.mu.Lock()
	h.state, h.pid, h.startedAt = h.runningState(), p.c.Pid, time.Now().UTC()
	h.mu.Unlock()
	h.eventData(v1.EventStarted, map[string]any{"pid": p.c.Pid})
	h.log.Info("workload started", zap.Int("pid", p.c.Pid), zap.String("path", sr.path))
	go h.run(p)
	return h.info(), nil
}

// prepare gives the workload its user, workdir, credentials, artifacts and cgroup.
func (h *handle) prepare(ctx context.Context, creds []byte) error {
	d, sr, def := h.d, h.sr, h.def
	var err error
	if h.runAs, err = d.resolveRunAs(sr, def.Namespace, h.wd.Path); err != nil {
		return err
	}
	if d.uids != nil && h.runAs == nil {
		if h.uid, err = d.uids.Acquire(); err != nil {
			return v1.Errorf(v1.CodeUnavailable, "%v", err)
		}
	}
	if h.wd.Own {
		if h.uid != 0 {
			d.uids.Record(h.uid, h.wd.Path)
		}
		if err := h.wd.MakeOwn(); err != nil {
			return v1.NewError(500, v1.CodeStartFailed, "create workdir %s: %v", h.wd.Path, err)
		}
	} else if err := h.lendWorkdir(); err != nil {
		return err
	}
	id := h.identity()
	if sr.path != "" { // the executable, as the workload's user sees it (the kernel checks it again at exec)
		if err := asuser.CheckExecutable(id, sr.path); err != nil {
			return v1.Errorf(v1.CodeStartFailed, "start_request.uri: %v", err)
		}
	}
	if len(creds) > 0 {
		if err := h.wd.WriteCreds(creds); err != nil {
			return v1.NewError(500, v1.CodeStartFailed, "write workload credentials: %v", err)
		}
		for _, t := range sr.Triggers {
			if !strings.HasPrefix(t, def.Namespace+".") {
				return v1.Errorf(v1.CodeSchemaInvalid, "start_request.triggers: %q is outside the namespace's subjects (%s.>)", t, def.Namespace)
			}
		}
	}
	if err := h.fetchArtifacts(ctx); err != nil {
		return v1.Errorf(v1.CodeStartFailed, "start_request.%v", err)
	}
	if hc := sr.health; hc != nil && hc.Exec != nil { // now, not as the first failed check
		if err := asuser.CheckExecutable(id, hc.Exec.Argv[0]); err != nil {
			return v1.Errorf(v1.CodeStartFailed, "start_request.health.exec.argv: %v", err)
		}
	}
	if r := sr.Resources; r != nil && (r.Memory > 0 || r.CPU > 0 || r.PIDs > 0) { // disk alone needs no cgroup
		if h.cg, err = d.cg.New(h.id, h.cgroupLimits()); err != nil {
			return v1.NewError(500, v1.CodeStartFailed, "start_request.resources: %v", err)
		}
	}
	return nil
}

func (d *Driver) get(id string) (*handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.handles[id]
	if !ok {
		return nil, v1.NotFound("workload %s not found", id)
	}
	return h, nil
}

// Prune removes the workdirs this nexlet made (under its data dir) of workloads that are
// neither in keep nor known to it now: what an earlier instance left of workloads that
// ended, or moved, while it was down, and whose records went meanwhile. A chaos run found
// such directories piling up on a node killed and restarted. It names what it removed.
func (d *Driver) Prune(_ context.Context, keep []string) ([]string, error) {
	root := filepath.Join(d.opts.DataDir, "workloads")
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, v1.Errorf(v1.CodeInternal, "read %s: %v", root, err)
	}
	kept := make(map[string]bool, len(keep))
	for _, id := range keep {
		kept[id] = true
	}
	var removed []string
	for _, e := range entries {
		id := e.Name()
		if kept[id] || !e.IsDir() || v1.ValidateToken("workload ID", id) != nil {
			continue
		}
		// moved aside under the lock a start takes to make its handle visible (before it
		// makes its workdir), so a workload starting now keeps what it makes
		trash := filepath.Join(root, ".pruned-"+id)
		d.mu.Lock()
		_, known := d.handles[id]
		if !known {
			err = os.Rename(filepath.Join(root, id), trash)
		}
		d.mu.Unlock()
		if known {
			continue
		}
		if err == nil {
			err = os.RemoveAll(trash)
		}
		if err != nil {
			d.log.Warn("prune a workdir left behind", zap.String("workload_id", id), zap.Error(err))
			continue
		}
		removed = append(removed, id)
	}
	if len(removed) > 0 {
		d.log.Info("removed the workdirs of workloads no record holds any more", zap.Int("workdirs", len(removed)))
	}
	return removed, nil
}

// Stop stops a workload (or removes a finished one) and returns when its processes are gone.
func (d *Driver) Stop(ctx context.Context, id string, req v1.StopRequest) (v1.WorkloadInfo, error) {
	h, err := d.get(id)
	if err != nil {
		// a workload of an earlier instance of this nexlet (it ended, then the nexlet
		// restarted): what it left in its workdir goes with it
		if v1.ValidateToken("workload ID", id) == nil {
			_ = os.RemoveAll(filepath.Join(d.opts.DataDir, "workloads", id))
		}
		return v1.WorkloadInfo{}, err
	}
	grace := h.sr.grace
	if req.GracePeriod > 0 {
		grace = time.Duration(req.GracePeriod)
	}
	select {
	case <-h.started:
	default:
		// still starting (fetching artifacts): cut it short, then stop what it started
		h.cancelStart()
		<-h.started
		if _, err := d.get(id); err != nil {
			info := h.info()
			info.State = v1.StateStopped
			return info, nil
		}
	}
	wasRunning := !h.finished()
	h.stop(ctx, grace)
	d.remove(id)
	h.cleanup()
	if wasRunning {
		h.event(v1.EventStopped, nil, "")
		h.log.Info("workload stopped")
	}
	return h.info(), nil
}

// reservePorts claims ports for workload wid of namespace ns: none may be claimed by
// another workload (named only to its own namespace) or be in use on this host (inUse,
// checked before the lock). Caller holds d.mu.
func (d *Driver) reservePorts(wid, ns string, want []int, inUse map[int]bool) error {
	for _, p := range want {
		if owner, taken := d.ports[p]; taken {
			if o := d.handles[owner]; o == nil || o.def.Namespace != ns {
				owner = "of another namespace"
			}
			return v1.Errorf(v1.CodeConflict, "start_request.expose_ports: port %d is already exposed by workload %s", p, owner)
		}
		if inUse[p] {
			return v1.Errorf(v1.CodeConflict, "start_request.expose_ports: port %d is already in use on this host", p)
		}
	}
	for _, p := range want {
		d.ports[p] = wid
	}
	return nil
}

// remove forgets a workload and releases its ports.
func (d *Driver) remove(wid string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.handles, wid)
	for p, owner := range d.ports {
		if owner == wid {
			delete(d.ports, p)
		}
	}
}

// Get returns one workload.
func (d *Driver) Get(_ context.Context, id string) (v1.WorkloadInfo, error) {
	h, err := d.get(id)
	if err != nil {
		return v1.WorkloadInfo{}, err
	}
	info := h.info()
	h.addUsage(info.Metadata)
	return info, nil
}

// List returns the workloads of ns, or every workload for "".
func (d *Driver) List(_ context.Context, ns string) ([]v1.WorkloadInfo, error) {
	d.mu.Lock()
	hs := make([]*handle, 0, len(d.handles))
	for _, h := range d.handles {
		if ns == "" || h.def.Namespace == ns {
			hs = append(hs, h)
		}
	}
	d.mu.Unlock()
	out := make([]v1.WorkloadInfo, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.info())
	}
	return out, nil
}

// Briefs says what a heartbeat needs of each workload (nexlet.Briefer).
func (d *Driver) Briefs() []nexlet.Brief {
	d.mu.Lock()
	hs := make([]*handle, 0, len(d.handles))
	for _, h := range d.handles {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	out := make([]nexlet.Brief, len(hs))
	for i, h := range hs {
		h.mu.Lock()
		out[i] = nexlet.Brief{ID: h.id, State: h.state, Restarts: uint64(h.restarts)}
		h.mu.Unlock()
	}
	return out
}

// Lameduck refuses new workloads.
func (d *Driver) Lameduck(context.Context) error {
	d.mu.Lock()
	d.lameduck = true
	d.mu.Unlock()
	return nil
}

// Shutdown stops every workload, as stop does, in parallel.
func (d *Driver) Shutdown(ctx context.Context) {
	d.mu.Lock()
	ids := make([]string, 0, len(d.handles))
	for id := range d.handles {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = d.Stop(ctx, id, v1.StopRequest{})
		}()
	}
	wg.Wait()
	if d.uids != nil {
		d.uids.Wait() // every UID swept and given back
		d.uids.Close()
	}
	d.cg.Close()
}

// checkLifecycleFields rejects fields that make no sense for the lifecycle, so a
// mistaken request fails loudly instead of being half-applied.
func checkLifecycleFields(lifecycle string, sr *parsed) error {
	bad := func(field string) error {
		return v1.Errorf(v1.CodeSchemaInvalid, "start_request.%s does not apply to lifecycle %s", field, lifecycle)
	}
	switch lifecycle {
	case v1.LifecycleFunction:
		if len(sr.Triggers) == 0 {
			return v1.Errorf(v1.CodeSchemaInvalid, "start_request.triggers: a function needs at least one trigger subject")
		}
		for _, t := range sr.Triggers {
			if err := v1.ValidateTriggerSubject(t); err != nil {
				return v1.Errorf(v1.CodeSchemaInvalid, "start_request.triggers: %v", err)
			}
		}
		if sr.Restart != nil {
			return bad("restart")
		}
	case v1.LifecycleJob:
		if len(sr.Triggers) > 0 {
			return bad("triggers")
		}
		// a job's retries wait like a service's restarts; their number is `retries`
		if sr.Restart != nil && sr.Restart.MaxRestarts != nil {
			return bad("restart.max_restarts")
		}
	case v1.LifecycleService:
		if len(sr.Triggers) > 0 {
			return bad("triggers")
		}
		if sr.Timeout != "" {
			return bad("timeout")
		}
		if sr.Retries != 0 {
			return bad("retries")
		}
	}
	if sr.Concurrency != 0 && lifecycle != v1.LifecycleFunction {
		return bad("concurrency")
	}
	return nil
}

// UpdateCreds replaces a running workload's credentials file (atomically: a client that
// reconnects reads either the old or the new one, whole).
func (d *Driver) UpdateCreds(_ context.Context, wid string, c []byte) error {
	h, err := d.get(wid)
	if err != nil {
		return err
	}
	if h.wd.Creds() == "" || h.finished() {
		return v1.Errorf(v1.CodeConflict, "workload %s has no credentials to renew", wid)
	}
	if err := h.wd.WriteCreds(c); err != nil {
		return err
	}
	if h.fn.Load() != nil {
		go h.renewed()
	}
	return nil
}
