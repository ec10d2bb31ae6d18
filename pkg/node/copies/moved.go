package copies

import (
	"context"
	"errors"
	"time"

	"github.com/nexrun/nex/internal/retry"
	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/cluster"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"go.uber.org/zap"
)

// Moved marks, what they stand for and how one is checked, belong to the cluster room
// (package cluster, moves.go); what follows is this node's side: its own copy of a
// workload marked moved.

// awaitMove waits, before this node stops its copy of a workload whose record is marked
// moved (rec), until the node the mark names holds the record (false: stop the copy).
// It returns true when the copy stays: the mark was put back (by the node that failed to
// take it over, or here once it named nobody for cluster.MoveGrace), and the record is indexed again.
func (c *Copies) awaitMove(rec records.Record) bool {
	cs := c.Cluster
	if cs == nil || rec.MovedTo == "" {
		return false
	}
	backoff := retry.Backoff{First: 250 * time.Millisecond, Max: 5 * time.Second}
	giveUp := time.Now().Add(2 * cluster.MoveGrace) // the store unreadable all along: stop, as before
	for {
		// this node's record first: a mark put back meanwhile (by the coordinator, for
		// this node while it was lost) keeps the copy, whoever holds a record by now
		ctx, cancel := context.WithTimeout(c.Ctx, records.AttemptTimeout)
		cur, err := cs.RecordOf(ctx, c.NodeID, rec.WorkloadID)
		switch {
		case errors.Is(err, records.ErrNotStored):
			cancel()
			return false // removed: nothing holds it here any more
		case err == nil && cur.Desired != records.DesiredMoved:
			cancel()
			c.keepMoved(*cur, "a takeover of this node's workload was given back: it stays here")
			return true
		case err == nil:
			rec = *cur
		}
		state := cluster.CheckMove(ctx, cs, c.NodeID, rec)
		if state == cluster.MoveDone {
			cancel()
			return false
		}
		if state == cluster.MoveDangling {
			if back, ok := cluster.RestoreMoved(ctx, cs, c.NodeID, rec); ok {
				cancel()
				c.keepMoved(back, "a takeover of this node's workload failed half-way (its mark named a node without its record): it stays here")
				return true
			}
		}
		cancel()
		if time.Now().After(giveUp) || !backoff.Wait(c.Ctx, 0) {
			return false
		}
	}
}

// keepMoved indexes again a record whose moved mark was put back, and reconciles its
// nexlet, which starts the workload again if it no longer runs it: its node may have
// restarted while the mark stood, and the reconciliation at its nexlet's registration
// left a workload marked moved alone (chaos seed 90: acknowledged, it ran nowhere).
func (c *Copies) keepMoved(rec records.Record, why string) {
	if rec.Desired != records.DesiredRunning {
		return
	}
	c.Host.Index(rec)
	c.Log.Warn(why, zap.String("workload_id", rec.WorkloadID))
	c.ReconcileLater(rec.NexletID)
}

// DropMarks removes, before a stop removes this node's record of a workload that came
// here by a takeover, the moved marks other nodes' records keep of it: a node that comes
// back then hears its record removed and stops its copy. Were the marks left (a stop
// that removed them after its own record, and failed: a chaos run), a mark would name a
// node without the record, be taken for a takeover that failed half-way, and put back:
// the stopped workload would run again.
func (c *Copies) DropMarks(rec records.Record) error {
	cs := c.Cluster
	if cs == nil || !rec.TakenOver {
		return nil
	}
	wid := rec.WorkloadID
	ctx, cancel := context.WithTimeout(c.Ctx, records.RetryBudget)
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
		if errors.Is(err, records.ErrNotStored) {
			continue
		}
		if err != nil {
			return err
		}
		if r.Desired != records.DesiredMoved {
			continue
		}
		if err := cs.RemoveOf(ctx, o, wid, r.Revision); err != nil && !errors.Is(err, records.ErrConflict) {
			return err
		}
	}
	return nil
}

// DropMarksLater removes the marks, then this node's record, once the store answers.
func (c *Copies) DropMarksLater(rec records.Record) {
	c.WG.Add(1)
	go func() {
		defer c.WG.Done()
		backoff := retry.Backoff{First: time.Second, Max: 30 * time.Second}
		for backoff.Wait(c.Ctx, 0) {
			if c.DropMarks(rec) != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(c.Ctx, records.RetryBudget)
			err := c.Store.Delete(ctx, rec.WorkloadID)
			cancel()
			if err == nil {
				return
			}
		}
	}()
}

// LeaveMoved gives up this node's copy of a workload it learns (a compare-and-set that
// failed) another node took over: it is unindexed at once, so a lookup asked again finds
// the new node (a chaos run: a stop was answered "taken over", and the workload ran on),
// and stopped in the background as Watch would.
func (c *Copies) LeaveMoved(rec records.Record, why string) {
	if w, ok := c.Entries.Drop(rec.WorkloadID); ok {
		rec.NexletID = w.Rec.NexletID
	}
	c.WG.Add(1)
	go func() {
		defer c.WG.Done()
		c.StopMoved(rec, why)
	}()
}

// StaleCopy is what StopMoved logs of a copy left from before the node was away.
const StaleCopy = "stopped this node's copy of a workload another node took over while this one was away"

// Unrecorded is what StopMoved logs of a workload no record holds any longer.
const Unrecorded = "stopped a workload its nexlet runs that no record holds (stopped or moved while this node was away)"

// StopMoved stops this node's copy of a workload that moved to another node, and
// removes the moved record; done is logged once it is stopped. A stop the nexlet does not
// answer (it is reconnecting after an outage, or being restarted) is asked again, after
// 250 ms doubling to 5 s, until it is answered or the node stops: a copy left running would run
// twice, for good. One StopMoved runs per workload at a time.
func (c *Copies) StopMoved(rec records.Record, done string) {
	if _, busy := c.stoppingMoved.LoadOrStore(rec.WorkloadID, struct{}{}); busy {
		return
	}
	defer c.stoppingMoved.Delete(rec.WorkloadID)
	if c.awaitMove(rec) {
		return // the takeover failed half-way: the copy here stays
	}
	w, indexed := c.Entries.Drop(rec.WorkloadID)
	nexletID := rec.NexletID
	if indexed {
		nexletID = w.Rec.NexletID
	}
	subject := v1.NexletSubject(c.NodeID, nexletID, v1.NexletStop, rec.WorkloadID)
	backoff := retry.Backoff{First: 250 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		if _, failed := c.Flags.FailedNexlets.Load(nexletID); failed {
			break // nothing of it runs: the supervisor gave up on it and killed what it left
		}
		ctx, cancel := context.WithTimeout(c.Ctx, StopBound(rec, v1.StopRequest{})+5*time.Second)
		err := svc.CallWaiting(ctx, c.Conn, subject, v1.StopRequest{}, nil, registry.CallGap)
		cancel()
		if err == nil || v1.IsNotFound(err) {
			break
		}
		if attempt == 1 || attempt%10 == 0 {
			c.Log.Warn("stop the copy of a workload that moved; asking again", zap.String("workload_id", rec.WorkloadID), zap.Int("attempt", attempt), zap.Duration("in", backoff.Peek()), zap.Error(err))
		}
		if !backoff.Wait(c.Ctx, 0) {
			return // the record stays: the next start's reconcile stops it
		}
	}
	if c.Cluster != nil {
		ctx, cancel := context.WithTimeout(c.Ctx, 10*time.Second)
		if err := c.Cluster.RemoveOf(ctx, c.NodeID, rec.WorkloadID, rec.Revision); err != nil {
			c.Log.Debug("remove a moved record", zap.Error(err))
		}
		cancel()
	}
	c.Log.Info(done, zap.String("workload_id", rec.WorkloadID), zap.String("moved_to", rec.MovedTo))
}

// ownedElsewhere says whether another node holds a record of wid (this node's copy is
// stale: the workload was taken over while this node was away).
func (c *Copies) ownedElsewhere(ctx context.Context, wid string) bool {
	if c.Cluster == nil {
		return false
	}
	owners, err := c.Cluster.Owners(ctx, wid)
	if err != nil {
		return false
	}
	for _, o := range owners {
		if o != c.NodeID {
			return true
		}
	}
	return false
}
