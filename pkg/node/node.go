// Package node is nexd: it keeps the registry of nexlets, answers auctions, deploys to
// won bids, routes stop/info/clone/list to the right nexlet and announces the node.
package node

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/hostid"
	"github.com/nexrun/nex/internal/proc"
	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/tick"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node/auction"
	"github.com/nexrun/nex/pkg/node/cluster"
	"github.com/nexrun/nex/pkg/node/copies"
	"github.com/nexrun/nex/pkg/node/events"
	"github.com/nexrun/nex/pkg/node/history"
	"github.com/nexrun/nex/pkg/node/index"
	"github.com/nexrun/nex/pkg/node/listing"
	"github.com/nexrun/nex/pkg/node/members"
	"github.com/nexrun/nex/pkg/node/moves"
	"github.com/nexrun/nex/pkg/node/news"
	"github.com/nexrun/nex/pkg/node/registry"
	"github.com/nexrun/nex/pkg/node/room"
	"github.com/nexrun/nex/pkg/node/secrets"
	"github.com/nexrun/nex/pkg/node/workloads"
)

// Config describes a node.
type Config struct {
	NodeID  string
	Name    string
	Nexus   string
	Tags    map[string]string
	Version string
	Commit  string
	Logger  *zap.Logger

	// BidTTL is how long a bid can be claimed.
	BidTTL time.Duration
	// HeartbeatInterval is asked of nexlets; AnnounceInterval is the node's own.
	HeartbeatInterval time.Duration
	AnnounceInterval  time.Duration
	// TombstoneTTL is how long a stopped workload still answers stop (idempotence).
	TombstoneTTL time.Duration
	// Store keeps desired state; default: in memory.
	Store Store
	// AllowRemoteNexlets lets nexlets of other machines register.
	AllowRemoteNexlets bool
	// HostID names this machine (default: its machine-id).
	HostID string
	// Minter issues workload credentials; default creds.Dev (no isolation).
	Minter creds.Minter
	// CredsTTL is how long workload credentials are valid (renewed while they run).
	CredsTTL time.Duration
	// FinishedRetention is how long a workload that ended for good (a job that ran, a
	// service that gave up) stays listed before its record and workdir are removed;
	// 0 keeps it until the user removes it.
	FinishedRetention time.Duration
	// SecretsKey, a curve key shared by the nodes, opens the namespace secret store;
	// without it the node serves no secrets.
	SecretsKey nkeys.KeyPair
	// SecretsBucket is the secrets bucket opened already (nil: opened at first use).
	SecretsBucket jetstream.KeyValue
	// Quotas bound what a namespace may run across the cluster (by namespace; "*" for
	// every one but system without its own), checked when this node deploys a start.
	Quotas map[string]v1.Quota
	// BundleMaxBytes bounds each namespace's bundle bucket (0: unbounded), made with
	// BundleReplicas replicas.
	BundleMaxBytes int64
	BundleReplicas int
	// NexletConn is the connection the node asks its local nexlets through (nil: the
	// node's own). Give it an inbox prefix the nexlets may publish to
	// (creds.NodeInboxPrefix): an answer by response permission alone is refused once the
	// nexlet reconnected after the request came in.
	NexletConn *nats.Conn
	// History makes each namespace's history streams before its first workload starts
	// (nil: no history is kept).
	History *history.History
	// NodeLossWindow is how long a node may go unheard (no announcement) before the
	// cluster's coordinator takes its workloads over; it is also the coordinator lease's
	// period. Only with a ClusterStore; 0: 10 s.
	NodeLossWindow time.Duration
	// RequireIsolation names the namespaces ("*": every one) whose workloads this node
	// runs only on a nexlet that isolates them (v1.IsolationUID); the rest it declines.
	RequireIsolation []string
	// rescan is how often the coordinator looks again at every record (0:
	// cluster.RescanEvery); tests shorten it (WithRescan in export_test.go).
	rescan time.Duration
	// Memory and CPUs are what the node offers its workloads, reserve included
	// (0: the machine's, MemTotal of /proc/meminfo and runtime.NumCPU()).
	Memory v1.ByteSize
	CPUs   float64
	// DefaultLimits and MaxLimits are what nexlet-native gives a workload for a resource
	// it asks none of (nexd --default-limits, else --max-limits): placement reserves, and
	// quotas count, what a workload holds that way too, and a bid is declined for a
	// request above the ceiling.
	DefaultLimits, MaxLimits v1.Resources
	// ReserveMemory and ReserveCPU are kept back for the node itself (nexd, its nexlets,
	// the system): workloads' requests are placed in the rest. 0: nothing kept back.
	ReserveMemory v1.ByteSize
	ReserveCPU    float64
	// Placement is how the node bids: v1.PlacementLeastLoaded (the default: its bids
	// carry its load) or v1.PlacementRandom (they carry none).
	Placement string
}

func (c *Config) validate() error {
	if err := v1.ValidateToken("node ID", c.NodeID); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.Name == "" {
		c.Name = c.NodeID[:min(8, len(c.NodeID))]
	}
	if c.Nexus == "" {
		c.Nexus = "nexus"
	}
	for what, v := range map[string]string{"node name": c.Name, "nexus": c.Nexus} {
		if err := v1.ValidateToken(what, v); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	tags := map[string]string{}
	for k, v := range c.Tags {
		if strings.HasPrefix(k, "nex.") {
			return fmt.Errorf("%w: %s", ErrReservedTag, k)
		}
		tags[k] = v
	}
	if err := v1.ValidateTags(c.Tags); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	tags["nex.os"] = runtime.GOOS
	tags["nex.arch"] = runtime.GOARCH
	tags["nex.node"] = c.Name
	tags["nex.nexus"] = c.Nexus
	// what the nexlets register says (Node.tags); none until one says otherwise
	tags[v1.TagIsolation] = v1.IsolationNone
	tags[v1.TagSandbox] = v1.SandboxNone
	tags[v1.TagCgroups] = v1.CgroupsNone
	c.Tags = tags
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Version == "" {
		c.Version = "0.0.0"
	}
	setDefault(&c.BidTTL, 30*time.Second)
	setDefault(&c.HeartbeatInterval, 2*time.Second)
	setDefault(&c.AnnounceInterval, 2*time.Second)
	setDefault(&c.TombstoneTTL, 10*time.Minute)
	if c.Store == nil {
		c.Store = NewMemoryStore()
	}
	if c.HostID == "" {
		c.HostID = hostid.Get()
	}
	if c.Minter == nil {
		c.Minter = creds.Dev{}
	}
	setDefault(&c.CredsTTL, 24*time.Hour)
	setDefault(&c.NodeLossWindow, 10*time.Second)
	return c.checkCapacity()
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Node is a running nexd.
type Node struct {
	nc        *natsconn.Conn // watched (natsconn.Watch): a denied request fails at once
	nxc       *natsconn.Conn // asks the local nexlets (Config.NexletConn), watched too
	cfg       Config
	log       *zap.Logger
	startedAt time.Time
	servingAt time.Time // when the endpoints were added (see settle)
	srv       *svc.Server
	subs      []*nats.Subscription
	stopOnce  sync.Once
	done      chan struct{}
	ctx       context.Context // ends when the node stops
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	flags     room.Flags           // what the node is doing with a workload or nexlet now
	work      *workloads.Workloads // the room of the workloads here: records, starts, stops
	copies    *copies.Copies       // the room of this node's own copies
	moves     *moves.Moves         // the room of workloads moving between nodes
	lister    *listing.Lister

	catchingUp atomic.Bool // catchUp is under way
	peerBack   atomic.Bool // a peer was heard again after a silence: catch up at the next tick
	renewing   atomic.Bool // a round of renewCreds is under way

	mu          sync.Mutex
	nexlets     *registry.Registry // the registry room: its own lock
	events      events.Publisher
	auction     *auction.Auctioneer  // the auction room: the standing, tags, capacity and bids; its own lock
	idx         *index.Index         // the index room: its own lock
	news        *news.Queue          // the news room: heartbeats' news for the records; its own lock
	members     *members.Members     // the members room: its own lock
	announcer   *members.Announcer   // the node's announcements, and the others' heard
	coord       *cluster.Coordinator // the cluster room (nil: the records are this node's own)
	metrics     metrics
	xkey        nkeys.KeyPair // seals credentials for nexlets
	xkeyPub     string
	secretStore *secrets.Store // the secrets room (nil without a secrets key)
	deadline    time.Time      // when lameduck stops the workloads (under mu)
	drained     chan struct{}  // closed when lameduck has stopped everything
	unplaced    sync.Map       // workload ID -> its last unplaced event's message (a list's note)
}

// New validates cfg and returns a node that is not yet serving.
func New(nc *nats.Conn, cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	xkey, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, fmt.Errorf("create node xkey: %w", err)
	}
	xkeyPub, _ := xkey.PublicKey()
	ctx, cancel := context.WithCancel(context.Background())
	watched := natsconn.Watch(nc)
	nxc := watched
	if cfg.NexletConn != nil && cfg.NexletConn != nc {
		nxc = natsconn.Watch(cfg.NexletConn)
	}
	n := &Node{
		xkey: xkey, xkeyPub: xkeyPub, secretStore: secrets.New(cfg.SecretsKey, cfg.SecretsBucket, watched, xkey),
		ctx: ctx, cancel: cancel,
		nc: watched, nxc: nxc, cfg: cfg, log: cfg.Logger.Named("node").With(zap.String("node_id", cfg.NodeID)),
		startedAt: time.Now().UTC(),
		done:      make(chan struct{}),
		nexlets:   registry.New(cfg.HeartbeatInterval), idx: index.New(),
		members: members.New(members.AliveFor(cfg.AnnounceInterval, cfg.NodeLossWindow)),
		drained: make(chan struct{}),
	}
	n.wire()
	return n, nil
}

// ID is the node's public key.
func (n *Node) ID() string { return n.cfg.NodeID }

// Start serves the control API and begins announcing the node. It refuses to start when
// a node with the same ID already answers (two nexd on one data dir or seed).
func (n *Node) Start() error {
	if err := n.checkDuplicate(); err != nil {
		return err
	}
	n.preindex()
	n.servingAt = time.Now()
	if err := n.addService(); err != nil {
		return err
	}
	sub, err := n.nc.Subscribe(v1.AnnounceWildcard, n.announcer.Hear)
	if err != nil {
		n.srv.Stop(context.Background())
		return fmt.Errorf("subscribe to announcements: %w", err)
	}
	n.subs = append(n.subs, sub)
	// Once Start returns the node is reachable: its subscriptions are at the server.
	if err := n.nc.FlushTimeout(5 * time.Second); err != nil {
		n.srv.Stop(context.Background())
		return fmt.Errorf("subscribe to the node's subjects: %w", err)
	}
	n.announcer.As(v1.Announce{Starting: true}) // every node answers with its own at once
	n.wg.Add(1)
	go n.loop()
	if n.coord != nil { // the records are shared: other nodes write this node's too
		if err := n.copies.Watch(); err != nil {
			n.log.Warn("watch this node's records: a workload taken over while this node was away is stopped at the next start instead", zap.Error(err))
		}
		n.wg.Add(1)
		go n.coord.Run()
	}
	n.wg.Go(n.bundlesInLine)
	n.events.Of(v1.EventNodeStarted, "", "")
	n.log.Info("node started", zap.String("name", n.cfg.Name), zap.String("nexus", n.cfg.Nexus))
	return nil
}

// preindex indexes the node's records before it answers anyone, so that a node that
// restarts knows what it runs before its nexlets register again (each is reconciled
// then): it answered "not found" of workloads it was about to adopt, and listed none of
// them (a chaos run: 4 stops of 62 said "not found" of workloads that ran on).
func (n *Node) preindex() {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	recs, err := n.cfg.Store.List(ctx)
	if err != nil {
		n.log.Warn("read this node's records at start: they are known once their nexlets register", zap.Error(err))
		return
	}
	for _, rec := range recs {
		if rec.Desired != DesiredMoved {
			n.work.Index(*rec)
		}
	}
}

func (n *Node) checkDuplicate() error {
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
	defer cancel()
	var twin *v1.NodeInfo
	_ = svc.FanOut(ctx, n.nc, v1.SystemSubject(v1.VerbPing), nil, 300*time.Millisecond, func(r svc.Reply) bool {
		var ni v1.NodeInfo
		if r.Decode(&ni) == nil && ni.NodeID == n.cfg.NodeID {
			twin = &ni
			return true
		}
		return false
	})
	if twin != nil {
		return fmt.Errorf("%w: %s (name %s, up %s); each nexd needs its own data dir or --node-seed",
			ErrDuplicateNode, twin.NodeID, twin.Name, time.Duration(twin.Uptime))
	}
	return nil
}

// Stop withdraws the node: it stops serving (requests in flight get up to
// svc.StopGrace to finish, then their context ends), then ends its loops and waits for
// them, then announces its departure. Nothing it started runs when Stop returns.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		for _, s := range n.subs {
			_ = s.Unsubscribe()
		}
		if n.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), svc.StopGrace)
			n.srv.Stop(ctx)
			cancel()
		}
		close(n.done)
		n.cancel()
		n.wg.Wait()
		n.announcer.Announce(true)
		n.events.Of(v1.EventNodeStopped, "", "")
		_ = n.nc.Flush()
	})
}

func (n *Node) loop() {
	defer n.wg.Done()
	// on the node's instants, with its coordinator's and its nexlets' (see tick)
	t := tick.ForNode(n.cfg.NodeID, n.cfg.AnnounceInterval)
	defer t.Stop()
	// Credentials are renewed at a third of their lifetime, so a missed round is harmless.
	renew := tick.ForNode(n.cfg.NodeID, max(n.cfg.CredsTTL/3, time.Second))
	defer renew.Stop()
	expire := tick.ForNode(n.cfg.NodeID, min(workloads.RetentionSweep, max(n.cfg.FinishedRetention/2, 100*time.Millisecond)))
	defer expire.Stop()
	reconnects, last := n.nc.Stats().Reconnects, time.Now()
	for {
		select {
		case <-n.done:
			return
		case <-expire.C:
			n.work.ExpireFinished(n.cfg.FinishedRetention)
		case now := <-t.C:
			n.announcer.Announce(false)
			n.sweep()
			r := n.nc.Stats().Reconnects
			back := n.peerBack.Swap(false)
			if back || r != reconnects || now.Sub(last) > max(3*n.cfg.AnnounceInterval, 3*time.Second) {
				n.catchUp()
			}
			reconnects, last = r, now
		case <-renew.C:
			// in a goroutine of its own, one round at a time: a round waits for nexlets
			// that do not answer, and the announcements must go on meanwhile
			if n.cfg.Minter.Isolated() && n.renewing.CompareAndSwap(false, true) {
				n.wg.Add(1)
				go func() {
					defer n.wg.Done()
					defer n.renewing.Store(false)
					n.work.RenewCreds()
				}()
			}
		}
	}
}

// catchUp reconciles every registered nexlet once the node is back from a reconnect or a
// pause (a tick that came late): what changed in its records meanwhile (a workload taken
// over, a record removed) reaches it through its watch of them, which can miss it (chaos
// seed 48: a nexd paused 20 s ran on, for 60 s more, the copies of 26 services taken over
// meanwhile, until its nexlet registered again). Only with a shared store: nothing else
// writes a local store's records.
func (n *Node) catchUp() {
	if n.coord == nil || !n.catchingUp.CompareAndSwap(false, true) {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.catchingUp.Store(false)
		// the watch first, so that what changes after the reconciliation's reading
		// reaches this node; a reconciliation follows in any case
		n.copies.Rewatch()
		var ids []string
		for _, e := range n.nexlets.All(time.Now()) {
			id := e.Reg.NexletID
			if e.Ready {
				ids = append(ids, id)
			}
		}
		for _, id := range ids {
			n.copies.ReconcileLater(id)
		}
	}()
}

// sweep drops expired bids, tombstones and silent peers, and reports lost nexlets.
func (n *Node) sweep() {
	now := time.Now()
	n.auction.Expire(now)
	n.idx.ExpireTombstones(now, n.cfg.TombstoneTTL)
	n.members.Expire(now)
	for _, id := range n.nexlets.NewlyLost(now) {
		n.log.Warn("nexlet lost", zap.String("nexlet_id", id))
		n.events.Of(v1.EventLost, id, "")
	}
}

// NexletFailed hands the workloads of a local nexlet the supervisor gave up on to other
// nodes (the moves room's NexletFailed).
func (n *Node) NexletFailed(nexletID string) { n.moves.NexletFailed(nexletID) }

// NexletEvent publishes a node event about a nexlet (the supervisor's restarts and give-ups).
func (n *Node) NexletEvent(typ, nexletID, msg string) {
	n.events.Of(typ, nexletID, msg)
}

// WaitForNexlet blocks until a nexlet of registerType is registered, or ctx ends.
func (n *Node) WaitForNexlet(ctx context.Context, registerType string) error {
	if err := n.nexlets.Wait(ctx, registerType); err != nil {
		return fmt.Errorf("%w: type %s: %v", ErrNexletNotReady, registerType, err)
	}
	// the registration marks it ready, then sets the tag nex.cgroups from it: a caller
	// woken between the two read "none" (TestLimitsDeclinedByANodeThatCannotEnforceThem)
	n.auction.RefreshCgroups()
	return nil
}

// Info describes the node; full includes each nexlet's schema.
func (n *Node) Info(full bool) v1.NodeInfo {
	now := time.Now()
	info := v1.NodeInfo{
		NodeID: n.cfg.NodeID, Name: n.cfg.Name, Nexus: n.cfg.Nexus, Version: n.cfg.Version,
		Commit: n.cfg.Commit, StartedAt: n.startedAt, Uptime: v1.Duration(now.Sub(n.startedAt).Round(time.Second)),
		State: n.auction.State(), Tags: n.auction.Tags(), Workloads: n.idx.Len(), Nexlets: []v1.NexletInfo{},
		Capacity: n.auction.Capacity(),
	}
	if n.secretStore != nil {
		info.SecretsXKey, _ = n.secretStore.Key().PublicKey()
	}
	info.Coordinator = n.IsCoordinator()
	counts := n.idx.NexletCounts()
	for _, e := range n.nexlets.All(now) {
		ni := v1.NexletInfo{RegisterRequest: e.Reg, Workloads: counts[e.Reg.NexletID], Health: e.Health, LastHeartbeat: e.LastHeartbeat.UTC()}
		if !full {
			ni.StartRequestSchema = nil
		}
		info.Nexlets = append(info.Nexlets, ni)
	}
	sort.Slice(info.Nexlets, func(i, j int) bool { return info.Nexlets[i].NexletID < info.Nexlets[j].NexletID })
	return info
}

// StopLocalNexlet sends SIGTERM to a registered nexlet that runs on this machine (one
// adopted after a nexd restart) and waits, up to timeout, until it exits. The PID its
// registration names is signalled only when that process is the nexlet nexd started,
// running exe (proc.IsNexlet): a registration is a message, not proof.
func (n *Node) StopLocalNexlet(id, exe string, timeout time.Duration) {
	e, ok := n.nexlets.Get(id, time.Now())
	if !ok || e.Reg.PID <= 0 || e.Reg.HostID != n.cfg.HostID {
		return
	}
	if !proc.IsNexlet(e.Reg.PID, n.cfg.NodeID, id, exe) {
		n.log.Warn("a registered nexlet names a process that is not it; not signalled", zap.String("nexlet_id", id), zap.Int("pid", e.Reg.PID))
		return
	}
	if err := syscall.Kill(e.Reg.PID, syscall.SIGTERM); err != nil {
		return
	}
	deadline := time.Now().Add(timeout)
	for syscall.Kill(e.Reg.PID, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// SetTags replaces the node's own tags (the nex. ones stay); auctions use them at once.
func (n *Node) SetTags(tags map[string]string) error {
	cfg := Config{NodeID: n.cfg.NodeID, Name: n.cfg.Name, Nexus: n.cfg.Nexus, Tags: tags}
	if err := cfg.validate(); err != nil {
		return err
	}
	n.auction.SetTags(cfg.Tags)
	return nil
}

// Peers lists the nodes this node believes alive, itself included.
func (n *Node) Peers() []string { return n.announcer.Peers() }
