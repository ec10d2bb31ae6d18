package workloads

// A workload's NATS credentials: minted and sealed for its nexlet at its start, and
// renewed while it should run.

import (
	"context"
	"time"

	"github.com/nexrun/nex/internal/retry"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
	"go.uber.org/zap"
)

// renewPolicy is how a workload's renewed credentials are handed to its nexlet: asked
// again while the nexlet is between connections (it reconnects with its own renewed
// credentials, and nexd renews those on a ticker of the same period, so the two met at
// every renewal: a function's connection ran out of credentials 3 s into a test), and
// once more after an answer lost (handing the same credentials twice does no harm).
var renewPolicy = retry.Policy{Backoff: retry.Backoff{First: 100 * time.Millisecond, Max: time.Second}, Attempt: 2 * time.Second, Budget: 5 * time.Second,
	Transient: func(err error) bool { return v1.IsCode(err, v1.CodeTimeout) || v1.IsCode(err, v1.CodeUnavailable) }}

// RenewCreds re-mints the credentials of every workload that should be running and hands
// them to its nexlet. Stopped workloads have no record, so theirs run out. A nexlet that
// is lost, or that did not take one workload's within renewPolicy's budget, is not asked
// again for its others this round: a round is bounded by its nexlets, not its workloads.
func (wl *Workloads) RenewCreds() {
	recs := wl.Entries.Records(func(rec records.Record) bool { return rec.Desired == records.DesiredRunning })
	skip := map[string]bool{}
	for _, e := range wl.Nexlets.All(time.Now()) {
		skip[e.Reg.NexletID] = e.Health == v1.HealthLost
	}
	for _, rec := range recs {
		if skip[rec.NexletID] {
			continue
		}
		req := v1.StartWorkloadRequest{WorkloadID: rec.WorkloadID, Definition: rec.Definition}
		if err := wl.SealCreds(&req, rec.NexletID); err != nil || req.SealedCreds == nil {
			continue
		}
		update := v1.CredsUpdate{SealedCreds: req.SealedCreds, SenderXKey: req.SenderXKey}
		err := retry.Do(wl.Ctx, renewPolicy, func(ctx context.Context) error {
			return wl.Ask(ctx, rec.NexletID, v1.NexletCreds, rec.WorkloadID, update, nil)
		})
		if err != nil && !v1.IsCode(err, v1.CodeConflict) {
			wl.Log.Warn("renew workload credentials", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
			skip[rec.NexletID] = renewPolicy.Transient(err) // it does not answer: its others wait for the next round
		}
	}
}

// SealCreds mints the workload's credentials and seals them for its nexlet, so they
// cross NATS readable only by that nexlet. In development mode there are none.
func (wl *Workloads) SealCreds(req *v1.StartWorkloadRequest, nexletID string) error {
	c, err := wl.Minter.Workload(req.Definition.Namespace, req.WorkloadID, wl.CredsTTL)
	if err != nil {
		return v1.Errorf(v1.CodeInternal, "mint workload credentials: %v", err)
	}
	if c == nil {
		return nil
	}
	file, err := c.File()
	if err != nil {
		return v1.Errorf(v1.CodeInternal, "format workload credentials: %v", err)
	}
	e, ok := wl.Nexlets.Get(nexletID, time.Now())
	if !ok || e.Reg.XKey == "" {
		return v1.Errorf(v1.CodeUnavailable, "nexlet %s has no xkey to seal credentials for", nexletID)
	}
	sealed, err := wl.XKey.Seal(file, e.Reg.XKey)
	if err != nil {
		return v1.Errorf(v1.CodeInternal, "seal workload credentials: %v", err)
	}
	req.SealedCreds, req.SenderXKey = sealed, wl.XKeyPub
	return nil
}
