package node

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/retry"
	"github.com/nexrun/nex/pkg/node/cluster"
	"github.com/nexrun/nex/pkg/node/records"
)

// Moved marks, what they stand for and how one is checked, belong to the cluster room
// (package cluster, moves.go); what follows is this node's side: its own copy of a
// workload marked moved.

// awaitMove waits, before this node stops its copy of a workload whose record is marked
// moved (rec), until the node the mark names holds the record (false: stop the copy).
// It returns true when the copy stays: the mark was put back (by the node that failed to
// take it over, or here once it named nobody for cluster.MoveGrace), and the record is indexed again.
func (n *Node) awaitMove(rec Record) bool {
	cs, ok := n.cfg.Store.(ClusterStore)
	if !ok || rec.MovedTo == "" {
		return false
	}
	backoff := retry.Backoff{First: 250 * time.Millisecond, Max: 5 * time.Second}
	giveUp := time.Now().Add(2 * cluster.MoveGrace) // the store unreadable all along: stop, as before
	for {
		ctx, cancel := context.WithTimeout(n.ctx, records.AttemptTimeout)
		state := cluster.CheckMove(ctx, cs, n.cfg.NodeID, rec)
		if state == cluster.MoveDone {
			cancel()
			return false
		}
		if state == cluster.MoveDangling {
			if back, ok := cluster.RestoreMoved(ctx, cs, n.cfg.NodeID, rec); ok {
				cancel()
				n.keepMoved(back, "a takeover of this node's workload failed half-way (its mark named a node without its record): it stays here")
				return true
			}
		}
		cur, err := cs.RecordOf(ctx, n.cfg.NodeID, rec.WorkloadID)
		cancel()
		switch {
		case errors.Is(err, ErrNotStored):
			return false // removed: nothing holds it here any more
		case err == nil && cur.Desired != DesiredMoved:
			n.keepMoved(*cur, "a takeover of this node's workload was given back: it stays here")
			return true
		case err == nil:
			rec = *cur
		}
		if time.Now().After(giveUp) || !backoff.Wait(n.ctx, 0) {
			return false
		}
	}
}

// keepMoved indexes again a record whose moved mark was put back, and reconciles its
// nexlet, which starts the workload again if it no longer runs it: its node may have
// restarted while the mark stood, and the reconciliation at its nexlet's registration
// left a workload marked moved alone (chaos seed 90: acknowledged, it ran nowhere).
func (n *Node) keepMoved(rec Record, why string) {
	if rec.Desired != DesiredRunning {
		return
	}
	n.index(rec)
	n.log.Warn(why, zap.String("workload_id", rec.WorkloadID))
	n.reconcileLater(rec.NexletID)
}

// dropMarks removes, before a stop removes this node's record of a workload that came
// here by a takeover, the moved marks other nodes' records keep of it: a node that comes
// back then hears its record removed and stops its copy. Were the marks left (a stop
// that removed them after its own record, and failed: a chaos run), a mark would name a
// node without the record, be taken for a takeover that failed half-way, and put back:
// the stopped workload would run again.
func (n *Node) dropMarks(rec Record) error {
	cs, ok := n.cfg.Store.(ClusterStore)
	if !ok || !rec.TakenOver {
		return nil
	}
	wid := rec.WorkloadID
	ctx, cancel := context.WithTimeout(n.ctx, records.RetryBudget)
	defer cancel()
	var owners []string
	err := records.Retry(ctx, func(actx context.Context) (err error) {
		owners, err = cs.Owners(actx, wid)
		return err
	})
	if err != nil {
		return err
	}
	for _, o := range owners { // a mark is never the record that holds the workload
		r, err := cs.RecordOf(ctx, o, wid)
		if errors.Is(err, ErrNotStored) {
			continue
		}
		if err != nil {
			return err
		}
		if r.Desired != DesiredMoved {
			continue
		}
		if err := cs.RemoveOf(ctx, o, wid, r.Revision); err != nil && !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return nil
}

// dropMarksLater removes the marks, then this node's record, once the store answers.
func (n *Node) dropMarksLater(rec Record) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		backoff := retry.Backoff{First: time.Second, Max: 30 * time.Second}
		for backoff.Wait(n.ctx, 0) {
			if n.dropMarks(rec) != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(n.ctx, records.RetryBudget)
			err := n.cfg.Store.Delete(ctx, rec.WorkloadID)
			cancel()
			if err == nil {
				return
			}
		}
	}()
}
