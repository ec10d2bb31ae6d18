package moves

import (
	"context"
	"time"

	"github.com/nexrun/nex/internal/retry"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/cluster"
	"github.com/nexrun/nex/pkg/node/records"
	"go.uber.org/zap"
)

// NexletFailed hands the workloads of a local nexlet the supervisor gave up on (it died
// too often in a row) to other nodes, with a store the cluster shares: the node still
// announces itself, so the coordinator would never take them over, and they would stay
// listed unknown, running nowhere, for good. Its processes are gone (the supervisor
// killed what the nexlet left). Services, functions and unfinished jobs move (a job at
// least once), each as soon as a node can take it, trying again every few seconds until
// the nexlet registers again or the node stops.
func (m *Moves) NexletFailed(nexletID string) {
	m.Flags.FailedNexlets.Store(nexletID, struct{}{})
	cs := m.Cluster
	if cs == nil {
		m.Log.Warn("nexlet failed: its workloads cannot move to another node without a state the cluster shares (--state kv); they run nowhere until it is started again", zap.String("nexlet_id", nexletID))
		return
	}
	m.WG.Add(1)
	go func() {
		defer m.WG.Done()
		backoff := retry.Backoff{First: 2 * time.Second, Max: 30 * time.Second}
		for {
			if _, failed := m.Flags.FailedNexlets.Load(nexletID); !failed {
				return // it registered again: its reconcile starts them here
			}
			if left := m.handOff(cs, nexletID); left == 0 || !backoff.Wait(m.Ctx, 0) {
				return
			}
		}
	}()
}

// handOff moves every running workload of nexlet nexletID to another node and returns
// how many could not be moved yet.
func (m *Moves) handOff(cs records.ClusterStore, nexletID string) (left int) {
	recs := m.Entries.Records(func(rec records.Record) bool {
		return rec.NexletID == nexletID && rec.Desired == records.DesiredRunning
	})
	for _, rec := range recs {
		ctx, cancel := context.WithTimeout(m.Ctx, 30*time.Second)
		if cur, err := cs.RecordOf(ctx, m.NodeID, rec.WorkloadID); err == nil {
			rec = *cur // the revision the takeover compares with
		}
		to, err := cluster.MoveElsewhere(ctx, m.Conn, m.NodeID, &rec, v1.TakeoverNexletFailed, cluster.GroupAccept(ctx, cs, &rec), nil)
		cancel()
		if err != nil {
			left++
			m.Host.Unplaced(rec, "its nexlet "+nexletID+" on node "+m.NodeID+" failed and no other node can take it yet (trying again): "+err.Error())
			continue
		}
		m.Log.Info("moved a workload of a failed nexlet to another node", zap.String("workload_id", rec.WorkloadID), zap.String("nexlet_id", nexletID), zap.String("to_node", to))
	}
	return left
}
