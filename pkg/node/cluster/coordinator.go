// Package cluster is the cluster room of a node: the coordinator lease, the rounds that
// move a lost node's workloads elsewhere, moved marks, and replica groups. A node whose
// records are its own has no coordinator.
package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nkeys"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/tick"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node/members"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/seal"
)

// movedRetention is how long a moved record stays for its node to find when it comes
// back (after that, the node finds the workload's new owner instead).
const movedRetention = time.Hour

// Config is what a coordinator needs of its node.
type Config struct {
	NodeID         string
	NodeLossWindow time.Duration
	Conn           *natsconn.Conn       // auctions, deploys, stops, lists
	Store          records.ClusterStore // the records every node shares
	SecretsKey     nkeys.KeyPair        // the cluster's --secrets-key (nil: none)
	Members        *members.Members     // the nodes heard announcing themselves
	Host           Host
	Log            *zap.Logger
	WG             *sync.WaitGroup // the node's: every goroutine the coordinator starts is in it
	// Quotas are the namespaces' quotas (nexd --namespace-quota): a group's count counts
	// against its namespace's quota of workloads, placed or not.
	Quotas map[string]v1.Quota
	// Rescan is how often the coordinator looks again at what it read of every record
	// and group (0: RescanEvery); tests shorten it.
	Rescan time.Duration
}

// Host is what the coordinator asks of the node it runs in.
type Host interface {
	// Lameduck says whether the node is draining (a draining node does not coordinate).
	Lameduck() bool
	// NodeEvent publishes a node event (a node lost).
	NodeEvent(ev v1.Event)
	// Unplaced publishes that rec's workload could not be placed, and why.
	Unplaced(rec records.Record, why string)
	// DropMarks removes the moved marks other nodes keep of rec before its record goes.
	DropMarks(rec records.Record) error
}

// Coordinator is the cluster room: the coordinator lease, the rounds that move lost
// nodes' workloads, replica groups. A node with records of its own (no shared store)
// has none. The lease is renewed by Run and read through atomics; every other field is
// the actor's (work, actor.go), which alone reads and writes it.
type Coordinator struct {
	cfg       Config
	ctx       context.Context // ends when the node stops
	cs        records.ClusterStore
	log       *zap.Logger
	sinceNano atomic.Int64  // holding the lease since (Unix ns; 0: not holding it)
	epoch     atomic.Uint64 // the epoch of the lease held (0: none)
	lease     atomic.Pointer[records.Lease]
	lost      map[string]time.Time // nodes reported lost, and when
	pending   map[string]string    // workload ID -> why it is not placed yet (logged once per reason)
	tried     map[string]time.Time // workload ID -> last placement attempt
	marksDone map[string]uint64    // workload ID -> revision of a lost node's moved mark found done
	holding   atomic.Bool          // held the lease at the last renewal (see holds)
	goodUntil atomic.Int64         // Unix ns: no longer counted held after this, renewal or not

	ops     chan groupOp         // GROUP operations, to the actor (work)
	jobs    map[string]*rollout  // group ID -> its update under way
	waiting map[string][]groupOp // group ID -> operations that wait for its update, in order
	resumes map[string]time.Time // group ID -> when resuming its cut-short update last failed

	book         groupBook // why copies are missing, and the last listing: read beside the actor
	groupsAt     time.Time // the groups' last reconcile
	groupsListed time.Time // the last listing of the groups (book.view holds it)
	listFailedAt time.Time // when a failed listing was last logged
	orphansAt    time.Time // the last read of every record for copies of groups that are gone
	groupsSeen   time.Time // the last round that found a group, or the last group operation

	owners     map[string]int                           // nodes with records, from the last full scan
	scanned    time.Time                                // that scan
	ownersRead sinceWrite[map[string]int]               // owners as last read
	allRecs    sinceWrite[map[string][]*records.Record] // every record, from the last read of them all
	rescan     time.Duration                            // Config.Rescan, or RescanEvery
}

// New returns the coordinator of a node whose records are in cfg.Store; ctx ends when
// the node stops. It does nothing until Run.
func New(ctx context.Context, cfg Config) *Coordinator {
	return &Coordinator{cfg: cfg, ctx: ctx, cs: cfg.Store, log: cfg.Log.Named("coordinator"), rescan: cmp.Or(cfg.Rescan, RescanEvery),
		lost: map[string]time.Time{}, pending: map[string]string{}, tried: map[string]time.Time{}, marksDone: map[string]uint64{},
		book: groupBook{cs: cfg.Store, pending: map[string]string{}, views: map[string]*groupsView{}},
		ops:  make(chan groupOp), jobs: map[string]*rollout{}, waiting: map[string][]groupOp{}, resumes: map[string]time.Time{}}
}

// Run runs while the node runs (in cfg.WG, which Run leaves): it tries to hold the
// coordinator lease, renewing it every renewEvery, and while it holds it the
// coordinator's rounds run after each renewal (work). A renewal never waits for a round or a
// group operation: a long rollout cannot let the lease lapse under it (and placements
// are fenced by the lease's epoch all the same, see placeCopy).
func (c *Coordinator) Run() {
	defer c.cfg.WG.Done()
	kick := make(chan struct{}, 1)
	c.cfg.WG.Add(1)
	go c.work(kick)
	var lease *records.Lease
	t := tick.ForNode(c.cfg.NodeID, renewEvery(c.cfg.NodeLossWindow)) // with the node's announcements
	defer t.Stop()
	defer func() {
		c.holding.Store(false)
		if lease != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			lease.Release(ctx)
			cancel()
		}
	}()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if lease == nil {
			var err error
			if lease, err = c.cs.Lease(c.ctx, records.CoordinatorLease, c.cfg.NodeLossWindow); err != nil {
				c.log.Warn("open the coordinator lease", zap.Error(err))
				continue
			}
			c.lease.Store(lease)
		}
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		held := !c.cfg.Host.Lameduck() && lease.Hold(ctx)
		cancel()
		c.goodUntil.Store(lease.GoodUntil().UnixNano())
		c.renewed(held, lease.Epoch())
		if held {
			select {
			case kick <- struct{}{}:
			default: // a round runs: the next starts when it is done
			}
		}
	}
}

// holds says whether this node counts itself the coordinator now: it held the lease at
// its last renewal, and that was less than half a period ago. A node paused past its
// lease (SIGSTOP, a stalled VM) runs again with its flag still set until its renewal
// loop has run once; by the clock it knows at once (a chaos run: a node paused 17 s
// answered group requests beside the new coordinator for 5 s after it ran again, and a
// create was answered "conflict").
func (c *Coordinator) holds() bool {
	return c.holding.Load() && time.Now().UnixNano() < c.goodUntil.Load()
}

// renewed records the outcome of a renewal: whether the lease is held, at which epoch.
func (c *Coordinator) renewed(held bool, epoch uint64) {
	if !held {
		epoch = 0
	}
	c.epoch.Store(epoch)
	c.holding.Store(held)
	since := c.sinceNano.Load()
	switch {
	case !held && since != 0:
		c.log.Info("no longer coordinating the cluster")
		c.sinceNano.Store(0)
	case held && since == 0:
		c.sinceNano.Store(time.Now().UnixNano())
		c.log.Info("coordinating the cluster: taking over the workloads of lost nodes", zap.String("node_loss_window", c.cfg.NodeLossWindow.String()), zap.Uint64("epoch", epoch))
	}
}

// since is when this node began to hold the lease (zero: it does not).
func (c *Coordinator) since() time.Time {
	if ns := c.sinceNano.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// renewEvery is how often the lease is renewed, or tried for by a node that does not
// hold it, and how often the coordinator's rounds look for lost nodes: a fifth of the
// lease period (the node-loss window), at least a second. The holder counts itself the
// holder for half a period after a renewal, so two renewals can fail in a row before it
// stops; a node waiting for the lease takes it at most a fifth of a period after it ran
// out; a lost node is found at most a fifth of the window after it passed. (Every
// second, at the default 10 s window, was most of what an idle coordinator did.) Never
// more than a third of the period, though: below a 2 s window, a renewal every second
// came after the half period the holder counts itself the holder for, and a quarter of
// the time the coordinator said it was none (group operations answered "not the
// coordinator", an update ended at its next step).
func renewEvery(period time.Duration) time.Duration {
	return min(max(time.Second, period/5), period/3)
}

// watchful says whether a node fell silent whose node-loss window has not passed yet, or
// has just passed: the rounds then run every second, so it is found lost on time.
func (c *Coordinator) watchful(now time.Time) bool {
	for _, at := range c.cfg.Members.Silent(c.cfg.NodeID) {
		if now.Sub(at) <= c.cfg.NodeLossWindow+renewEvery(c.cfg.NodeLossWindow) {
			return true
		}
	}
	return false
}

// lostNodes are the nodes other than this one not heard from within the window. A node
// never heard of counts from when this node began to coordinate.
func (c *Coordinator) isLost(node string, now time.Time) bool {
	if node == c.cfg.NodeID {
		return false
	}
	seen, ok := c.cfg.Members.LastSeen(node)
	if !ok {
		seen = c.since()
	}
	return now.Sub(seen) > c.cfg.NodeLossWindow
}

// RescanEvery is how often the coordinator looks again at every key of the state bucket
// to find nodes that have records but were never heard of (a node that never came back
// after this one started coordinating), and at every record for copies of groups that are
// gone; nodes it hears announce are watched every second. It reads them again only when
// something was written since (records.StateRevision).
const RescanEvery = 30 * time.Second

// round looks at the records of every lost node once and moves what they should run. It
// reads only lost nodes' records: a cluster whose nodes all answer costs no reads.
func (c *Coordinator) round(ctx context.Context) {
	now := time.Now()
	if c.scanned.Before(c.since()) || now.Sub(c.scanned) > c.rescan {
		// the keys are read again only when something was written since (and at the start
		// of a term): at idle a scan costs one read, not one message per record
		if c.scanned.Before(c.since()) {
			c.ownersRead.held = false
		}
		if nodes, err := c.ownersRead.read(ctx, c.cs, c.cs.Nodes); err == nil {
			c.owners, c.scanned = nodes, now
		} else {
			c.log.Warn("read the cluster's records", zap.Error(err))
		}
	}
	candidates := map[string]bool{}
	for node := range c.owners {
		candidates[node] = true
	}
	for node := range c.cfg.Members.EverSeen("") {
		candidates[node] = true
	}
	for node := range candidates {
		if !c.isLost(node, now) {
			delete(c.lost, node)
			continue
		}
		recs, err := c.cs.RecordsOf(ctx, node)
		if err != nil {
			c.log.Warn("read a lost node's records", zap.String("node", node), zap.Error(err))
			continue
		}
		if len(recs) == 0 {
			delete(c.owners, node)
			continue
		}
		for _, rec := range recs {
			switch rec.Desired {
			case records.DesiredRunning:
				c.reschedule(ctx, node, rec)
			case records.DesiredStopping: // the user's stop wins: it does not come back elsewhere
				if rec.StopAway && now.Sub(rec.UpdatedAt) <= movedRetention {
					// a stop recorded while the node was away stays for its node to carry out
					// with its grace, holding the start's request ID and its quota while the
					// copy may run (removed, the node stopped it as unrecorded with the
					// default grace, and info said "not found" meanwhile: a walk)
					continue
				}
				if c.cfg.Host.DropMarks(*rec) != nil {
					continue // its marks first (see copies.DropMarks): the next round tries again
				}
				if err := c.cs.RemoveOf(ctx, node, rec.WorkloadID, rec.Revision); err == nil {
					c.log.Info("a lost node was stopping a workload: its record is removed", zap.String("node", node), zap.String("workload_id", rec.WorkloadID))
					delete(c.pending, rec.WorkloadID) // placed no more (a stop recorded while it was not)
					delete(c.tried, rec.WorkloadID)
					if rec.RequestID != "" { // its start's key, as its node's stop would have released it
						_ = c.cs.Unclaim(ctx, rec.Definition.Namespace, rec.RequestID, records.ClaimHolder(rec.WorkloadID, node))
					}
				}
			case records.DesiredMoved:
				c.settleMark(ctx, node, rec, now)
			}
		}
	}
}

// settleMark acts on the moved mark rec of lost node node: once it has named nobody for
// MoveGrace it is put back, to be placed again by the next round; once done and older
// than movedRetention it is removed. A mark found done stays so (its revision is kept),
// so the records it names are listed once, not every round for an hour.
func (c *Coordinator) settleMark(ctx context.Context, node string, rec *records.Record, now time.Time) {
	age, wid := now.Sub(rec.UpdatedAt), rec.WorkloadID
	if age <= MoveGrace || (c.marksDone[wid] == rec.Revision && age <= movedRetention) {
		return // nothing to do yet either way
	}
	switch CheckMove(ctx, c.cs, node, *rec) {
	case MoveDone:
		c.marksDone[wid] = rec.Revision
		if age > movedRetention && c.cs.RemoveOf(ctx, node, wid, rec.Revision) == nil {
			delete(c.marksDone, wid)
		}
	case MoveDangling:
		if _, ok := RestoreMoved(ctx, c.cs, node, *rec); ok {
			c.log.Warn("a takeover failed half-way (the lost node's mark names a node without its record): the workload is placed again",
				zap.String("workload_id", wid), zap.String("lost_node", node), zap.String("named", rec.MovedTo))
		}
	}
}

// reschedule places rec, a workload of the lost node from, on a live node, which takes
// it over under the same ID. A placement that fails is tried again a few seconds later.
func (c *Coordinator) reschedule(ctx context.Context, from string, rec *records.Record) {
	wid := rec.WorkloadID
	if last, ok := c.tried[wid]; ok && time.Since(last) < 3*time.Second {
		return
	}
	c.tried[wid] = time.Now()
	if _, reported := c.lost[from]; !reported {
		c.lost[from] = time.Now()
		seen, _ := c.cfg.Members.LastSeen(from)
		c.log.Warn("node lost: taking its workloads over", zap.String("lost_node", from), zap.Time("last_seen", seen))
		c.cfg.Host.NodeEvent(v1.Event{Type: v1.EventNodeLost, Namespace: v1.SystemNamespace, NodeID: c.cfg.NodeID,
			Time: time.Now().UTC(), Data: map[string]any{"node_id": from, "last_seen": seen.UTC()}})
	}
	def := rec.Definition
	if seal.Contains(def.StartRequest) && len(rec.Escrow) == 0 {
		c.notPlaced(rec, "its environment is sealed for the lost node's nexlet, and no copy sealed for the cluster's --secrets-key was kept (give every node the same --secrets-key)")
		return
	}
	to, err := MoveElsewhere(ctx, c.cfg.Conn, from, rec, v1.TakeoverLost, GroupAccept(ctx, c.cs, rec), nil)
	if err != nil {
		c.notPlaced(rec, err.Error())
		return
	}
	delete(c.pending, wid)
	delete(c.tried, wid)
	c.log.Info("workload rescheduled", zap.String("workload_id", wid), zap.String("namespace", def.Namespace),
		zap.String("from_node", from), zap.String("to_node", to))
}

// GroupAccept, for a copy of a replica group, accepts only bids of nodes that run fewer
// copies of the group than its max_per_node (nil: rec is no copy, or the group cannot be
// read). Every move of a copy (a lost node's, a drain's) goes through it.
func GroupAccept(ctx context.Context, cs records.ClusterStore, rec *records.Record) func(v1.Bid) bool {
	def := rec.Definition
	if def.Group == "" || cs == nil {
		return nil
	}
	g, err := cs.Group(ctx, def.Namespace, def.Group)
	if err != nil {
		return nil
	}
	all, err := cs.All(ctx)
	if err != nil {
		return nil
	}
	byNode := copiesIn(all, g)
	return func(b v1.Bid) bool { return len(byNode[b.NodeID]) < g.MaxPerNode }
}

// MoveElsewhere auctions rec, a workload of node from, among the other nodes (asked
// through nc) and asks the winner to take it over; reseal, when set, seals the start request's values for the
// winning bid's nexlet (a drain: the nexlet that can open them is there to ask). It
// returns the node that runs the workload now.
func MoveElsewhere(ctx context.Context, nc *natsconn.Conn, from string, rec *records.Record, reason string, accept func(v1.Bid) bool, reseal func(context.Context, v1.Bid) (json.RawMessage, error)) (string, error) {
	def := rec.Definition
	cl, err := client.On(nc, def.Namespace)
	if err != nil {
		return "", err
	}
	res, err := def.WantedResources()
	if err != nil {
		return "", err
	}
	bids, declines, err := cl.Auction(ctx, v1.AuctionRequest{Type: def.Type, Lifecycle: def.Lifecycle, Tags: def.Tags, Ports: def.Ports(), Resources: res})
	if err != nil {
		return "", fmt.Errorf("auction: %w", err)
	}
	var why []string
	all := slices.Clone(bids)
	bids = slices.DeleteFunc(bids, func(b v1.Bid) bool {
		if b.NodeID == from {
			return true
		}
		if accept != nil && !accept(b) {
			why = append(why, fmt.Sprintf("node %s runs as many copies of its group as max_per_node allows", b.NodeID))
			return true
		}
		return false
	})
	if len(bids) == 0 {
		why = append(why, declined(declines, from)...)
		if len(why) == 0 {
			return "", errors.New("no other node answered the auction")
		}
		sort.Strings(why)
		cl.ReleaseBids(ctx, all, "", res)
		return "", fmt.Errorf("no other node can take it: %s", strings.Join(why, "; "))
	}
	b := client.RankBids(bids)[0]
	cl.ReleaseBids(ctx, all, b.BidID, res)
	t := &v1.Takeover{WorkloadID: rec.WorkloadID, FromNode: from, Revision: rec.Revision, Reason: reason}
	if reseal != nil {
		if def.StartRequest, err = reseal(ctx, b); err != nil {
			return "", err
		}
		t.UseStartRequest = true
	}
	var info v1.WorkloadInfo
	if err := svc.Call(ctx, nc, v1.SystemSubject(v1.VerbTakeover, b.BidID), v1.DeployRequest{Workload: def, Takeover: t}, &info); err != nil {
		return "", fmt.Errorf("node %s: %w", b.NodeID, err)
	}
	return b.NodeID, nil
}

// notPlaced says, once per reason, why a lost node's workload does not run elsewhere yet:
// in the log and with an unplaced event.
func (c *Coordinator) notPlaced(rec *records.Record, why string) {
	same := c.pending[rec.WorkloadID] == why
	c.pending[rec.WorkloadID] = why
	if same {
		return
	}
	c.log.Warn("a lost node's workload cannot be placed yet; trying again", zap.String("workload_id", rec.WorkloadID), zap.String("reason", why))
	c.cfg.Host.Unplaced(*rec, "its node was lost and no other node can take it yet (trying again): "+why)
}

// declined lists the auction's declines, each with its node, leaving out node skip's.
func declined(declines client.Declines, skip string) []string {
	var why []string
	for _, d := range declines {
		if d.NodeID != skip {
			why = append(why, fmt.Sprintf("node %s (%s): %s", d.NodeName, d.NodeID, d.Decline))
		}
	}
	return why
}

// Holds says whether this node holds the coordinator lease now.
func (c *Coordinator) Holds() bool { return c.holds() }

// LeaseRanOut makes the last renewal older than half a lease period, as a node paused
// past its lease finds it when it runs again, before its renewal loop has (tests).
func (c *Coordinator) LeaseRanOut() { c.goodUntil.Store(time.Now().Add(-time.Second).UnixNano()) }

// CheckFence says whether node holds the coordinator lease at epoch now (the fence of a
// coordinator's placement): 409 when it does not, 503 when the lease cannot be read
// (nothing is started either way).
func (c *Coordinator) CheckFence(ctx context.Context, node string, epoch uint64) error {
	lease := c.lease.Load()
	if lease == nil { // not opened yet here
		lease, _ = c.cs.Lease(ctx, records.CoordinatorLease, c.cfg.NodeLossWindow)
	}
	if lease == nil {
		return v1.Errorf(v1.CodeUnavailable, "node %s cannot read the coordinator lease to check node %s holds it: nothing was started", c.cfg.NodeID, node)
	}
	holder, current, err := lease.Holder(ctx)
	if err != nil {
		return v1.Errorf(v1.CodeStorageUnavailable, "read the coordinator lease to check node %s holds it: %v (nothing was started)", node, err)
	}
	if holder != node || current != epoch {
		return v1.Errorf(v1.CodeConflict, "node %s asked as the coordinator of epoch %d, but the lease is %s's of epoch %d: nothing was started", node, epoch, cmp.Or(holder, "no one"), current)
	}
	return nil
}
