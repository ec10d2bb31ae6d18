package moves

import (
	"context"
	"encoding/json"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/cluster"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/seal"
	"go.uber.org/zap"
)

// Drain moves the node's running workloads that pick selects to other nodes, one at a
// time: each starts on the node that wins its auction (which takes its record over), and
// only then does the copy here stop, so a service keeps running throughout. What no node
// can take stays until the deadline, with an unplaced event saying why. Only with a
// store the cluster shares.
func (m *Moves) Drain(until time.Time, pick func(records.Record) bool) {
	cs := m.Cluster
	if cs == nil {
		return
	}
	recs := m.Entries.Records(func(rec records.Record) bool { return rec.Desired == records.DesiredRunning && pick(rec) })
	moved := 0
	for _, rec := range recs {
		ctx, cancel := context.WithDeadline(m.Ctx, until)
		if m.moveAway(ctx, cs, rec) {
			moved++
		}
		cancel()
	}
	if len(recs) > 0 {
		m.Log.Info("lameduck: moved workloads to other nodes", zap.Int("moved", moved), zap.Int("of", len(recs)))
	}
}

// moveAway moves one workload of this node to another (see drain) and says whether it did.
func (m *Moves) moveAway(ctx context.Context, cs records.ClusterStore, rec records.Record) bool {
	wid := rec.WorkloadID
	m.Flags.Draining.Store(wid, struct{}{})
	defer m.Flags.Draining.Delete(wid)
	if cur, err := cs.RecordOf(ctx, m.NodeID, wid); err == nil {
		rec = *cur // the revision the takeover compares with
	}
	var reseal func(context.Context, v1.Bid) (json.RawMessage, error)
	if seal.Contains(rec.Definition.StartRequest) {
		reseal = func(ctx context.Context, b v1.Bid) (json.RawMessage, error) {
			var out json.RawMessage
			err := m.Host.Ask(ctx, rec.NexletID, v1.NexletReseal, "", v1.ResealRequest{StartRequest: rec.Definition.StartRequest, Recipient: b.XKey, Namespace: rec.Definition.Namespace}, &out)
			return out, err
		}
	}
	to, err := cluster.MoveElsewhere(ctx, m.Conn, m.NodeID, &rec, v1.TakeoverDrain, cluster.GroupAccept(ctx, cs, &rec), reseal)
	if err != nil {
		rctx, cancel := context.WithTimeout(m.Ctx, records.AttemptTimeout)
		cur, rerr := cs.RecordOf(rctx, m.NodeID, wid)
		cancel()
		if rerr == nil && cur.Desired == records.DesiredMoved && cur.MovedTo != m.NodeID {
			// a takeover that failed after its mark: the node it names may start the
			// workload yet (it settles a record write whose answer was lost), or the
			// mark is put back; this copy stops once the move is done, not at the deadline
			m.WG.Add(1)
			go func() {
				defer m.WG.Done()
				m.Copies.StopMoved(*cur, "lameduck: stopped the copy here of a workload that now runs on another node")
			}()
			m.Log.Warn("lameduck: the move of a workload to another node did not answer; this copy stops once it runs there", zap.String("workload_id", wid), zap.Error(err))
			return false
		}
		m.Log.Warn("lameduck: cannot move a workload to another node; it stops at the deadline", zap.String("workload_id", wid), zap.Error(err))
		m.Host.Unplaced(rec, "node "+m.NodeID+" is draining and no other node can take it; it stops at the drain's deadline: "+err.Error())
		return false
	}
	if cur, err := cs.RecordOf(ctx, m.NodeID, wid); err == nil {
		rec = *cur
	}
	m.Copies.StopMoved(rec, "lameduck: stopped the copy here of a workload that now runs on another node")
	m.Log.Info("lameduck: moved a workload", zap.String("workload_id", wid), zap.String("to_node", to))
	return true
}
