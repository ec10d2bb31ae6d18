package moves

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nexrun/nex/internal/retry"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/cluster"
	"github.com/nexrun/nex/pkg/node/copies"
	"github.com/nexrun/nex/pkg/node/records"
	"go.uber.org/zap"
)

// Takeover moves a lost node's workload here, under its ID, onto nexlet nexletID: the
// lost node's record is marked moved (compare-and-set on the revision the coordinator
// read: one node wins), this node's record is created, and the workload started. A start
// that fails puts the lost node's record back, so the coordinator tries again.
func (m *Moves) Takeover(ctx context.Context, nexletID string, def v1.WorkloadDefinition, t *v1.Takeover) (v1.WorkloadInfo, error) {
	cs := m.Cluster
	if cs == nil {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeNotImplemented, "node %s keeps its records to itself (not in JetStream KV): it cannot take workloads over", m.NodeID)
	}
	old, err := m.takeoverSource(ctx, cs, def, t)
	if err != nil {
		return v1.WorkloadInfo{}, err
	}
	// a reconciliation that runs meanwhile (one after a reconnect) finds the record
	// before the nexlet has the workload: it must not start it too
	m.Flags.Deploying.Store(t.WorkloadID, struct{}{})
	settling := false // settleTakeover holds the flag from here on
	defer func() {
		if !settling {
			m.Flags.Deploying.Delete(t.WorkloadID)
		}
	}()
	rec := *old
	rec.NexletID, rec.Revision, rec.MovedTo, rec.UpdatedAt, rec.TakenOver = nexletID, 0, "", time.Now().UTC(), true
	if t.UseStartRequest {
		rec.Definition.StartRequest = def.StartRequest
	} else if len(old.Escrow) > 0 {
		if rec.Definition.StartRequest, err = m.fromEscrow(old.Escrow, nexletID, old.Definition.Namespace); err != nil {
			return v1.WorkloadInfo{}, err
		}
	}
	moved := *old
	moved.Desired, moved.MovedTo, moved.UpdatedAt = records.DesiredMoved, m.NodeID, time.Now().UTC()
	settle := func() { // this record is neither started nor removed here: settleTakeover decides
		m.Entries.Drop(rec.WorkloadID)
		settling = true
		m.settleTakeover(rec, *t)
	}
	const settled = " (node %s finds out whether the workload moved here, and starts it if so)"
	m.Host.Index(rec) // before the lost node's record says moved: a list finds it in one or the other
	if err := cs.PutOf(ctx, t.FromNode, &moved); err != nil {
		m.Entries.Drop(rec.WorkloadID)
		if errors.Is(err, records.ErrConflict) {
			return v1.WorkloadInfo{}, v1.Errorf(v1.CodeConflict, "workload %s of node %s was taken over by another node", t.WorkloadID, t.FromNode)
		}
		return v1.WorkloadInfo{}, records.StorageError(err, "mark the lost node's record moved")
	}
	giveBack := func() {
		back := *old
		back.Revision = moved.Revision
		if err := cs.PutOf(context.Background(), t.FromNode, &back); err != nil {
			m.Log.Warn("put a lost node's record back after a failed takeover", zap.String("workload_id", t.WorkloadID), zap.Error(err))
		}
	}
	if err := m.Store.Put(ctx, &rec); err != nil {
		m.Entries.Drop(rec.WorkloadID)
		if errors.Is(err, records.ErrConflict) {
			// a record of it here already (a moved mark of this node's): not this
			// takeover's to remove
			giveBack()
			return v1.WorkloadInfo{}, v1.Errorf(v1.CodeConflict, "node %s still holds a record of workload %s from before it moved away", m.NodeID, rec.WorkloadID)
		}
		if records.StorageFull(err) || records.JetStreamPermanent(err) {
			giveBack() // refused: not stored
			_ = m.Store.Delete(context.Background(), rec.WorkloadID)
			return v1.WorkloadInfo{}, records.StorageError(err, "record workload "+rec.WorkloadID)
		}
		// it may be stored all the same (an answer lost), and the old node, seeing it, may
		// have stopped its copy already: neither the mark nor the record is undone blind
		settle()
		return v1.WorkloadInfo{}, records.StorageError(err, fmt.Sprintf("record workload %s"+settled, rec.WorkloadID, m.NodeID))
	}
	// the mark gone is the old node done with it: it saw this record, stopped its copy
	// and removed its mark (a race this takeover lost, and the workload with it)
	cur, err := cs.RecordOf(ctx, t.FromNode, t.WorkloadID)
	if err != nil && !errors.Is(err, records.ErrNotStored) {
		// unreadable now: the old node may have acted on the mark already
		settle()
		return v1.WorkloadInfo{}, records.StorageError(err, fmt.Sprintf("read the lost node's record again"+settled, m.NodeID))
	}
	if err == nil && (cur.Desired != records.DesiredMoved || cur.MovedTo != m.NodeID) {
		// the mark was put back meanwhile (it named this node without its record for
		// cluster.MoveGrace: writes that slow): the workload stays where it was
		// (settleTakeover removes this record, asking again until the store answers)
		settle()
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeConflict, "workload %s of node %s: the takeover's mark changed meanwhile; not started here", t.WorkloadID, t.FromNode)
	}
	m.Entries.Update(rec)
	info, err := m.Host.StartOnNexlet(ctx, rec, rec.Restarts)
	if err != nil {
		// past this point the move is done: the old node, on seeing this record, stops
		// its copy and removes its mark (chaos seed 54: a takeover whose start timed out
		// removed this record and put the mark back to running after the old node had
		// stopped its copy, and the workload ran nowhere). So the record stays, and this
		// node starts it again, or moves it on.
		m.startTakenOver(rec, *t)
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeUnavailable, "workload %s moved here from node %s but did not start yet (%v): node %s keeps trying, then moves it on", t.WorkloadID, t.FromNode, err, m.NodeID)
	}
	m.tookOver(ctx, rec, t)
	info.Definition = nil
	return info, nil
}

// tookOver finishes a takeover whose workload runs here: the start's request ID, an
// event and a log line.
func (m *Moves) tookOver(ctx context.Context, rec records.Record, t *v1.Takeover) {
	if rec.RequestID != "" {
		ns := rec.Definition.Namespace
		if err := m.Store.Reclaim(ctx, ns, rec.RequestID, records.ClaimHolder(rec.WorkloadID, t.FromNode), records.ClaimHolder(rec.WorkloadID, m.NodeID)); err != nil {
			m.Log.Warn("take over the start's request ID", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
		}
	}
	m.Host.PublishEvent(v1.Event{Type: v1.EventRescheduled, WorkloadID: rec.WorkloadID, Namespace: rec.Definition.Namespace, NodeID: m.NodeID,
		Time: time.Now().UTC(), Message: "moved from node " + t.FromNode + " (" + cmp.Or(t.Reason, v1.TakeoverLost) + ") to node " + m.NodeID,
		Data: map[string]any{"from_node": t.FromNode, "to_node": m.NodeID, "reason": cmp.Or(t.Reason, v1.TakeoverLost)}})
	m.Log.Info("took over a workload of another node", zap.String("workload_id", rec.WorkloadID), zap.String("from_node", t.FromNode))
}

// startTakenOver tries again, in the background, to start a workload this node took
// over (rec) whose first start failed: while its record here still says it runs on
// rec's nexlet, a start every 1 s doubling to 15 s; after takenOverTries failed starts,
// a move to another node (reason TakeoverStartFailed).
func (m *Moves) startTakenOver(rec records.Record, t v1.Takeover) {
	m.WG.Add(1)
	go func() {
		defer m.WG.Done()
		log := m.Log.With(zap.String("workload_id", rec.WorkloadID), zap.String("from_node", t.FromNode))
		log.Warn("a workload taken over did not start; trying again")
		backoff := retry.Backoff{First: time.Second, Max: 15 * time.Second}
		for try := 1; backoff.Wait(m.Ctx, 0); try++ {
			ctx, cancel := context.WithTimeout(m.Ctx, records.RetryBudget)
			done := m.retryTakenOver(ctx, rec, &t, try, log)
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
func (m *Moves) retryTakenOver(ctx context.Context, rec records.Record, t *v1.Takeover, try int, log *zap.Logger) bool {
	cur, err := m.Store.Get(ctx, rec.WorkloadID)
	switch {
	case errors.Is(err, records.ErrNotStored):
		return true // removed: stopped meanwhile
	case err != nil:
		return false
	case cur.Desired != records.DesiredRunning || cur.NexletID != rec.NexletID:
		return true // stopped, or moved on: no longer this loop's
	}
	if try > takenOverTries {
		to, err := cluster.MoveElsewhere(ctx, m.Conn, m.NodeID, cur, v1.TakeoverStartFailed, cluster.GroupAccept(ctx, m.Cluster, cur), nil)
		if err != nil {
			m.Host.Unplaced(*cur, "moved to node "+m.NodeID+", which could not start it, and no other node can take it yet (trying again): "+err.Error())
			return false
		}
		log.Info("moved a workload this node took over but could not start to another node", zap.String("to_node", to))
		return true
	}
	m.Host.Index(*cur) // a takeover that settled dropped it: stops and quotas find it
	claimed, ok := m.Copies.ClaimToStart(ctx, *cur, log)
	if !ok {
		// the record changed meanwhile (moved, stopped, removed): no longer this loop's;
		// still as it was, the claim's write failed (a passing store failure): again
		now, err := m.Store.Get(ctx, rec.WorkloadID)
		return errors.Is(err, records.ErrNotStored) || err == nil && (now.Desired != records.DesiredRunning || now.NexletID != rec.NexletID)
	}
	if _, err := m.Host.StartOnNexlet(ctx, claimed, claimed.Restarts); err != nil && !v1.IsCode(err, v1.CodeConflict) {
		log.Warn("start a workload taken over again", zap.Int("try", try), zap.Error(err))
		return false
	}
	m.tookOver(ctx, claimed, t)
	return true
}

// takeoverSource reads the record a takeover moves here, and checks it is the one the
// coordinator read, of def's namespace, and not a workload this node still has.
func (m *Moves) takeoverSource(ctx context.Context, cs records.ClusterStore, def v1.WorkloadDefinition, t *v1.Takeover) (*records.Record, error) {
	if err := v1.ValidateToken("workload ID", t.WorkloadID); err != nil {
		return nil, err
	}
	if err := v1.ValidateToken("node ID", t.FromNode); err != nil {
		return nil, err
	}
	if err := m.heldHere(ctx, cs, t.WorkloadID, def.Namespace); err != nil {
		return nil, err
	}
	old, err := cs.RecordOf(ctx, t.FromNode, t.WorkloadID)
	if err != nil && !errors.Is(err, records.ErrNotStored) {
		return nil, records.StorageError(err, "read the lost node's record")
	}
	if err != nil || old.Definition.Namespace != def.Namespace {
		// the same answer for no record and another namespace's: a takeover (which a
		// tenant may send) tells it nothing of which workload IDs exist elsewhere
		return nil, v1.NotFound("workload %s of node %s not found in namespace %s", t.WorkloadID, t.FromNode, def.Namespace)
	}
	if old.Revision != t.Revision || old.Desired != records.DesiredRunning {
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
// is. Another namespace's workload is not looked at: the takeover then fails on the
// lost node's record, saying nothing of this node's.
func (m *Moves) heldHere(ctx context.Context, cs records.ClusterStore, wid, ns string) error {
	if e, ok := m.Entries.Get(wid); !ok || e.Rec.Definition.Namespace != ns {
		return nil
	}
	if own, err := cs.RecordOf(ctx, m.NodeID, wid); err == nil && own.Desired == records.DesiredMoved && own.MovedTo != m.NodeID {
		m.WG.Add(1)
		go func() {
			defer m.WG.Done()
			m.Copies.StopMoved(*own, copies.StaleCopy)
		}()
	}
	return v1.Errorf(v1.CodeConflict, "node %s still has a copy of workload %s from before it moved away: it stops that copy first", m.NodeID, wid)
}

// settleTakeover finishes, in the background, a takeover whose record write here failed
// without saying whether it was stored, or whose read of the old node's record after it
// failed. Putting the old node's record back and removing this one, as a takeover that
// failed for sure does, lost the workload when the write had been stored: the old node
// had seen it, stopped its copy and removed its mark (chaos seed 1: the new node's server
// was stopped while it waited). So nothing is undone blind: this takeover's record,
// found stored, is started (the old node stops its copy on seeing it), unless the old
// node's mark was put back meanwhile (it named this node without its record for
// cluster.MoveGrace), when the record goes. One not found is looked for until
// 2 × cluster.MoveGrace have passed (a write held in a reconnect buffer lands late); the
// mark is put back after cluster.MoveGrace, by the old node or, for a lost one, the
// coordinator. It holds the workload's Deploying flag (set by Takeover) until it is done:
// a reconciliation meanwhile indexes the record and leaves its start to this.
func (m *Moves) settleTakeover(rec records.Record, t v1.Takeover) {
	m.WG.Add(1)
	go func() {
		defer m.WG.Done()
		defer m.Flags.Deploying.Delete(rec.WorkloadID)
		log := m.Log.With(zap.String("workload_id", rec.WorkloadID), zap.String("from_node", t.FromNode))
		backoff := retry.Backoff{First: 250 * time.Millisecond, Max: 5 * time.Second}
		giveUp := time.Now().Add(2 * cluster.MoveGrace)
		for backoff.Wait(m.Ctx, 0) {
			ctx, cancel := context.WithTimeout(m.Ctx, records.RetryBudget)
			done := m.settleOnce(ctx, rec, &t, log)
			cancel()
			if done || time.Now().After(giveUp) {
				return
			}
		}
	}()
}

// settleOnce is one look of settleTakeover; true when nothing is left to do.
func (m *Moves) settleOnce(ctx context.Context, rec records.Record, t *v1.Takeover, log *zap.Logger) bool {
	own, err := m.Store.Get(ctx, rec.WorkloadID)
	switch {
	case errors.Is(err, records.ErrNotStored):
		return false // not stored (yet)
	case err != nil:
		return false
	case !own.UpdatedAt.Equal(rec.UpdatedAt) || own.NexletID != rec.NexletID || own.Desired != records.DesiredRunning:
		return true // written since, by someone else: not this takeover's record
	}
	old, err := m.Cluster.RecordOf(ctx, t.FromNode, t.WorkloadID)
	if err != nil && !errors.Is(err, records.ErrNotStored) {
		return false
	}
	if err == nil && (old.Desired != records.DesiredMoved || old.MovedTo != m.NodeID) {
		// the mark was put back meanwhile: the workload stays where it was
		if err := m.Cluster.RemoveOf(ctx, m.NodeID, rec.WorkloadID, own.Revision); err != nil {
			return false // changed meanwhile, or unanswered: looked at again
		}
		log.Info("a takeover's record write went unanswered; the old node's record was put back meanwhile: the record here is removed")
		return true
	}
	// the mark still names this node, or is gone: the old node saw this record
	log.Warn("a takeover's record write went unanswered but was stored: the workload starts here")
	if !m.retryTakenOver(ctx, *own, t, 1, log) {
		m.startTakenOver(*own, *t)
	}
	return true
}
