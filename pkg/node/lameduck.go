package node

import (
	"context"
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
	if !n.auction.SetLameduck() { // no more bids from here on
		d := n.deadline
		n.mu.Unlock()
		return d
	}
	n.deadline = time.Now().Add(delay).UTC()
	deadline := n.deadline
	n.mu.Unlock()
	var nexlets []string
	for _, e := range n.nexlets.All(time.Now()) {
		nexlets = append(nexlets, e.Reg.NexletID)
	}
	n.log.Info("lameduck: no new workloads; moving services and functions to other nodes, stopping the rest at the deadline", zap.Time("deadline", deadline))
	ev := v1.Event{Type: v1.EventLameduck, Namespace: v1.SystemNamespace, NodeID: n.cfg.NodeID, Time: time.Now().UTC(), Data: map[string]any{"deadline": deadline}}
	n.events.Node(ev)
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
		n.work.StopAll()
		close(n.drained)
	}()
	return deadline
}
