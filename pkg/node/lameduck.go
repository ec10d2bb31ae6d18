package node

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Drained is closed once lameduck has stopped every workload; the daemon then exits.
func (n *Node) Drained() <-chan struct{} { return n.drained }

func (n *Node) handleLameduck(_ context.Context, r *svc.Request, req *v1.LameduckRequest) (v1.LameduckReply, error) {
	id := r.ID
	if id != n.cfg.NodeID {
		return v1.LameduckReply{}, v1.NotFound("node %s not found", id)
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
	for id := range n.nexlets {
		nexlets = append(nexlets, id)
	}
	n.mu.Unlock()
	n.log.Info("lameduck: no new workloads; stopping the rest at the deadline", zap.Time("deadline", deadline))
	ev := v1.Event{Type: v1.EventLameduck, Namespace: v1.SystemNamespace, NodeID: n.cfg.NodeID, Time: time.Now().UTC(), Data: map[string]any{"deadline": deadline}}
	n.publishNodeEvent(ev)
	for _, id := range nexlets {
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		if err := n.askNexlet(ctx, id, v1.NexletLameduck, "", nil, nil); err != nil {
			n.log.Warn("lameduck nexlet", zap.String("nexlet_id", id), zap.Error(err))
		}
		cancel()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		n.stopAll()
		close(n.drained)
	}()
	return deadline
}

// stopAll stops every workload of the node in parallel, gracefully.
func (n *Node) stopAll() {
	n.mu.Lock()
	recs := make([]Record, 0, len(n.workloads))
	for _, w := range n.workloads {
		recs = append(recs, w.rec)
	}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, rec := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.stopWorkload(n.ctx, rec, v1.StopRequest{}); err != nil {
				n.log.Warn("lameduck stop", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
			}
		}()
	}
	wg.Wait()
	n.log.Info("lameduck: every workload stopped", zap.Int("workloads", len(recs)))
}
