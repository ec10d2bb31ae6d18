package workloads

import (
	"context"
	"errors"
	"time"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/copies"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"go.uber.org/zap"
)

// Moving says whether a workload is being started here by a takeover (or a deploy): its
// record written or about to be, its nexlet starting it. A user's stop then answers 503:
// it found nothing to stop on the nexlet, removed the record and the moved marks,
// answered "stopped", and the start ran the workload with no record after all (or the
// takeover, its write refused, gave it back to be placed again: a review's walk). The
// 503 is Busy: the client asks again until the move is done.
func (wl *Workloads) Moving(rec records.Record) error {
	if _, deploying := wl.Flags.Deploying.Load(rec.WorkloadID); deploying {
		return svc.AskAgain(v1.Errorf(v1.CodeUnavailable, "workload %s is being started on node %s (it is moving here): nothing was done; try again in a moment", rec.WorkloadID, wl.NodeID))
	}
	return nil
}

// StopWorkload records the intent (desired stopping) before anything is stopped, so no
// recovery can start the workload again and a crash mid-stop is finished on recovery;
// when it cannot be recorded, nothing is stopped. Then it stops the workload on its
// nexlet, within ctx, and forgets it.
func (wl *Workloads) StopWorkload(ctx context.Context, rec records.Record, req v1.StopRequest) (v1.WorkloadInfo, error) {
	wl.Flags.OwnStops.Store(rec.WorkloadID, struct{}{}) // its stopping record is this node's doing (stopMarked)
	defer wl.Flags.OwnStops.Delete(rec.WorkloadID)
	if rec.Desired != records.DesiredStopping {
		updated, err := wl.SetDesired(ctx, rec.WorkloadID, records.DesiredStopping)
		rec.TakenOver = rec.TakenOver || updated.TakenOver // as stored: its marks go first
		rec.StopGrace = max(rec.StopGrace, updated.StopGrace)
		if v1.IsNotFound(err) {
			// it left this node (a drain or a takeover moved it) since the stop found it
			// here: "not found" would be false (a chaos run: a stop during a drain)
			return v1.WorkloadInfo{}, v1.Errorf(v1.CodeUnavailable, "workload %s left node %s (it moved) while it was being stopped: nothing was done; try again", rec.WorkloadID, wl.NodeID)
		} else if err != nil {
			return v1.WorkloadInfo{}, records.StorageError(err, "record the stop of workload "+rec.WorkloadID+" (nothing was stopped)")
		}
	}
	req = rec.Stop(req)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var info v1.WorkloadInfo
	err := wl.Ask(cctx, rec.NexletID, v1.NexletStop, rec.WorkloadID, req, &info)
	// a workload that ended runs nothing: when its nexlet is gone, removing it removes
	// the record (its workdir stays until the nexlet can be asked)
	ended := rec.Desired == records.DesiredFinished && v1.IsCode(err, v1.CodeUnavailable)
	if !ended && (v1.IsCode(err, v1.CodeUnavailable) || errors.Is(err, svc.ErrNoResponders)) {
		// the stop is recorded: the nexlet, restarting or cut off, is told when it is
		// back, and nothing brings the workload back meanwhile. Saying "failed" was
		// wrong: it took effect later all the same.
		d := rec.Definition
		return v1.WorkloadInfo{ID: rec.WorkloadID, Namespace: d.Namespace, Name: d.Name, Type: d.Type, Lifecycle: d.Lifecycle, NodeID: wl.NodeID,
			NexletID: rec.NexletID, State: v1.StateStopping, Metadata: map[string]string{"note": "nexlet " + rec.NexletID + " did not answer: the stop is recorded, and done as soon as it is back"}}, nil
	}
	if err != nil && !v1.IsNotFound(err) && !ended {
		return v1.WorkloadInfo{}, err
	}
	d := rec.Definition
	if err != nil { // the nexlet no longer has it: it is gone either way
		info = v1.WorkloadInfo{ID: rec.WorkloadID, Namespace: d.Namespace, Name: d.Name, Type: d.Type, Lifecycle: d.Lifecycle, NodeID: wl.NodeID, NexletID: rec.NexletID}
		if ended {
			info.Metadata = map[string]string{"note": "nexlet " + rec.NexletID + " did not answer: the record is removed, its workdir is not"}
		}
	}
	info.State = v1.StateStopped
	info.Definition = nil
	wl.forget(rec, info)
	wl.Counters.Stops.Add(1)
	return info, nil
}

// SetDesired updates the desired state of an indexed workload's record.
func (wl *Workloads) SetDesired(ctx context.Context, wid, desired string) (records.Record, error) {
	return wl.UpdateRecord(ctx, wid, func(r *records.Record) { r.Desired = desired })
}

// UpdateRecord changes an indexed workload's record with change, by compare-and-set:
// on a conflict it re-reads the stored record and applies change to it once more. It
// indexes the new value. Records are values: what others hold stays as they read it.
func (wl *Workloads) UpdateRecord(ctx context.Context, wid string, change func(*records.Record)) (records.Record, error) {
	w, ok := wl.Entries.Get(wid)
	if !ok {
		return records.Record{}, v1.NotFound("workload %s is not indexed on node %s", wid, wl.NodeID)
	}
	updated := w.Rec
	change(&updated)
	updated.UpdatedAt = time.Now().UTC()
	err := wl.Store.Put(ctx, &updated)
	if errors.Is(err, records.ErrConflict) { // written by another since it was read: read it again
		r, gerr := wl.Store.Get(ctx, wid)
		switch {
		case errors.Is(gerr, records.ErrNotStored):
			if wl.Cluster != nil {
				// removed by another node (it moved, and its moved mark is gone): nothing
				// holds it any more, and a copy left here would run twice (a chaos run:
				// a node updated such a record every 2 s for minutes, its copy running)
				wl.Host.LeaveMoved(w.Rec, copies.Unrecorded)
				return records.Record{}, v1.Errorf(v1.CodeUnavailable, "workload %s is no longer recorded on node %s (another node took it over, or it was stopped elsewhere): its copy here is stopped; try again", wid, wl.NodeID)
			}
			return records.Record{}, err
		case gerr != nil:
			return records.Record{}, gerr
		case r.Desired == records.DesiredMoved:
			wl.Host.LeaveMoved(*r, copies.StaleCopy)
			e := v1.Errorf(v1.CodeConflict, "workload %s was taken over by node %s", wid, r.MovedTo)
			e.Details = map[string]string{"moved_to": r.MovedTo}
			return records.Record{}, e
		}
		updated = *r
		change(&updated)
		updated.UpdatedAt = time.Now().UTC()
		err = wl.Store.Put(ctx, &updated)
	}
	if err != nil {
		return records.Record{}, err
	}
	wl.Reindex(updated)
	return updated, nil
}

func (wl *Workloads) forget(rec records.Record, info v1.WorkloadInfo) {
	wid := rec.WorkloadID
	if err := wl.Host.DropMarks(rec); err != nil {
		// its stopping record stays, so a node whose mark names this one finds the record
		// and stops its copy; both go once the store answers
		wl.Log.Warn("remove the moved marks of a stopped workload; trying again", zap.String("workload_id", wid), zap.Error(err))
		wl.Host.DropMarksLater(rec)
	} else if err := wl.Store.Delete(context.Background(), wid); err != nil {
		wl.Log.Warn("delete workload state", zap.String("workload_id", wid), zap.Error(err))
	}
	wl.Unclaim(rec)
	wl.Entries.Bury(wid, info)
}

// RecordFinished records that a workload ended for good, with what its nexlet says of it
// (state, exit code, error), so it stays listed as it ended after the nexlet forgets it.
func (wl *Workloads) RecordFinished(ctx context.Context, nexletID, wid string, told *v1.WorkloadInfo) {
	var final v1.WorkloadInfo
	var err error
	if told != nil { // the heartbeat said how it ended
		final = *told
	} else {
		cctx, cancel := context.WithTimeout(ctx, registry.CallTimeout)
		err = wl.Ask(cctx, nexletID, v1.NexletGet, wid, nil, &final)
		cancel()
	}
	_, uerr := wl.UpdateRecord(ctx, wid, func(r *records.Record) {
		r.Desired, r.FinishedAt = records.DesiredFinished, time.Now().UTC()
		if err == nil {
			final.Definition = nil
			r.Final = &final
		}
	})
	if uerr != nil {
		wl.Log.Warn("record finished workload", zap.String("workload_id", wid), zap.Error(uerr))
	}
}
