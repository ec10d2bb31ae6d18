package moves

import (
	"context"
	"encoding/json"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"github.com/nexrun/nex/pkg/seal"
	"go.uber.org/zap"
)

// fromEscrow seals the escrowed start request's values (sealed for the cluster's secrets
// key) for nexlet nexletID, each value sealed for namespace ns.
func (m *Moves) fromEscrow(escrow []byte, nexletID, ns string) ([]byte, error) {
	if m.Secrets == nil {
		return nil, v1.Errorf(v1.CodeUnavailable, "node %s has no --secrets-key: it cannot open the workload's environment", m.NodeID)
	}
	e, ok := m.Nexlets.Get(nexletID, time.Now())
	if !ok {
		return nil, v1.Errorf(v1.CodeUnavailable, "nexlet %s is no longer registered", nexletID)
	}
	out, err := seal.Reseal(escrow, m.Secrets.Key(), e.Reg.XKey, ns)
	if err != nil {
		return nil, v1.Errorf(v1.CodeInternal, "open the workload's escrowed environment (is --secrets-key the same on every node?): %v", err)
	}
	return out, nil
}

// Escrow keeps, in rec's record, its start request with the sealed values sealed for the
// cluster's secrets key, so another node can open them when this one is lost. Only the
// nexlet can open them; it seals them anew (as for a clone).
func (m *Moves) Escrow(ctx context.Context, rec records.Record) {
	if m.Secrets == nil || !seal.Contains(rec.Definition.StartRequest) {
		return
	}
	recipient, err := m.Secrets.Key().PublicKey()
	if err != nil {
		return
	}
	var out json.RawMessage
	cctx, cancel := context.WithTimeout(ctx, registry.CallTimeout)
	defer cancel()
	if err := m.Host.Ask(cctx, rec.NexletID, v1.NexletReseal, "", v1.ResealRequest{StartRequest: rec.Definition.StartRequest, Recipient: recipient, Namespace: rec.Definition.Namespace}, &out); err != nil {
		m.Log.Warn("escrow the workload's sealed environment: it cannot move if this node is lost", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
		return
	}
	if _, err := m.Host.UpdateRecord(ctx, rec.WorkloadID, func(r *records.Record) { r.Escrow = out }); err != nil {
		m.Log.Warn("record the workload's escrowed environment", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
	}
}
