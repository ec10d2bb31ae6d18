package node

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/retry"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/cluster"
)

// NexletFailed hands the workloads of a local nexlet the supervisor gave up on (it died
// too often in a row) to other nodes, with a store the cluster shares: the node still
// announces itself, so the coordinator would never take them over, and they would stay
// listed unknown, running nowhere, for good. Its processes are gone (the supervisor
// killed what the nexlet left). Services, functions and unfinished jobs move (a job at
// least once), each as soon as a node can take it, trying again every few seconds until
// the nexlet registers again or the node stops.
func (n *Node) NexletFailed(nexletID string) {
	n.flags.FailedNexlets.Store(nexletID, struct{}{})
	cs, ok := n.cfg.Store.(ClusterStore)
	if !ok {
		n.log.Warn("nexlet failed: its workloads cannot move to another node without a state the cluster shares (--state kv); they run nowhere until it is started again", zap.String("nexlet_id", nexletID))
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		backoff := retry.Backoff{First: 2 * time.Second, Max: 30 * time.Second}
		for {
			if _, failed := n.flags.FailedNexlets.Load(nexletID); !failed {
				return // it registered again: its reconcile starts them here
			}
			if left := n.handOff(cs, nexletID); left == 0 || !backoff.Wait(n.ctx, 0) {
				return
			}
		}
	}()
}

// handOff moves every running workload of nexlet nexletID to another node and returns
// how many could not be moved yet.
func (n *Node) handOff(cs ClusterStore, nexletID string) (left int) {
	recs := n.idx.Records(func(rec Record) bool { return rec.NexletID == nexletID && rec.Desired == DesiredRunning })
	for _, rec := range recs {
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		if cur, err := cs.RecordOf(ctx, n.cfg.NodeID, rec.WorkloadID); err == nil {
			rec = *cur // the revision the takeover compares with
		}
		to, err := cluster.MoveElsewhere(ctx, n.nc, n.cfg.NodeID, &rec, v1.TakeoverNexletFailed, cluster.GroupAccept(ctx, cs, &rec), nil)
		cancel()
		if err != nil {
			left++
			n.unplaced(rec, "its nexlet "+nexletID+" on node "+n.cfg.NodeID+" failed and no other node can take it yet (trying again): "+err.Error())
			continue
		}
		n.log.Info("moved a workload of a failed nexlet to another node", zap.String("workload_id", rec.WorkloadID), zap.String("nexlet_id", nexletID), zap.String("to_node", to))
	}
	return left
}
