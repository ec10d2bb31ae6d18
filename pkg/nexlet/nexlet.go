// Package nexlet is the SDK for writing nexlets: processes that run one kind of workload
// for a nex node. A nexlet implements Runtime; Serve registers it with its node, serves
// the versioned `nexlet` micro-service endpoints and keeps the heartbeat going.
package nexlet

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/hostid"
	"github.com/nexrun/nex/internal/keyfile"
	"github.com/nexrun/nex/internal/retry"
	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/tick"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/seal"
)

// Runtime is what a nexlet implements. Each method is called from a NATS handler; the
// SDK has already validated the workload ID and decoded the request.
type Runtime interface {
	// Start starts a workload and returns once it is running (or has failed to start).
	Start(ctx context.Context, req v1.StartWorkloadRequest) (v1.WorkloadInfo, error)
	// Stop stops a workload and returns only when it is gone. Stopping an unknown
	// workload returns a v1 not_found error.
	Stop(ctx context.Context, workloadID string, req v1.StopRequest) (v1.WorkloadInfo, error)
	// Get returns one workload.
	Get(ctx context.Context, workloadID string) (v1.WorkloadInfo, error)
	// List returns the workloads of a namespace, or of all namespaces when ns is "".
	List(ctx context.Context, ns string) ([]v1.WorkloadInfo, error)
	// Lameduck tells the runtime to take no new work.
	Lameduck(ctx context.Context) error
}

// Notifier is implemented by runtimes that can say when a workload finished, so the
// node hears of it at once rather than at the next heartbeat.
type Notifier interface {
	OnChange(func())
}

// CredsUpdater is implemented by runtimes that hand workloads their own credentials, so
// the node can renew them before they expire.
type CredsUpdater interface {
	UpdateCreds(ctx context.Context, workloadID string, creds []byte) error
}

// Execer is implemented by runtimes that can run a command beside a running workload
// (nex workload exec); others answer 501 not_implemented.
type Execer interface {
	Exec(ctx context.Context, workloadID string, req v1.ExecRequest) (v1.ExecReply, error)
}

// Pruner is implemented by runtimes that keep something of a workload after it ends (a
// workdir): Prune removes what they keep of workloads not in keep and not running, and
// names them. Others answer 501 not_implemented.
type Pruner interface {
	Prune(ctx context.Context, keep []string) ([]string, error)
}

// StatsReporter is implemented by runtimes that keep counters for the node's metrics.
type StatsReporter interface {
	Stats() map[string]uint64
}

// Brief is what a heartbeat says of one workload.
type Brief struct {
	ID       string
	State    string
	Restarts uint64
}

// Briefer is implemented by runtimes that can say what a heartbeat needs without
// building every workload's full info (its metadata): at 10,000 workloads, a heartbeat
// that listed them all was most of an idle nexlet's CPU. A finished workload's info is
// then read with Get.
type Briefer interface {
	Briefs() []Brief
}

// Config describes the nexlet to its node.
type Config struct {
	NodeID             string
	NexletID           string
	RegisterType       string
	Version            string
	Lifecycles         []string
	StartRequestSchema []byte
	MaxWorkloads       int
	// Isolation is what keeps this nexlet's workloads apart (v1.IsolationUID or
	// v1.IsolationNone); the node tags itself, and declines, by it.
	Isolation string
	// Sandbox is v1.SandboxNamespaces when the nexlet runs each workload in namespaces
	// of its own, else v1.SandboxNone; the node tags itself by it.
	Sandbox string
	// Cgroups is how the nexlet enforces resource limits (v1.CgroupsV2, V1 or None) and
	// Limits the resources it can limit; the node tags itself, and declines, by them.
	Cgroups string
	Limits  []string
	Logger  *zap.Logger
	// RegisterTimeout bounds each registration attempt.
	RegisterTimeout time.Duration
	// FullHeartbeatEvery is how often a heartbeat lists every finished workload and
	// restart count, not only what changed (default 10 s).
	FullHeartbeatEvery time.Duration
	// HostID names this machine (default: its machine-id).
	HostID string
	// XKey is the nexlet's curve key pair; keep it across restarts (see LoadXKey) so
	// values sealed for it stay readable. Default: a new one.
	XKey nkeys.KeyPair
}

func (c *Config) validate() error {
	for what, v := range map[string]string{"node ID": c.NodeID, "nexlet ID": c.NexletID, "register type": c.RegisterType} {
		if err := v1.ValidateToken(what, v); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	if len(c.Lifecycles) == 0 || len(c.StartRequestSchema) == 0 {
		return fmt.Errorf("%w: lifecycles and start request schema are required", ErrConfig)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Version == "" {
		c.Version = "0.0.0"
	}
	if c.RegisterTimeout <= 0 {
		c.RegisterTimeout = 2 * time.Second
	}
	if c.FullHeartbeatEvery <= 0 {
		c.FullHeartbeatEvery = fullEvery
	}
	if c.HostID == "" {
		c.HostID = hostid.Get()
	}
	return nil
}

// Nexlet is a running nexlet: its micro service and its registration with the node.
type Nexlet struct {
	nc   *natsconn.Conn // watched: a denied REGISTER or HEARTBEAT fails at once
	cfg  Config
	rt   Runtime
	srv  *svc.Server
	xkey nkeys.KeyPair
	log  *zap.Logger

	mu         sync.Mutex
	registered bool
	// told is what heartbeats the node answered have told it: heartbeats carry what
	// changed since, and all of it every fullEvery (and after each registration).
	told     told
	interval time.Duration
	poke     chan struct{}
	// cut off from NATS for stopAfter, the nexlet stops the workloads in stopCut (their
	// definitions say disconnect: stop), and registers again once back, so the node
	// starts them again unless the cluster moved them meanwhile
	stopAfter time.Duration
	stopCut   sync.Map // workload ID -> struct{}
	// cutStopped holds the workloads stopped so, until started again: a heartbeat never
	// tells the node they finished (one sent during the cut waits in the connection's
	// buffer and reaches the node once back, which would record them finished for good
	// rather than start them again)
	cutStopped sync.Map // workload ID -> struct{}
	reregister atomic.Bool
}

// Serve registers rt with its node and serves it until ctx ends.
func Serve(ctx context.Context, nc *nats.Conn, cfg Config, rt Runtime) error {
	n, err := Start(nc, cfg, rt)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Run(ctx)
}

// Start adds the nexlet's micro service; Run then registers and keeps the heartbeat.
func Start(nc *nats.Conn, cfg Config, rt Runtime) (*Nexlet, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	xkey := cfg.XKey
	if xkey == nil {
		var err error
		if xkey, err = nkeys.CreateCurveKeys(); err != nil {
			return nil, fmt.Errorf("create xkey: %w", err)
		}
	}
	n := &Nexlet{nc: natsconn.Watch(nc), cfg: cfg, rt: rt, xkey: xkey, log: cfg.Logger, interval: 2 * time.Second, poke: make(chan struct{}, 1)}
	if nt, ok := rt.(Notifier); ok {
		nt.OnChange(n.Poke)
	}
	if err := n.addService(); err != nil {
		return nil, err
	}
	return n, nil
}

// XKey is the nexlet's public curve key, published at registration.
func (n *Nexlet) XKey() string {
	pub, _ := n.xkey.PublicKey()
	return pub
}

func (n *Nexlet) addService() error {
	srv, err := svc.NewServer(n.nc.Conn, svc.Config{
		Config: micro.Config{
			Name:        "nexlet",
			Version:     n.cfg.Version,
			Description: "nex nexlet " + n.cfg.RegisterType,
			Metadata: map[string]string{
				"api": v1.APIVersion, "node_id": n.cfg.NodeID, "nexlet_id": n.cfg.NexletID,
				"register_type": n.cfg.RegisterType,
			},
		},
		Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.srv = srv
	ep := func(verb string, withID bool, h svc.Func) svc.Endpoint {
		// more than nexd sends at once (its endpoints' 256, and the system namespace's 64
		// beside them): what bounds a tenant's share is nexd's budget per namespace
		e := svc.Endpoint{Name: verb, Subject: v1.NexletSubject(n.cfg.NodeID, n.cfg.NexletID, verb), Handler: h, Concurrent: 512}
		if withID {
			e.Subject += ".*"
			e.Tokens = svc.LastToken("workload ID")
		}
		return e
	}
	eps := []svc.Endpoint{
		ep(v1.NexletStart, true, svc.Handle(n.handleStart)),
		ep(v1.NexletStop, true, svc.Handle(func(ctx context.Context, r *svc.Request, req *v1.StopRequest) (v1.WorkloadInfo, error) {
			return n.rt.Stop(ctx, r.ID, *req)
		})),
		ep(v1.NexletGet, true, svc.Handle(func(ctx context.Context, r *svc.Request, _ *struct{}) (v1.WorkloadInfo, error) {
			return n.rt.Get(ctx, r.ID)
		})),
		ep(v1.NexletList, false, svc.Handle(n.handleList)),
		ep(v1.NexletLameduck, false, svc.Handle(func(ctx context.Context, _ *svc.Request, _ *struct{}) (struct{}, error) {
			return struct{}{}, n.rt.Lameduck(ctx)
		})),
		ep(v1.NexletCreds, true, svc.Handle(n.handleCreds)),
		ep(v1.NexletExec, true, svc.Handle(func(ctx context.Context, r *svc.Request, req *v1.ExecRequest) (v1.ExecReply, error) {
			x, ok := n.rt.(Execer)
			if !ok {
				return v1.ExecReply{}, v1.Errorf(v1.CodeNotImplemented, "nexlet %s (type %s) cannot run commands beside its workloads", n.cfg.NexletID, n.cfg.RegisterType)
			}
			if err := req.Validate(); err != nil {
				return v1.ExecReply{}, err
			}
			return x.Exec(ctx, r.ID, *req)
		})),
		ep(v1.NexletReseal, false, svc.Handle(func(ctx context.Context, _ *svc.Request, req *v1.ResealRequest) (json.RawMessage, error) {
			if err := v1.ValidateNamespace(req.Namespace); err != nil {
				return nil, v1.BadRequest("reseal: the workload's namespace: %v", err) // an older node's request
			}
			out, err := seal.Reseal(req.StartRequest, n.xkey, req.Recipient, req.Namespace)
			if err != nil {
				return nil, v1.BadRequest("reseal: %v", err)
			}
			return out, nil
		})),
		ep(v1.NexletPrune, false, svc.Handle(func(ctx context.Context, _ *svc.Request, req *v1.PruneRequest) (v1.PruneReply, error) {
			p, ok := n.rt.(Pruner)
			if !ok {
				return v1.PruneReply{}, v1.Errorf(v1.CodeNotImplemented, "nexlet %s keeps nothing to prune", n.cfg.NexletID)
			}
			removed, err := p.Prune(ctx, req.Keep)
			return v1.PruneReply{Removed: removed}, err
		})),
		ep(v1.NexletPing, false, svc.Handle(func(ctx context.Context, _ *svc.Request, _ *struct{}) (v1.RegisterRequest, error) {
			return n.registration(), nil
		})),
	}
	for _, e := range eps {
		if err := srv.Add(e); err != nil {
			srv.Stop(context.Background())
			return err
		}
	}
	return nil
}

func (n *Nexlet) handleStart(ctx context.Context, r *svc.Request, req *v1.StartWorkloadRequest) (v1.WorkloadInfo, error) {
	req.WorkloadID = r.ID
	if err := req.Definition.Validate(); err != nil {
		return v1.WorkloadInfo{}, err
	}
	if len(req.SealedCreds) > 0 {
		creds, err := n.xkey.Open(req.SealedCreds, req.SenderXKey)
		if err != nil {
			return v1.WorkloadInfo{}, v1.BadRequest("open the workload's sealed credentials: %v", err)
		}
		req.Creds = creds
	}
	env, err := seal.OpenEnvironment(req.Definition.StartRequest, n.xkey, req.Definition.Namespace)
	if err != nil {
		return v1.WorkloadInfo{}, v1.BadRequest("start_request.%v", err)
	}
	req.Environment = env
	n.cutStopped.Delete(req.WorkloadID)
	info, err := n.rt.Start(ctx, *req)
	if err == nil && req.Definition.Disconnect == v1.DisconnectStop {
		n.stopCut.Store(req.WorkloadID, struct{}{})
	}
	return info, err
}

func (n *Nexlet) handleList(ctx context.Context, _ *svc.Request, req *v1.NexletListRequest) ([]v1.WorkloadInfo, error) {
	list, err := n.rt.List(ctx, req.Namespace)
	for i := range list {
		if !req.Definitions {
			list[i].Definition = nil
		}
		if req.NoMetadata {
			list[i].Metadata = nil
		}
	}
	return list, err
}

func (n *Nexlet) handleCreds(ctx context.Context, r *svc.Request, req *v1.CredsUpdate) (struct{}, error) {
	cu, ok := n.rt.(CredsUpdater)
	if !ok {
		return struct{}{}, v1.Errorf(v1.CodeNotImplemented, "this nexlet does not take credentials")
	}
	c, err := n.xkey.Open(req.SealedCreds, req.SenderXKey)
	if err != nil {
		return struct{}{}, v1.BadRequest("open sealed credentials: %v", err)
	}
	return struct{}{}, cu.UpdateCreds(ctx, r.ID, c)
}

func (n *Nexlet) registration() v1.RegisterRequest {
	return v1.RegisterRequest{
		NexletID: n.cfg.NexletID, RegisterType: n.cfg.RegisterType, Version: n.cfg.Version,
		Lifecycles: n.cfg.Lifecycles, StartRequestSchema: n.cfg.StartRequestSchema,
		XKey: n.XKey(), MaxWorkloads: n.cfg.MaxWorkloads, HostID: n.cfg.HostID, PID: os.Getpid(), Isolation: n.cfg.Isolation, Sandbox: n.cfg.Sandbox,
		Cgroups: n.cfg.Cgroups, Limits: n.cfg.Limits,
	}
}

// Register sends one registration to the node.
func (n *Nexlet) Register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RegisterTimeout)
	defer cancel()
	var reply v1.RegisterReply
	if err := svc.Call(ctx, n.nc, v1.RegisterSubject(n.cfg.NodeID), n.registration(), &reply); err != nil {
		return fmt.Errorf("register with node %s: %w", n.cfg.NodeID, err)
	}
	n.mu.Lock()
	n.registered = true
	n.told = told{gen: n.told.gen + 1} // a node that registers this nexlet anew is told everything
	if reply.HeartbeatInterval > 0 {
		n.interval = time.Duration(reply.HeartbeatInterval)
	}
	n.stopAfter = time.Duration(reply.DisconnectStopAfter)
	n.mu.Unlock()
	n.log.Info("registered with node", zap.String("node_id", n.cfg.NodeID))
	return nil
}

// Run registers (retrying with backoff until the node answers) and sends heartbeats;
// when the node forgets the nexlet (a restarted nexd) it registers again.
func (n *Nexlet) Run(ctx context.Context) error {
	backoff := retry.Backoff{First: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		err := n.Register(ctx)
		if err == nil {
			break
		}
		n.log.Debug("registration pending", zap.Error(err))
		if !backoff.Wait(ctx, 0) {
			return nil
		}
	}
	go n.guardDisconnect(ctx)
	var last time.Time // of the last heartbeat
	for {
		n.mu.Lock()
		interval := n.interval
		n.mu.Unlock()
		if n.reregister.Load() && n.nc.IsConnected() {
			// after a cut's stops: said when it fails (a CI dry run's node never started
			// its cut-off service again, and nothing said why)
			if err := n.Register(ctx); err != nil {
				n.log.Warn("register again after the cut", zap.Error(err))
			} else {
				n.reregister.Store(false)
			}
		}
		// on the node's instants, when nexd is awake for its own work (see tick)
		t := time.NewTimer(time.Until(tick.After(time.Now(), interval, tick.PhaseOf(n.cfg.NodeID, interval))))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-n.poke:
			t.Stop()
			// A workload that ended is told at once: until the node has recorded it, a
			// nexlet killed now would have it started again. Many ending at once (a burst
			// of jobs) are told in one heartbeat every pokeCoalesce: each lists every
			// workload the nexlet has.
			if wait := pokeCoalesce - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
			select {
			case <-n.poke:
			default:
			}
		}
		last = time.Now()
		if err := n.heartbeat(ctx); err != nil {
			n.log.Warn("heartbeat", zap.Error(err))
			if v1.IsNotFound(err) || v1.IsCode(err, v1.CodeUnavailable) {
				if rerr := n.Register(ctx); rerr != nil {
					n.log.Warn("re-register", zap.Error(rerr))
				}
			}
		}
	}
}

// guardDisconnect stops the workloads that ask for it (disconnect: stop) once the
// nexlet has been cut off from NATS for stopAfter, so that when the cluster starts them
// on another node this one no longer runs them. It wakes on the connection's status
// changes and on a timer armed when a cut begins, never otherwise: an idle nexlet does
// nothing here (a 250 ms poll was 4 wake-ups a second for nothing).
func (n *Nexlet) guardDisconnect(ctx context.Context) {
	changed := n.nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	defer n.nc.RemoveStatusListener(changed)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var since time.Time // when the cut began (zero: connected)
	stopped := false    // the cut's stops are done
	for {
		// the status is read here, after every wake-up: a change the listener missed, or
		// one before it was added, is seen all the same
		if n.nc.IsConnected() {
			if !since.IsZero() {
				timer.Stop()
			}
			since, stopped = time.Time{}, false
		} else if since.IsZero() {
			since = time.Now()
			n.mu.Lock()
			after := n.stopAfter
			n.mu.Unlock()
			if after > 0 {
				timer.Reset(after)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-timer.C:
			if !n.nc.IsConnected() && !stopped {
				stopped = true
				n.stopCutOff(ctx, time.Since(since))
			}
		}
	}
}

// stopCutOff stops the workloads that ask to be stopped when their node is cut off
// (disconnect: stop), cut off for cutFor now.
func (n *Nexlet) stopCutOff(ctx context.Context, cutFor time.Duration) {
	n.stopCut.Range(func(k, _ any) bool {
		wid := k.(string)
		if info, err := n.rt.Get(ctx, wid); err != nil || info.Finished() {
			n.stopCut.Delete(wid)
			return true
		}
		n.log.Warn("cut off from NATS: stopping a workload that asks to be stopped then (disconnect: stop), before the cluster starts it elsewhere",
			zap.String("workload_id", wid), zap.String("cut_off_for", cutFor.Round(time.Millisecond).String()))
		n.cutStopped.Store(wid, struct{}{})
		n.reregister.Store(true)
		if _, err := n.rt.Stop(ctx, wid, v1.StopRequest{}); err != nil && !v1.IsNotFound(err) {
			n.log.Warn("stop a cut-off workload", zap.String("workload_id", wid), zap.Error(err))
		}
		n.stopCut.Delete(wid)
		return true
	})
}

// pokeCoalesce is the least time between a poked heartbeat and the one before it.
const pokeCoalesce = 50 * time.Millisecond

// Poke sends a heartbeat now (for instance because a workload finished).
func (n *Nexlet) Poke() {
	select {
	case n.poke <- struct{}{}:
	default:
	}
}

func (n *Nexlet) heartbeat(ctx context.Context) error {
	briefs, infos, err := n.briefs(ctx)
	if err != nil {
		return err
	}
	hb := v1.Heartbeat{NexletID: n.cfg.NexletID, Workloads: len(briefs), States: map[string]int{}}
	n.mu.Lock()
	told := n.told // its maps are written only here, after a heartbeat (one at a time)
	n.mu.Unlock()
	full := told.finished == nil || time.Since(told.at) >= n.cfg.FullHeartbeatEvery
	for _, b := range briefs {
		if _, cut := n.cutStopped.Load(b.ID); cut && (b.State == v1.StateStopped || b.State == v1.StateFailed) {
			continue // stopped for the cut, to be started again (see cutStopped)
		}
		if b.State == v1.StateStopped || b.State == v1.StateFailed {
			if full || !told.finished[b.ID] {
				hb.Finished = append(hb.Finished, b.ID)
			}
			if !told.finished[b.ID] {
				w, ok := infos[b.ID]
				if !ok {
					if w, err = n.rt.Get(ctx, b.ID); err != nil {
						continue // removed meanwhile
					}
				}
				w.Definition = nil
				hb.Ended = append(hb.Ended, w)
			}
		}
		hb.States[b.State]++
		if b.Restarts > 0 {
			hb.Restarts += b.Restarts
			if full || told.restarts[b.ID] != b.Restarts {
				if hb.RestartCounts == nil {
					hb.RestartCounts = map[string]uint64{}
				}
				hb.RestartCounts[b.ID] = b.Restarts
			}
		}
	}
	if sr, ok := n.rt.(StatsReporter); ok {
		hb.Stats = sr.Stats()
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RegisterTimeout)
	defer cancel()
	if err := svc.Call(ctx, n.nc, v1.HeartbeatSubject(n.cfg.NodeID, n.cfg.NexletID), hb, nil); err != nil {
		return err
	}
	if full || len(hb.Finished)+len(hb.RestartCounts) > 0 {
		n.mu.Lock()
		if n.told.gen == told.gen { // not registered anew meanwhile
			n.told.record(&hb, full)
		}
		n.mu.Unlock()
	}
	return nil
}

// fullEvery is by default how often a heartbeat tells the node everything (every finished workload,
// every restart count), not only what changed since the last: the node acts on what a
// heartbeat lists, so a record it failed to write is written again within this time. A
// heartbeat that lists every finished workload went out as often as every 50 ms while
// jobs ended, each as long as the nexlet's list.
const fullEvery = 10 * time.Second

// told is what heartbeats have told the node: the finished workloads and restart counts
// listed, and when all of them were last listed.
type told struct {
	finished map[string]bool
	restarts map[string]uint64
	at       time.Time // of the last heartbeat that listed everything
	gen      uint64    // registrations so far: what a heartbeat sent before the last one told is void
}

// record notes that the node answered hb (full: listing everything). A full one replaces
// what was told (workloads removed since are forgotten); another adds to it.
func (t *told) record(hb *v1.Heartbeat, full bool) {
	if full {
		t.finished, t.restarts, t.at = make(map[string]bool, len(hb.Finished)), make(map[string]uint64, len(hb.RestartCounts)), time.Now()
	}
	for _, id := range hb.Finished {
		t.finished[id] = true
	}
	maps.Copy(t.restarts, hb.RestartCounts)
}

// briefs is what a heartbeat says of each workload, from the runtime's Briefs where it
// has them, else from its list (whose infos it returns too).
func (n *Nexlet) briefs(ctx context.Context) ([]Brief, map[string]v1.WorkloadInfo, error) {
	if b, ok := n.rt.(Briefer); ok {
		return b.Briefs(), nil, nil
	}
	list, err := n.rt.List(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	briefs := make([]Brief, len(list))
	infos := make(map[string]v1.WorkloadInfo, len(list))
	for i, w := range list {
		restarts := w.Restarts
		if restarts == 0 { // a nexlet that says it in metadata only
			restarts, _ = strconv.ParseUint(w.Metadata["restarts"], 10, 64)
		}
		briefs[i] = Brief{ID: w.ID, State: w.State, Restarts: restarts}
		infos[w.ID] = w
	}
	return briefs, infos, nil
}

// Close stops the micro service: it takes no more requests, and those in flight get
// svc.StopGrace to finish before their context ends. It returns when every handler has.
func (n *Nexlet) Close() {
	if n.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), svc.StopGrace)
		n.srv.Stop(ctx)
		cancel()
	}
}

// LoadXKey reads the nexlet's curve key seed from path, creating it (mode 0600) on first
// use, so values sealed for the nexlet survive its restarts.
func LoadXKey(path string) (nkeys.KeyPair, error) {
	return keyfile.LoadOrCreate(path, nkeys.FromCurveSeed, nkeys.CreateCurveKeys)
}
