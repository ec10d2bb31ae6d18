package node

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/copies"
)

// Drained is closed once lameduck has stopped every workload; the daemon then exits.
func (n *Node) Drained() <-chan struct{} { return n.drained }

func (n *Node) handleLameduck(_ context.Context, r *svc.Request, req *v1.LameduckRequest) (v1.LameduckReply, error) {
	id := r.ID
	if id != n.cfg.NodeID {
		return v1.LameduckReply{}, v1.NotFound("node %s not found", id)
	}
	if err := v1.Authorize(v1.VerbLameduck, r.Namespace); err != nil {
		return v1.LameduckReply{}, err // a tenant's own subject does not make it an operator
	}
	if req.Delay < 0 {
		return v1.LameduckReply{}, v1.BadRequest("delay %s is negative", time.Duration(req.Delay))
	}
	return v1.LameduckReply{NodeID: n.cfg.NodeID, Deadline: n.Lameduck(time.Duration(req.Delay))}, nil
}

// Lameduck stops bidding at once, tells the nexlets, and after delay stops every
// workload the way stop does, then closes Drained. Asking again keeps the first deadline.
func (n *Node) Lameduck(delay time.Duration) time.Time {
	n.mu.Lock()
	if n.state == v1.NodeLameduck {
		d := n.deadline
		n.mu.Unlock()
		return d
	}
	n.state = v1.NodeLameduck
	n.deadline = time.Now().Add(delay).UTC()
	deadline := n.deadline
	var nexlets []string
	for _, e := range n.nexlets.All(time.Now()) {
		nexlets = append(nexlets, e.Reg.NexletID)
	}
	n.mu.Unlock()
	n.log.Info("lameduck: no new workloads; moving services and functions to other nodes, stopping the rest at the deadline", zap.Time("deadline", deadline))
	ev := v1.Event{Type: v1.EventLameduck, Namespace: v1.SystemNamespace, NodeID: n.cfg.NodeID, Time: time.Now().UTC(), Data: map[string]any{"deadline": deadline}}
	n.publishNodeEvent(ev)
	for _, id := range nexlets {
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		if err := n.work.Ask(ctx, id, v1.NexletLameduck, "", nil, nil); err != nil {
			n.log.Warn("lameduck nexlet", zap.String("nexlet_id", id), zap.Error(err))
		}
		cancel()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.moves.Drain(deadline, func(r Record) bool { return r.Definition.Lifecycle != v1.LifecycleJob })
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		// jobs that have not finished start again elsewhere (at least once)
		n.moves.Drain(time.Now().Add(30*time.Second), func(Record) bool { return true })
		n.stopAll()
		close(n.drained)
	}()
	return deadline
}

// unplaced publishes an unplaced event for rec.
func (n *Node) unplaced(rec Record, why string) {
	n.publishEvent(v1.Event{Type: v1.EventUnplaced, WorkloadID: rec.WorkloadID, Namespace: rec.Definition.Namespace, NodeID: n.cfg.NodeID,
		Time: time.Now().UTC(), Message: why})
}

// stopAll stops every workload of the node in parallel, gracefully. With a store the
// cluster shares, a workload that should run (one no other node could take before the
// deadline) keeps its record: the node leaves, and the coordinator starts it elsewhere
// once a node can take it (the node is lost once it has exited), or the node starts it
// again when it is back. Stopping it the way workload stop does removed it for good: a
// drain lost what its user had started (a chaos run: a drain whose moves failed while
// JetStream had no quorum).
func (n *Node) stopAll() {
	_, shared := n.cfg.Store.(ClusterStore)
	recs := n.idx.Records(nil)
	var wg sync.WaitGroup
	kept := 0
	for _, rec := range recs {
		keep := shared && rec.Desired == DesiredRunning
		if keep {
			kept++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if keep {
				n.haltKeepingRecord(rec)
				return
			}
			if _, err := n.work.StopWorkload(n.ctx, rec, v1.StopRequest{}); err != nil {
				n.log.Warn("lameduck stop", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
			}
		}()
	}
	wg.Wait()
	n.log.Info("lameduck: every workload stopped", zap.Int("workloads", len(recs)), zap.Int("recorded_to_run_elsewhere", kept))
}

// haltKeepingRecord stops a workload's processes and leaves its record as it is (to
// run): it is unindexed first, so its end is not recorded as the workload finishing.
func (n *Node) haltKeepingRecord(rec Record) {
	n.work.Unindex(rec.WorkloadID)
	ctx, cancel := context.WithTimeout(n.ctx, copies.StopBound(rec, v1.StopRequest{}))
	defer cancel()
	if err := n.work.Ask(ctx, rec.NexletID, v1.NexletStop, rec.WorkloadID, v1.StopRequest{}, nil); err != nil && !v1.IsNotFound(err) {
		n.log.Warn("lameduck stop", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
	}
}
