package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/retry"
	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/cluster"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/seal"
)

// takeover moves a lost node's workload here, under its ID, onto nexlet nexletID: the
// lost node's record is marked moved (compare-and-set on the revision the coordinator
// read: one node wins), this node's record is created, and the workload started. A start
// that fails puts the lost node's record back, so the coordinator tries again.
func (n *Node) takeover(ctx context.Context, nexletID string, def v1.WorkloadDefinition, t *v1.Takeover) (v1.WorkloadInfo, error) {
	cs, ok := n.cfg.Store.(ClusterStore)
	if !ok {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeNotImplemented, "node %s keeps its records to itself (not in JetStream KV): it cannot take workloads over", n.cfg.NodeID)
	}
	old, err := n.takeoverSource(ctx, cs, def, t)
	if err != nil {
		return v1.WorkloadInfo{}, err
	}
	// a reconciliation that runs meanwhile (one after a reconnect) finds the record
	// before the nexlet has the workload: it must not start it too
	n.deploying.Store(t.WorkloadID, struct{}{})
	defer n.deploying.Delete(t.WorkloadID)
	rec := *old
	rec.NexletID, rec.Revision, rec.MovedTo, rec.UpdatedAt, rec.TakenOver = nexletID, 0, "", time.Now().UTC(), true
	if t.UseStartRequest {
		rec.Definition.StartRequest = def.StartRequest
	} else if len(old.Escrow) > 0 {
		if rec.Definition.StartRequest, err = n.fromEscrow(old.Escrow, nexletID); err != nil {
			return v1.WorkloadInfo{}, err
		}
	}
	moved := *old
	moved.Desired, moved.MovedTo, moved.UpdatedAt = DesiredMoved, n.cfg.NodeID, time.Now().UTC()
	n.index(rec) // before the lost node's record says moved: a list finds it in one or the other
	if err := cs.PutOf(ctx, t.FromNode, &moved); err != nil {
		n.unindex(rec.WorkloadID)
		if errors.Is(err, ErrConflict) {
			return v1.WorkloadInfo{}, v1.Errorf(v1.CodeConflict, "workload %s of node %s was taken over by another node", t.WorkloadID, t.FromNode)
		}
		return v1.WorkloadInfo{}, records.StorageError(err, "mark the lost node's record moved")
	}
	giveBack := func() {
		back := *old
		back.Revision = moved.Revision
		if err := cs.PutOf(context.Background(), t.FromNode, &back); err != nil {
			n.log.Warn("put a lost node's record back after a failed takeover", zap.String("workload_id", t.WorkloadID), zap.Error(err))
		}
	}
	if err := n.cfg.Store.Put(ctx, &rec); err != nil {
		n.unindex(rec.WorkloadID)
		giveBack()
		if errors.Is(err, ErrConflict) {
			// a record of it here already (a moved mark of this node's): not this
			// takeover's to remove
			return v1.WorkloadInfo{}, v1.Errorf(v1.CodeConflict, "node %s still holds a record of workload %s from before it moved away", n.cfg.NodeID, rec.WorkloadID)
		}
		// it may be stored all the same (an answer lost): a record here and the lost
		// node's put back would both be running, and both be taken over later
		_ = n.cfg.Store.Delete(context.Background(), rec.WorkloadID)
		return v1.WorkloadInfo{}, records.StorageError(err, "record workload "+rec.WorkloadID)
	}
	// the mark gone is the old node done with it: it saw this record, stopped its copy
	// and removed its mark (a race this takeover lost, and the workload with it)
	if cur, err := cs.RecordOf(ctx, t.FromNode, t.WorkloadID); (err != nil && !errors.Is(err, ErrNotStored)) || (err == nil && (cur.Desired != DesiredMoved || cur.MovedTo != n.cfg.NodeID)) {
		// the mark was put back meanwhile (it named this node without its record for
		// cluster.MoveGrace: writes that slow): the workload stays where it was
		n.unindex(rec.WorkloadID)
		_ = n.cfg.Store.Delete(context.Background(), rec.WorkloadID)
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeConflict, "workload %s of node %s: the takeover's mark changed meanwhile; not started here", t.WorkloadID, t.FromNode)
	}
	n.reindex(rec)
	info, err := n.startOnNexlet(ctx, rec, rec.Restarts)
	if err != nil {
		// past this point the move is done: the old node, on seeing this record, stops
		// its copy and removes its mark (chaos seed 54: a takeover whose start timed out
		// removed this record and put the mark back to running after the old node had
		// stopped its copy, and the workload ran nowhere). So the record stays, and this
		// node starts it again, or moves it on.
		n.startTakenOver(rec, *t)
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeUnavailable, "workload %s moved here from node %s but did not start yet (%v): node %s keeps trying, then moves it on", t.WorkloadID, t.FromNode, err, n.cfg.NodeID)
	}
	n.tookOver(ctx, rec, t)
	info.Definition = nil
	return info, nil
}

// tookOver finishes a takeover whose workload runs here: the start's request ID, an
// event and a log line.
func (n *Node) tookOver(ctx context.Context, rec Record, t *v1.Takeover) {
	if rec.RequestID != "" {
		ns := rec.Definition.Namespace
		if err := n.cfg.Store.Reclaim(ctx, ns, rec.RequestID, rec.WorkloadID+"@"+t.FromNode, n.claimHolder(rec.WorkloadID)); err != nil {
			n.log.Warn("take over the start's request ID", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
		}
	}
	n.publishEvent(v1.Event{Type: v1.EventRescheduled, WorkloadID: rec.WorkloadID, Namespace: rec.Definition.Namespace, NodeID: n.cfg.NodeID,
		Time: time.Now().UTC(), Message: "moved from node " + t.FromNode + " (" + cmp.Or(t.Reason, v1.TakeoverLost) + ") to node " + n.cfg.NodeID,
		Data: map[string]any{"from_node": t.FromNode, "to_node": n.cfg.NodeID, "reason": cmp.Or(t.Reason, v1.TakeoverLost)}})
	n.log.Info("took over a workload of another node", zap.String("workload_id", rec.WorkloadID), zap.String("from_node", t.FromNode))
}

// startTakenOver tries again, in the background, to start a workload this node took
// over (rec) whose first start failed: while its record here still says it runs on
// rec's nexlet, a start every 1 s doubling to 15 s; after takenOverTries failed starts,
// a move to another node (reason TakeoverStartFailed).
func (n *Node) startTakenOver(rec Record, t v1.Takeover) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		log := n.log.With(zap.String("workload_id", rec.WorkloadID), zap.String("from_node", t.FromNode))
		log.Warn("a workload taken over did not start; trying again")
		backoff := retry.Backoff{First: time.Second, Max: 15 * time.Second}
		for try := 1; backoff.Wait(n.ctx, 0); try++ {
			ctx, cancel := context.WithTimeout(n.ctx, records.RetryBudget)
			done := n.retryTakenOver(ctx, rec, &t, try, log)
			cancel()
			if done {
				return
			}
		}
	}()
}

// takenOverTries is how many starts a workload taken over gets here before it moves on.
const takenOverTries = 3

// retryTakenOver is one try of startTakenOver; true when nothing is left to do.
func (n *Node) retryTakenOver(ctx context.Context, rec Record, t *v1.Takeover, try int, log *zap.Logger) bool {
	cur, err := n.cfg.Store.Get(ctx, rec.WorkloadID)
	switch {
	case errors.Is(err, ErrNotStored):
		return true // removed: stopped meanwhile
	case err != nil:
		return false
	case cur.Desired != DesiredRunning || cur.NexletID != rec.NexletID:
		return true // stopped, or moved on: no longer this loop's
	}
	if try > takenOverTries {
		cs, _ := n.cfg.Store.(ClusterStore)
		to, err := cluster.MoveElsewhere(ctx, n.nc, n.cfg.NodeID, cur, v1.TakeoverStartFailed, cluster.GroupAccept(ctx, cs, cur), nil)
		if err != nil {
			n.unplaced(*cur, "moved to node "+n.cfg.NodeID+", which could not start it, and no other node can take it yet (trying again): "+err.Error())
			return false
		}
		log.Info("moved a workload this node took over but could not start to another node", zap.String("to_node", to))
		return true
	}
	claimed, ok := n.claimToStart(ctx, *cur, log)
	if !ok {
		return true
	}
	if _, err := n.startOnNexlet(ctx, claimed, claimed.Restarts); err != nil && !v1.IsCode(err, v1.CodeConflict) {
		log.Warn("start a workload taken over again", zap.Int("try", try), zap.Error(err))
		return false
	}
	n.tookOver(ctx, claimed, t)
	return true
}

// takeoverSource reads the record a takeover moves here, and checks it is the one the
// coordinator read, of def's namespace, and not a workload this node still has.
func (n *Node) takeoverSource(ctx context.Context, cs ClusterStore, def v1.WorkloadDefinition, t *v1.Takeover) (*Record, error) {
	if err := v1.ValidateToken("workload ID", t.WorkloadID); err != nil {
		return nil, err
	}
	if err := v1.ValidateToken("node ID", t.FromNode); err != nil {
		return nil, err
	}
	if err := n.heldHere(ctx, cs, t.WorkloadID); err != nil {
		return nil, err
	}
	old, err := cs.RecordOf(ctx, t.FromNode, t.WorkloadID)
	if errors.Is(err, ErrNotStored) {
		return nil, v1.Errorf(v1.CodeConflict, "workload %s of node %s is gone", t.WorkloadID, t.FromNode)
	}
	if err != nil {
		return nil, records.StorageError(err, "read the lost node's record")
	}
	if old.Definition.Namespace != def.Namespace {
		return nil, v1.NotFound("workload %s not found in namespace %s", t.WorkloadID, def.Namespace)
	}
	if old.Revision != t.Revision || old.Desired != DesiredRunning {
		return nil, v1.Errorf(v1.CodeConflict, "workload %s of node %s changed since the coordinator read it", t.WorkloadID, t.FromNode)
	}
	return old, nil
}

// heldHere refuses the takeover of a workload this node still has: its own copy from
// before the workload moved away (chaos seeds 38 and 41: a node back from a pause was
// asked by a drain to take back a workload whose stale copy it still ran; the takeover
// replaced the copy's index entry, failed on the record the node still held, then
// removed that record and the entry, and the copy ran on untracked beside the drained
// node's for minutes). A stale copy is stopped now; the takeover can come again once it
// is.
func (n *Node) heldHere(ctx context.Context, cs ClusterStore, wid string) error {
	if !n.idx.Has(wid) {
		return nil
	}
	if own, err := cs.RecordOf(ctx, n.cfg.NodeID, wid); err == nil && own.Desired == DesiredMoved && own.MovedTo != n.cfg.NodeID {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.stopMoved(*own, staleCopy)
		}()
	}
	return v1.Errorf(v1.CodeConflict, "node %s still has a copy of workload %s from before it moved away: it stops that copy first", n.cfg.NodeID, wid)
}

// fromEscrow seals the escrowed start request's values (sealed for the cluster's secrets
// key) for nexlet nexletID.
func (n *Node) fromEscrow(escrow []byte, nexletID string) ([]byte, error) {
	if n.secretStore == nil {
		return nil, v1.Errorf(v1.CodeUnavailable, "node %s has no --secrets-key: it cannot open the workload's environment", n.cfg.NodeID)
	}
	e, ok := n.nexlets.Get(nexletID, time.Now())
	if !ok {
		return nil, v1.Errorf(v1.CodeUnavailable, "nexlet %s is no longer registered", nexletID)
	}
	out, err := seal.Reseal(escrow, n.secretStore.Key(), e.Reg.XKey)
	if err != nil {
		return nil, v1.Errorf(v1.CodeInternal, "open the workload's escrowed environment (is --secrets-key the same on every node?): %v", err)
	}
	return out, nil
}

// escrow keeps, in rec's record, its start request with the sealed values sealed for the
// cluster's secrets key, so another node can open them when this one is lost. Only the
// nexlet can open them; it seals them anew (as for a clone).
func (n *Node) escrow(ctx context.Context, rec Record) {
	if n.secretStore == nil || !strings.Contains(string(rec.Definition.StartRequest), seal.Prefix) {
		return
	}
	recipient, err := n.secretStore.Key().PublicKey()
	if err != nil {
		return
	}
	var out json.RawMessage
	cctx, cancel := context.WithTimeout(ctx, nexletCallTimeout)
	defer cancel()
	if err := n.askNexlet(cctx, rec.NexletID, v1.NexletReseal, "", v1.ResealRequest{StartRequest: rec.Definition.StartRequest, Recipient: recipient}, &out); err != nil {
		n.log.Warn("escrow the workload's sealed environment: it cannot move if this node is lost", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
		return
	}
	if _, err := n.updateRecord(ctx, rec.WorkloadID, func(r *Record) { r.Escrow = out }); err != nil {
		n.log.Warn("record the workload's escrowed environment", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
	}
}

// watchMoves stops, as soon as it learns of it, the copy this node runs of a workload
// another node took over while this one was cut off or down. A watch started before is
// ended: the watch is started again whenever the node may have missed changes (rewatch).
func (n *Node) watchMoves(cs ClusterStore) error {
	ctx, cancel := context.WithCancel(n.ctx)
	if err := n.watchOwn(ctx, cs); err != nil {
		cancel()
		return err
	}
	n.watchMu.Lock()
	old := n.watchCancel
	n.watchCancel = cancel
	n.watchMu.Unlock()
	if old != nil {
		old()
	}
	return nil
}

// rewatch starts the watch of this node's records again, asking again while the store
// does not answer (250 ms doubling, five tries in 4 s). The watch is a JetStream ordered
// consumer: cut off from its stream long enough, nats.go may fail to create it again and
// end it without a word, and nothing more would reach this node of what other nodes do
// to its records.
func (n *Node) rewatch(cs ClusterStore) {
	p := retry.Policy{Backoff: retry.Backoff{First: 250 * time.Millisecond, Max: 5 * time.Second}, Budget: 4 * time.Second}
	err := retry.Do(n.ctx, p, func(context.Context) error { return n.watchMoves(cs) })
	if err != nil && n.ctx.Err() == nil {
		n.log.Warn("watch this node's records again: a workload taken over while this node was away is stopped at its next reconciliation", zap.Error(err))
	}
}

func (n *Node) watchOwn(ctx context.Context, cs ClusterStore) error {
	return cs.WatchOwn(ctx, func(wid string, rec *Record) {
		if rec == nil {
			n.recordRemoved(wid)
			return
		}
		if rec.Desired == DesiredStopping {
			n.stopMarked(*rec)
			return
		}
		if rec.Desired != DesiredMoved || rec.MovedTo == n.cfg.NodeID {
			return
		}
		if _, draining := n.draining.Load(wid); draining {
			return // the drain stops it once the new copy runs
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.stopMoved(*rec, staleCopy)
		}()
	})
}

// recordRemoved stops this node's running copy of a workload whose record another node
// removed: the coordinator removes the record of a copy whose node was lost while a
// replica group stop had marked it stopping (a chaos run: the node came back, nothing
// told it, and the copy ran on after the group's stop was acknowledged). The removal is
// checked against the store (a leader read), so an event of a record written again since
// stops nothing.
func (n *Node) recordRemoved(wid string) {
	if _, own := n.ownStops.Load(wid); own {
		return
	}
	if _, draining := n.draining.Load(wid); draining {
		return
	}
	if w, ok := n.idx.Get(wid); !ok || w.Rec.Desired != DesiredRunning {
		return // not here, or this node is stopping it
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, nexletCallTimeout)
		defer cancel()
		if _, err := n.cfg.Store.Get(ctx, wid); !errors.Is(err, ErrNotStored) {
			return // stored again (or unreadable now: the next write finds out, see updateRecord)
		}
		if w, ok := n.idx.Get(wid); ok && w.Rec.Desired == DesiredRunning {
			n.leaveMoved(w.Rec, unrecorded)
		}
	}()
}

// stopMarked stops a workload this node runs whose record another node marked stopping
// (the coordinator, stopping a replica group while this node did not answer).
func (n *Node) stopMarked(rec Record) {
	if _, own := n.ownStops.Load(rec.WorkloadID); own {
		return // this node's own stop wrote it
	}
	w, ok := n.idx.Get(rec.WorkloadID)
	if !ok || w.Rec.Desired != DesiredRunning {
		return // not here, or stopped already
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, stopBound(rec, v1.StopRequest{}))
		defer cancel()
		rec.NexletID = w.Rec.NexletID
		n.reindex(rec)
		if _, err := n.stopWorkload(ctx, rec, v1.StopRequest{}); err != nil {
			n.log.Warn("stop a workload whose record says stop", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
			return
		}
		n.log.Info("stopped a workload whose record another node marked stopping (its replica group was stopped while this node was away)", zap.String("workload_id", rec.WorkloadID))
	}()
}

// staleCopy is what stopMoved logs of a copy left from before the node was away.
const staleCopy = "stopped this node's copy of a workload another node took over while this one was away"

// unrecorded is what stopMoved logs of a workload no record holds any longer.
const unrecorded = "stopped a workload its nexlet runs that no record holds (stopped or moved while this node was away)"

// stopMoved stops this node's copy of a workload that moved to another node, and
// removes the moved record; done is logged once it is stopped. A stop the nexlet does not
// answer (it is reconnecting after an outage, or being restarted) is asked again, after
// 250 ms doubling to 5 s, until it is answered or the node stops: a copy left running would run
// twice, for good. One stopMoved runs per workload at a time.
func (n *Node) stopMoved(rec Record, done string) {
	if _, busy := n.stoppingMoved.LoadOrStore(rec.WorkloadID, struct{}{}); busy {
		return
	}
	defer n.stoppingMoved.Delete(rec.WorkloadID)
	if n.awaitMove(rec) {
		return // the takeover failed half-way: the copy here stays
	}
	w, indexed := n.idx.Drop(rec.WorkloadID)
	nexletID := rec.NexletID
	if indexed {
		nexletID = w.Rec.NexletID
	}
	subject := v1.NexletSubject(n.cfg.NodeID, nexletID, v1.NexletStop, rec.WorkloadID)
	backoff := retry.Backoff{First: 250 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		if _, failed := n.failedNexlets.Load(nexletID); failed {
			break // nothing of it runs: the supervisor gave up on it and killed what it left
		}
		ctx, cancel := context.WithTimeout(n.ctx, stopBound(rec, v1.StopRequest{})+5*time.Second)
		err := svc.CallWaiting(ctx, n.nxc, subject, v1.StopRequest{}, nil, nexletGap)
		cancel()
		if err == nil || v1.IsNotFound(err) {
			break
		}
		if attempt == 1 || attempt%10 == 0 {
			n.log.Warn("stop the copy of a workload that moved; asking again", zap.String("workload_id", rec.WorkloadID), zap.Int("attempt", attempt), zap.Duration("in", backoff.Peek()), zap.Error(err))
		}
		if !backoff.Wait(n.ctx, 0) {
			return // the record stays: the next start's reconcile stops it
		}
	}
	if cs, ok := n.cfg.Store.(ClusterStore); ok {
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		if err := cs.RemoveOf(ctx, n.cfg.NodeID, rec.WorkloadID, rec.Revision); err != nil {
			n.log.Debug("remove a moved record", zap.Error(err))
		}
		cancel()
	}
	n.log.Info(done, zap.String("workload_id", rec.WorkloadID), zap.String("moved_to", rec.MovedTo))
}

// ownedElsewhere says whether another node holds a record of wid (this node's copy is
// stale: the workload was taken over while this node was away).
func (n *Node) ownedElsewhere(ctx context.Context, wid string) bool {
	cs, ok := n.cfg.Store.(ClusterStore)
	if !ok {
		return false
	}
	owners, err := cs.Owners(ctx, wid)
	if err != nil {
		return false
	}
	for _, o := range owners {
		if o != n.cfg.NodeID {
			return true
		}
	}
	return false
}
