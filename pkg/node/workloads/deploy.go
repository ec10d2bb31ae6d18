package workloads

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"github.com/nexrun/nex/pkg/seal"
	"go.uber.org/zap"
)

// Deploy records the desired state while the nexlet starts the workload (in parallel:
// a crash in between is still covered, since a restarted node adopts what its nexlets
// run), and undoes the start if the record cannot be written.
func (wl *Workloads) Deploy(ctx context.Context, ns, nexletID string, def v1.WorkloadDefinition, requestID string) (v1.WorkloadInfo, error) {
	wid := v1.NewID()
	log := wl.Log.With(zap.String("workload_id", wid), zap.String("namespace", ns), zap.String("name", def.Name))
	rec := records.Record{WorkloadID: wid, NexletID: nexletID, Desired: records.DesiredRunning, Definition: def, UpdatedAt: time.Now().UTC(), CreatedAt: time.Now().UTC(), RequestID: requestID}
	// a reconcile that runs meanwhile (the nexlet just registered again) finds the record
	// before the nexlet has the workload: it must not start it a second time
	wl.Flags.Deploying.Store(wid, struct{}{})
	defer wl.Flags.Deploying.Delete(wid)
	if err := wl.admit(ctx, ns, requestID, rec); err != nil {
		return v1.WorkloadInfo{}, err
	}
	stored := make(chan error, 1)
	go func() {
		put := rec // the store sets its revision: a copy of its own
		err := wl.Store.Put(ctx, &put)
		if err == nil {
			wl.Reindex(put)
		}
		stored <- err
	}()
	// the nexlet must answer before the client stops waiting (svc.DefaultTimeout), so that
	// the client hears the truth from this node, not from a retry that finds the start
	// still in flight
	sctx, cancel := context.WithTimeout(ctx, deployStartTimeout)
	info, err := wl.StartOnNexlet(sctx, rec, 0)
	cancel()
	if v1.IsCode(err, v1.CodeTimeout) {
		err = v1.Errorf(v1.CodeTimeout, "nexlet %s did not start workload %s within %s (fetching its artifacts?): the start was called off", nexletID, wid, deployStartTimeout)
	}
	serr := <-stored
	if err == nil && serr != nil {
		log.Error("record desired state; stopping the workload again", zap.Error(serr))
		_ = svc.Call(ctx, wl.Conn, v1.NexletSubject(wl.NodeID, nexletID, v1.NexletStop, wid), v1.StopRequest{}, nil)
		err = records.StorageError(serr, "record workload "+wid+" (it was stopped again)")
	}
	if err != nil && v1.IsCode(err, v1.CodeTimeout) {
		// the nexlet may still be starting it (a slow fetch): the start has failed as far
		// as the user and the records know, so it must not go on to run untracked
		wl.WG.Add(1)
		go func() {
			defer wl.WG.Done()
			sctx, cancel := context.WithTimeout(wl.Ctx, registry.CallTimeout)
			defer cancel()
			_ = svc.Call(sctx, wl.Conn, v1.NexletSubject(wl.NodeID, nexletID, v1.NexletStop, wid), v1.StopRequest{}, nil)
		}()
	}
	if err != nil {
		wl.Unindex(wid)
		wl.Unclaim(rec)
		// also when the record's write failed: it may have been stored all the same (a
		// reply lost in a leader election), and a takeover would start the workload the
		// client was told did not start
		if derr := wl.Store.Delete(context.Background(), wid); derr != nil {
			log.Error("remove the record of a workload that did not start: it may be started again", zap.Error(derr))
		}
		wl.Counters.StartFailures.Add(1)
		if v1.AsError(err).Code >= 500 {
			log.Warn("start failed", zap.Error(err))
		} else {
			log.Info("start refused", zap.Error(err))
		}
		return v1.WorkloadInfo{}, err
	}
	wl.Counters.Starts.Add(1)
	log.Debug("workload started", zap.String("nexlet_id", nexletID))
	if wl.Secrets != nil && seal.Contains(def.StartRequest) {
		wl.WG.Add(1)
		go func() {
			defer wl.WG.Done()
			wl.Host.Escrow(wl.Ctx, rec)
		}()
	}
	info.Definition = nil
	return info, nil
}

// Namespace quotas (Config.Quotas, nexd --namespace-quota) are checked when a node
// deploys a start: the namespace's workloads across the cluster (every node's records in
// the KV state, this node's in-flight starts included) plus the new one must fit. Starts of
// one namespace are checked one at a time on a node; two nodes deploying for one namespace
// at the same moment can each take the last place.

// admit indexes rec, a new start of namespace ns (claiming its request ID, when it has
// one: a start that was made before is a conflict naming it), and checks ns's quota with
// rec counted; a start past the quota is unindexed again and refused. Starts of a
// namespace with a quota are admitted one at a time on a node.
func (wl *Workloads) admit(ctx context.Context, ns, requestID string, rec records.Record) error {
	q, quota := v1.QuotaOf(wl.Quotas, ns)
	if quota {
		wl.quotaMu.Lock()
		defer wl.quotaMu.Unlock()
	}
	if requestID == "" {
		wl.Index(rec)
	} else {
		wl.claimMu.Lock() // claim and index at once: a second start with the key finds the first
		done, err := wl.claimRequest(ctx, ns, requestID, rec)
		wl.claimMu.Unlock()
		if done || err != nil {
			return err
		}
	}
	if !quota {
		return nil
	}
	u, ended, err := wl.namespaceUsage(ctx, ns, rec.WorkloadID)
	if err == nil {
		res, _ := rec.Definition.WantedResources() // malformed: refused before this
		if why := q.Exceeds(ns, u, wl.Held(res)); why != "" {
			if ended > 0 && q.Workloads > 0 && u.Workloads+1 > q.Workloads {
				why += fmt.Sprintf(", %d of them ended and kept until removed (nex --namespace %s workload rm --finished)", ended, ns)
			}
			err = v1.Errorf(v1.CodeQuotaExceeded, "%s (nexd --namespace-quota %s=%s)", why, ns, q)
		}
	}
	if err != nil {
		wl.Unindex(rec.WorkloadID)
		wl.Unclaim(rec)
	}
	return err
}

// claimRequest makes a start with a request ID idempotent: when a workload of ns was
// started with it already, done is true and the error is a conflict naming it (the client
// returns that workload, saying it was started before). Otherwise requestID is now
// claimed for rec and rec is indexed. A claim of this node's for a workload it does not
// have (its start was cut short by a crash) is taken over. Caller holds wl.claimMu.
func (wl *Workloads) claimRequest(ctx context.Context, ns, requestID string, rec records.Record) (done bool, err error) {
	if held, ok := wl.ByRequestID(ns, requestID); ok {
		return true, requestConflict(requestID, held.WorkloadID)
	}
	me := wl.claimHolder(rec.WorkloadID)
	holder, err := wl.Store.Claim(ctx, ns, requestID, me)
	if err != nil {
		return true, records.StorageError(err, "claim the start's request ID")
	}
	if holder != me {
		wid, node, _ := strings.Cut(holder, "@")
		if node != wl.NodeID || wl.Entries.Has(wid) {
			return true, requestConflict(requestID, wid)
		}
		if err := wl.Store.Reclaim(ctx, ns, requestID, holder, me); err != nil {
			return true, requestConflict(requestID, wid)
		}
		wl.Log.Info("took over the request ID of a start a crash cut short", zap.String("request_id", requestID), zap.String("was", wid))
	}
	wl.Index(rec)
	return false, nil
}

// claimHolder is what a claim of this node for workload wid holds.
func (wl *Workloads) claimHolder(wid string) string { return records.ClaimHolder(wid, wl.NodeID) }

// requestConflict names the workload a request ID was used by.
func requestConflict(requestID, wid string) error {
	e := v1.Errorf(v1.CodeConflict, "request ID %q was used by workload %s", requestID, wid)
	e.Details = map[string]string{"workload_id": wid}
	return e
}

// ByRequestID finds the workload of ns started with requestID on this node.
func (wl *Workloads) ByRequestID(ns, requestID string) (records.Record, bool) {
	return wl.Entries.ByRequestID(ns, requestID)
}

// Unclaim releases the request ID of a workload that did not start or is gone.
func (wl *Workloads) Unclaim(rec records.Record) {
	if rec.RequestID == "" {
		return
	}
	if err := wl.Store.Unclaim(context.Background(), rec.Definition.Namespace, rec.RequestID, wl.claimHolder(rec.WorkloadID)); err != nil {
		wl.Log.Warn("release request ID", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
	}
}

// namespaceUsage is what namespace ns's workloads hold (but workload except): those that
// run or are being stopped, on this node and, with a records.ClusterStore, on every other.
func (wl *Workloads) namespaceUsage(ctx context.Context, ns, except string) (u v1.Usage, ended int, err error) {
	seen := map[string]bool{except: true}
	// take counts a record of ns as records.QuotaHold says
	take := func(rec *records.Record, res func() *v1.Resources) {
		workload, resources := rec.QuotaHold()
		if rec.Definition.Namespace != ns || seen[rec.WorkloadID] || !workload {
			return
		}
		if resources {
			u.Add(res())
		} else {
			u.Workloads++
			ended++
		}
		seen[rec.WorkloadID] = true
	}
	for _, w := range wl.Entries.All(nil) {
		take(&w.Rec, func() *v1.Resources { return w.Res }) // parsed when it was indexed
	}
	if cs := wl.Cluster; cs != nil {
		all, err := cs.All(ctx)
		if err != nil {
			return u, ended, records.StorageError(err, "count namespace "+ns+"'s workloads for its quota")
		}
		for node, recs := range all {
			if node == wl.NodeID {
				continue // this node's index is newer (its starts in flight are there)
			}
			for _, r := range recs {
				take(r, func() *v1.Resources {
					res, _ := r.Definition.WantedResources()
					return wl.Held(res) // with this node's defaults: give every node the same
				})
			}
		}
	}
	return u, ended, nil
}

// StartOnNexlet starts rec on its nexlet; restarts is how often it was restarted before
// (0 for a new workload).
func (wl *Workloads) StartOnNexlet(ctx context.Context, rec records.Record, restarts uint64) (v1.WorkloadInfo, error) {
	req := v1.StartWorkloadRequest{WorkloadID: rec.WorkloadID, NodeID: wl.NodeID, Definition: rec.Definition, Restarts: restarts}
	if err := wl.History.Ensure(ctx, rec.Definition.Namespace); err != nil {
		// the workload runs all the same: its output is live only until the streams exist
		wl.Log.Warn("no history for this namespace: its output and events are not kept", zap.String("namespace", rec.Definition.Namespace), zap.Error(err))
	}
	var nexletXKey string
	if e, ok := wl.Nexlets.Get(rec.NexletID, time.Now()); ok {
		nexletXKey = e.Reg.XKey
	}
	sr, err := wl.Secrets.Resolve(ctx, rec.Definition.Namespace, rec.Definition.StartRequest, nexletXKey)
	if err != nil {
		return v1.WorkloadInfo{}, err
	}
	req.Definition.StartRequest = sr
	if err := wl.SealCreds(&req, rec.NexletID); err != nil {
		return v1.WorkloadInfo{}, err
	}
	var info v1.WorkloadInfo
	cctx, cancel := context.WithTimeout(ctx, registry.CallTimeout)
	defer cancel()
	err = wl.Ask(cctx, rec.NexletID, v1.NexletStart, rec.WorkloadID, req, &info)
	if info.Definition != nil {
		info.Definition.StartRequest = rec.Definition.StartRequest // the reference, not the resolved secret
	}
	return info, err
}

// deployStartTimeout bounds a deploy's start on the nexlet: below a client's wait
// (svc.DefaultTimeout, 10 s), so the deploy's answer, not the client's timeout, tells the
// user how the start went.
const deployStartTimeout = 8 * time.Second
