package workloads

// The end of workloads the node itself decides on: those past their retention, and every
// one when the node leaves.

import (
	"context"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/copies"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"go.uber.org/zap"
)

// RetentionSweep is how often records of finished workloads are checked against
// FinishedRetention.
const RetentionSweep = 30 * time.Second

// ExpireFinished removes, as `workload rm` does, the workloads that ended for good longer
// than FinishedRetention ago: their nexlet forgets them (and their workdir), then their record goes.
func (wl *Workloads) ExpireFinished(retention time.Duration) {
	if retention <= 0 || !wl.expiring.CompareAndSwap(false, true) {
		return
	}
	cutoff := time.Now().Add(-retention)
	old := wl.Entries.Records(func(rec records.Record) bool {
		return rec.Desired == records.DesiredFinished && !rec.FinishedAt.IsZero() && rec.FinishedAt.Before(cutoff)
	})
	if len(old) == 0 {
		wl.expiring.Store(false)
		return
	}
	wl.WG.Add(1)
	go func() {
		defer wl.WG.Done()
		defer wl.expiring.Store(false)
		for _, rec := range old {
			ctx, cancel := context.WithTimeout(wl.Ctx, registry.CallTimeout+copies.DefaultGrace)
			if _, err := wl.StopWorkload(ctx, rec, v1.StopRequest{}); err != nil {
				wl.Log.Warn("remove a finished workload past its retention", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
			}
			cancel()
		}
		wl.Log.Info("removed finished workloads past their retention", zap.Int("workloads", len(old)), zap.Duration("retention", retention))
	}()
}

// StopAll stops every workload of the node in parallel, gracefully. With a store the
// cluster shares, a workload that should run (one no other node could take before the
// deadline) keeps its record: the node leaves, and the coordinator starts it elsewhere
// once a node can take it (the node is lost once it has exited), or the node starts it
// again when it is back. Stopping it the way workload stop does removed it for good: a
// drain lost what its user had started (a chaos run: a drain whose moves failed while
// JetStream had no quorum).
func (wl *Workloads) StopAll() {
	shared := wl.Cluster != nil
	recs := wl.Entries.Records(nil)
	var wg sync.WaitGroup
	kept := 0
	for _, rec := range recs {
		keep := shared && rec.Desired == records.DesiredRunning
		if keep {
			kept++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if keep {
				wl.haltKeepingRecord(rec)
				return
			}
			if _, err := wl.StopWorkload(wl.Ctx, rec, v1.StopRequest{}); err != nil {
				wl.Log.Warn("lameduck stop", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
			}
		}()
	}
	wg.Wait()
	wl.Log.Info("lameduck: every workload stopped", zap.Int("workloads", len(recs)), zap.Int("recorded_to_run_elsewhere", kept))
}

// haltKeepingRecord stops a workload's processes and leaves its record as it is (to
// run): it is unindexed first, so its end is not recorded as the workload finishing.
func (wl *Workloads) haltKeepingRecord(rec records.Record) {
	wl.Unindex(rec.WorkloadID)
	ctx, cancel := context.WithTimeout(wl.Ctx, copies.StopBound(rec, v1.StopRequest{}))
	defer cancel()
	if err := wl.Ask(ctx, rec.NexletID, v1.NexletStop, rec.WorkloadID, v1.StopRequest{}, nil); err != nil && !v1.IsNotFound(err) {
		wl.Log.Warn("lameduck stop", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
	}
}
