package copies

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nexrun/nex/internal/retry"
	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"go.uber.org/zap"
)

// reconcilePlan is what reconciling one nexlet found to do.
type reconcilePlan struct {
	toStop, toStart, moved []records.Record
	adopted                int
	keep                   []string // every workload the records or the nexlet hold
}

// Reconcile brings a (re-)registered nexlet and the node's desired state together:
// workloads the nexlet runs are adopted (never restarted), desired workloads it lost
// are started again exactly once with their IDs, stops that were in flight are
// finished, and finished workloads stay finished. Everything is indexed before it
// returns (so stop and info work at once); restarts and stops then run in the background.
func (c *Copies) Reconcile(nexletID string) {
	if !c.tryReconcile(nexletID) {
		c.ReconcileLater(nexletID)
	}
}

// tryReconcile plans one reconciliation of nexletID (see reconcile), asks the nexlet to
// prune, and carries the plan out in the background; false when it could not read both
// sides.
func (c *Copies) tryReconcile(nexletID string) bool {
	lock := c.reconcileLock(nexletID)
	lock.Lock()
	log := c.Log.With(zap.String("nexlet_id", nexletID))
	ctx, cancel := context.WithTimeout(c.Ctx, time.Minute)
	plan, err := c.planReconcile(ctx, nexletID, log)
	if err != nil {
		cancel()
		lock.Unlock()
		return false
	}
	c.prune(nexletID, plan.keep, log)
	if len(plan.toStop)+len(plan.toStart)+len(plan.moved) == 0 {
		cancel()
		lock.Unlock()
		return true
	}
	c.WG.Add(1)
	go func() {
		defer c.WG.Done()
		defer lock.Unlock()
		defer cancel()
		c.carryOut(ctx, plan, log)
	}()
	return true
}

// prune asks the nexlet, in the background, to remove what it keeps of workloads that
// neither the records nor the nexlet hold any more (v1.PruneRequest): a workdir left by
// a workload that ended or moved while the nexlet was down, whose record went meanwhile.
func (c *Copies) prune(nexletID string, keep []string, log *zap.Logger) {
	c.WG.Add(1)
	go func() {
		defer c.WG.Done()
		ctx, cancel := context.WithTimeout(c.Ctx, registry.CallTimeout)
		defer cancel()
		var reply v1.PruneReply
		err := svc.Call(ctx, c.Conn, v1.NexletSubject(c.NodeID, nexletID, v1.NexletPrune), v1.PruneRequest{Keep: keep}, &reply)
		switch {
		case err == nil && len(reply.Removed) > 0:
			log.Info("reconcile: the nexlet removed what it kept of workloads no record holds", zap.Int("workloads", len(reply.Removed)))
			c.restartMissed(nexletID, reply.Removed, log)
		case err != nil && !v1.IsCode(err, v1.CodeNotImplemented):
			log.Warn("reconcile: prune", zap.Error(err))
		}
	}()
}

// restartMissed starts again the workloads of pruned (what the nexlet kept of
// workloads the reconciliation's listing of the records did not hold) whose own record,
// read from the stream's leader, says this nexlet runs them: the listing missed them
// (chaos seed 43: a machine killed 2 s after three starts were acknowledged came back,
// its listing of the records lacked the three, the nexlet removed their workdirs, and
// nothing ever started them again, though their records said running there).
func (c *Copies) restartMissed(nexletID string, pruned []string, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(c.Ctx, time.Minute)
	defer cancel()
	var missed []records.Record
	for _, wid := range pruned {
		if _, inFlight := c.Flags.Deploying.Load(wid); c.Entries.Has(wid) || inFlight {
			continue
		}
		rec, err := c.Store.Get(ctx, wid)
		if err != nil || rec.NexletID != nexletID || rec.Desired != records.DesiredRunning {
			continue
		}
		log.Warn("reconcile: the listing of the records missed a workload this nexlet ran; starting it again", zap.String("workload_id", wid))
		c.Host.Index(*rec)
		missed = append(missed, *rec)
	}
	if len(missed) == 0 {
		return
	}
	lock := c.reconcileLock(nexletID)
	lock.Lock()
	defer lock.Unlock()
	c.carryOut(ctx, reconcilePlan{toStart: missed}, log)
}

// ReconcileLater reconciles nexletID again, after 250 ms doubling to 5 s, until a
// reconciliation could read both sides or the node stops: one that failed (the state
// store unavailable while JetStream elected a leader) left the workloads its restarted
// nexlet had lost unstarted and unindexed, "not found", for good (a chaos run).
func (c *Copies) ReconcileLater(nexletID string) {
	if _, busy := c.reconciling.LoadOrStore(nexletID, struct{}{}); busy {
		return
	}
	c.WG.Add(1)
	go func() {
		defer c.WG.Done()
		defer c.reconciling.Delete(nexletID)
		backoff := retry.Backoff{First: 250 * time.Millisecond, Max: 5 * time.Second}
		for backoff.Wait(c.Ctx, 0) {
			if !c.Nexlets.Has(nexletID) {
				return // gone: its next registration reconciles it
			}
			if c.tryReconcile(nexletID) {
				c.Log.Info("reconcile: done after an earlier attempt failed", zap.String("nexlet_id", nexletID))
				return
			}
		}
	}()
}

// reconcileLock is the lock that lets one reconciliation of a nexlet run at a time.
func (c *Copies) reconcileLock(nexletID string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	lock, ok := c.reconciles[nexletID]
	if !ok {
		lock = &sync.Mutex{}
		c.reconciles[nexletID] = lock
	}
	return lock
}

// planReconcile compares what the nexlet runs with the records, indexes what stays, and
// returns the stops and starts left to do.
func (c *Copies) planReconcile(ctx context.Context, nexletID string, log *zap.Logger) (reconcilePlan, error) {
	var plan reconcilePlan
	var running []v1.WorkloadInfo
	listCtx, cancel := context.WithTimeout(ctx, registry.CallTimeout) // not the plan's minute: a lost answer is asked again sooner
	err := svc.Call(listCtx, c.Conn, v1.NexletSubject(c.NodeID, nexletID, v1.NexletList), v1.NexletListRequest{Definitions: true}, &running)
	cancel()
	if err != nil {
		log.Warn("reconcile: list nexlet workloads", zap.Error(err))
		return plan, err
	}
	recs, err := c.Store.List(ctx)
	if err != nil {
		log.Error("reconcile: read desired state", zap.Error(err))
		return plan, err
	}
	has := map[string]v1.WorkloadInfo{}
	for _, w := range running {
		has[w.ID] = w
	}
	known := map[string]bool{}
	for _, rec := range recs {
		if rec.NexletID != nexletID {
			continue
		}
		known[rec.WorkloadID] = true
		w, present := has[rec.WorkloadID]
		switch {
		case rec.Desired == records.DesiredMoved:
			// taken over by another node while this one was away: its copy here stops
			plan.moved = append(plan.moved, *rec)
		case rec.Desired == records.DesiredStopping:
			c.Host.Index(*rec)
			plan.toStop = append(plan.toStop, *rec)
		case present:
			c.Host.Index(*rec)
			if w.Finished() && rec.Desired == records.DesiredRunning {
				final := w
				final.Definition = nil
				c.Host.RecordFinished(ctx, nexletID, rec.WorkloadID, &final)
			}
			plan.adopted++
		case rec.Desired == records.DesiredFinished:
			// it ended for good and its nexlet no longer has it (it restarted): it stays
			// listed from its record, as it ended, until removed
			c.Host.Index(*rec)
		default:
			c.Host.Index(*rec)
			if _, inFlight := c.Flags.Deploying.Load(rec.WorkloadID); inFlight {
				continue // its deploy is starting it right now
			}
			plan.toStart = append(plan.toStart, *rec)
		}
	}
	plan.adopted += c.adoptUnknown(ctx, nexletID, running, known, log)
	if plan.adopted > 0 {
		log.Info("reconcile: adopted running workloads", zap.Int("adopted", plan.adopted))
	}
	for _, rec := range recs { // every record, of any nexlet: an ID is never pruned while recorded
		plan.keep = append(plan.keep, rec.WorkloadID)
	}
	for id := range has {
		plan.keep = append(plan.keep, id)
	}
	return plan, nil
}

// adoptUnknown records and indexes workloads the nexlet runs that the state does not know
// (a node restarted with in-memory state), from the definition the nexlet keeps. With a
// shared store a running workload that no record holds is stopped instead: a start is
// acknowledged only once recorded, so its record was removed, because the workload was
// stopped or moved while this node was away (a chaos run: a stale copy adopted this way
// came back after its user had stopped it elsewhere).
func (c *Copies) adoptUnknown(ctx context.Context, nexletID string, running []v1.WorkloadInfo, known map[string]bool, log *zap.Logger) int {
	adopted := 0
	shared := c.Cluster != nil
	for _, w := range running {
		if known[w.ID] || w.Definition == nil {
			continue
		}
		if _, inFlight := c.Flags.Deploying.Load(w.ID); inFlight {
			continue // its deploy records it right now
		}
		if shared {
			// no record in the store the cluster shares: stopped, moved or removed while
			// this node was away, finished or not (chaos seed 62: a job removed while its
			// nexlet was down was adopted back from the nexlet's report, and listed
			// again); stopUnrecorded reads its record once more, and adopts it when
			// the listing only missed it
			known[w.ID] = true
			c.WG.Add(1)
			go func() {
				defer c.WG.Done()
				c.stopUnrecorded(nexletID, w)
			}()
			continue
		}
		if c.ownedElsewhere(ctx, w.ID) { // taken over while this node was away
			known[w.ID] = true
			c.WG.Add(1)
			go func() {
				defer c.WG.Done()
				c.StopMoved(records.Record{WorkloadID: w.ID, NexletID: nexletID, Definition: *w.Definition}, StaleCopy)
			}()
			continue
		}
		rec := records.Record{WorkloadID: w.ID, NexletID: nexletID, Desired: records.DesiredRunning, Definition: *w.Definition, UpdatedAt: time.Now().UTC(), CreatedAt: w.StartedAt}
		if w.Finished() {
			final := w
			final.Definition = nil
			rec.Desired, rec.Final, rec.FinishedAt = records.DesiredFinished, &final, time.Now().UTC()
		}
		if err := c.Store.Put(ctx, &rec); err != nil {
			log.Warn("reconcile: record adopted workload", zap.String("workload_id", w.ID), zap.Error(err))
		}
		c.Host.Index(rec)
		adopted++
	}
	return adopted
}

// ClaimToStart records one more restart of rec by compare-and-set on the revision read,
// and says whether the workload is still this node's to start: a chaos run read a record
// from a replica that lagged behind its takeover, started the workload again beside the
// node that had taken it over, and the two ran together for minutes.
func (c *Copies) ClaimToStart(ctx context.Context, rec records.Record, log *zap.Logger) (records.Record, bool) {
	updated := rec
	for range 2 {
		updated.Restarts++
		updated.UpdatedAt = time.Now().UTC()
		err := c.Store.Put(ctx, &updated)
		if err == nil {
			c.Entries.Update(updated)
			return updated, true
		}
		if !errors.Is(err, records.ErrConflict) {
			log.Warn("reconcile: record the start of a lost workload (not started; tried again at the next reconciliation)", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
			return rec, false
		}
		cur, gerr := c.Store.Get(ctx, rec.WorkloadID)
		if gerr != nil || cur.Desired != records.DesiredRunning || cur.NexletID != rec.NexletID {
			break
		}
		updated = *cur
	}
	c.Entries.Drop(rec.WorkloadID)
	log.Info("reconcile: a lost workload's record changed meanwhile (moved, stopped or removed): not started here", zap.String("workload_id", rec.WorkloadID))
	return rec, false
}

// carryOut finishes the stops that were in flight and starts the lost workloads again.
func (c *Copies) carryOut(ctx context.Context, plan reconcilePlan, log *zap.Logger) {
	for _, rec := range plan.moved {
		c.StopMoved(rec, StaleCopy)
	}
	for _, rec := range plan.toStop {
		if _, err := c.Host.StopWorkload(ctx, rec, rec.StopRequest()); err != nil {
			log.Warn("reconcile: finish stop", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
		}
	}
	started := 0
	for _, rec := range plan.toStart {
		// lost with its nexlet and started again: one more restart than it had, recorded
		// first by compare-and-set, so a record that moved or went meanwhile (a read
		// that lagged behind a takeover) starts nothing
		claimed, ok := c.ClaimToStart(ctx, rec, log)
		if !ok {
			continue
		}
		if _, err := c.Host.StartOnNexlet(ctx, claimed, claimed.Restarts); err != nil && !v1.IsCode(err, v1.CodeConflict) {
			log.Error("reconcile: start lost workload again", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
			continue
		}
		started++
	}
	log.Info("reconcile: done", zap.Int("stops_finished", len(plan.toStop)), zap.Int("started_again", started))
}

// stopUnrecorded stops a running workload of nexletID that the reconciliation's listing of
// the records did not hold, once a read of its own record from the stream's leader
// confirms there is none: a listing can miss the newest records (a chaos run: two
// services started and acknowledged a few seconds before their node's nexd was killed
// and started again were stopped as unrecorded). A record found is adopted (running) or
// acted on (moved, stopping); a store that cannot say leaves the workload running and
// the reconciliation is tried again.
func (c *Copies) stopUnrecorded(nexletID string, w v1.WorkloadInfo) {
	unknown := records.Record{WorkloadID: w.ID, NexletID: nexletID, Definition: *w.Definition}
	ctx, cancel := context.WithTimeout(c.Ctx, records.RetryBudget)
	var rec *records.Record
	err := records.Retry(ctx, func(actx context.Context) (err error) {
		rec, err = c.Store.Get(actx, w.ID)
		return err
	})
	cancel()
	switch {
	case errors.Is(err, records.ErrNotStored):
		c.StopMoved(unknown, Unrecorded)
	case err != nil:
		c.Log.Warn("reconcile: a workload the records' listing did not hold, whose record cannot be read now: it runs on until the next try", zap.String("workload_id", w.ID), zap.Error(err))
		c.ReconcileLater(nexletID)
	case rec.Desired == records.DesiredRunning || rec.Desired == records.DesiredFinished:
		rec.NexletID = nexletID
		c.Host.Index(*rec)
		c.Log.Info("reconcile: adopted a workload whose record the listing missed", zap.String("workload_id", w.ID))
	case rec.Desired == records.DesiredStopping: // a stop in flight when the node went: finished now
		rec.NexletID = nexletID
		c.Host.Index(*rec)
		ctx, cancel := context.WithTimeout(c.Ctx, StopBound(*rec, rec.StopRequest()))
		defer cancel()
		if _, err := c.Host.StopWorkload(ctx, *rec, rec.StopRequest()); err != nil {
			c.Log.Warn("reconcile: finish stop", zap.String("workload_id", w.ID), zap.Error(err))
		}
	default: // moved
		c.StopMoved(*rec, StaleCopy)
	}
}
