package copies

import (
	"context"
	"errors"
	"time"

	"github.com/nexrun/nex/internal/retry"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"go.uber.org/zap"
)

// Watch stops, as soon as it learns of it, the copy this node runs of a workload
// another node took over while this one was cut off or down. A watch started before is
// ended: the watch is started again whenever the node may have missed changes (Rewatch).
func (c *Copies) Watch() error {
	ctx, cancel := context.WithCancel(c.Ctx)
	if err := c.watchOwn(ctx); err != nil {
		cancel()
		return err
	}
	c.watchMu.Lock()
	old := c.watchCancel
	c.watchCancel = cancel
	c.watchMu.Unlock()
	if old != nil {
		old()
	}
	return nil
}

// Rewatch starts the watch of this node's records again, asking again while the store
// does not answer (250 ms doubling, five tries in 4 s). The watch is a JetStream ordered
// consumer: cut off from its stream long enough, nats.go may fail to create it again and
// end it without a word, and nothing more would reach this node of what other nodes do
// to its records.
func (c *Copies) Rewatch() {
	p := retry.Policy{Backoff: retry.Backoff{First: 250 * time.Millisecond, Max: 5 * time.Second}, Budget: 4 * time.Second}
	err := retry.Do(c.Ctx, p, func(context.Context) error { return c.Watch() })
	if err != nil && c.Ctx.Err() == nil {
		c.Log.Warn("watch this node's records again: a workload taken over while this node was away is stopped at its next reconciliation", zap.Error(err))
	}
}

func (c *Copies) watchOwn(ctx context.Context) error {
	return c.Cluster.WatchOwn(ctx, func(wid string, rec *records.Record) {
		if rec == nil {
			c.recordRemoved(wid)
			return
		}
		if rec.Desired == records.DesiredStopping {
			c.stopMarked(*rec)
			return
		}
		if rec.Desired != records.DesiredMoved || rec.MovedTo == c.NodeID {
			return
		}
		if _, draining := c.Flags.Draining.Load(wid); draining {
			return // the drain stops it once the new copy runs
		}
		c.WG.Add(1)
		go func() {
			defer c.WG.Done()
			c.StopMoved(*rec, StaleCopy)
		}()
	})
}

// recordRemoved stops this node's running copy of a workload whose record another node
// removed: the coordinator removes the record of a copy whose node was lost while a
// replica group stop had marked it stopping (a chaos run: the node came back, nothing
// told it, and the copy ran on after the group's stop was acknowledged). The removal is
// checked against the store (a leader read), so an event of a record written again since
// stops nothing.
func (c *Copies) recordRemoved(wid string) {
	if _, own := c.Flags.OwnStops.Load(wid); own {
		return
	}
	if _, draining := c.Flags.Draining.Load(wid); draining {
		return
	}
	if w, ok := c.Entries.Get(wid); !ok || w.Rec.Desired != records.DesiredRunning {
		return // not here, or this node is stopping it
	}
	c.WG.Add(1)
	go func() {
		defer c.WG.Done()
		ctx, cancel := context.WithTimeout(c.Ctx, registry.CallTimeout)
		defer cancel()
		if _, err := c.Store.Get(ctx, wid); !errors.Is(err, records.ErrNotStored) {
			return // stored again (or unreadable now: the next write finds out, see updateRecord)
		}
		if w, ok := c.Entries.Get(wid); ok && w.Rec.Desired == records.DesiredRunning {
			c.LeaveMoved(w.Rec, Unrecorded)
		}
	}()
}

// stopMarked stops a workload this node runs whose record another node marked stopping
// while this node did not answer (the coordinator, stopping a replica group; a user's stop,
// svc.OwnerDown), with the grace the stop gave.
func (c *Copies) stopMarked(rec records.Record) {
	if _, own := c.Flags.OwnStops.Load(rec.WorkloadID); own {
		return // this node's own stop wrote it
	}
	w, ok := c.Entries.Get(rec.WorkloadID)
	if !ok || (w.Rec.Desired != records.DesiredRunning && w.Rec.Desired != records.DesiredStopping) {
		// not here, or not running (stopping in the index: another update of its record
		// read the mark first and indexed it, and stopped nothing)
		return
	}
	c.WG.Add(1)
	go func() {
		defer c.WG.Done()
		ctx, cancel := context.WithTimeout(c.Ctx, StopBound(rec, rec.StopRequest()))
		defer cancel()
		rec.NexletID = w.Rec.NexletID
		c.Entries.Update(rec)
		if _, err := c.Host.StopWorkload(ctx, rec, rec.StopRequest()); err != nil {
			c.Log.Warn("stop a workload whose record says stop", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
			return
		}
		c.Log.Info("stopped a workload whose record another node marked stopping (its replica group was stopped while this node was away)", zap.String("workload_id", rec.WorkloadID))
	}()
}
