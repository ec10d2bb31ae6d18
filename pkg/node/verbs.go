package node

import (
	"cmp"
	"context"
	"encoding/json"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/copies"
	"github.com/nexrun/nex/pkg/node/listing"
	"github.com/nexrun/nex/pkg/node/registry"
	"github.com/nexrun/nex/pkg/schema"
	"github.com/nexrun/nex/pkg/seal"
)

// workloadEndpoints are the control verbs on one workload (ep makes an endpoint of a
// verb that every node answers): a verb of this kind is added here, beside its handler.
func (n *Node) workloadEndpoints(ep func(verb, idName string, h svc.Func, concurrent int) svc.Endpoint) []svc.Endpoint {
	budgeted := func(e svc.Endpoint) svc.Endpoint { // verbs that can wait (on a nexlet): counted per namespace
		e.PerNamespace = perNamespace
		e.Owns = func(ns, wid string) bool { _, ok := n.work.Lookup(ns, wid); return ok }
		return e
	}
	return []svc.Endpoint{
		budgeted(ep(v1.VerbStop, "workload ID", svc.Handle(n.handleStop), handlerConcurrency)),
		budgeted(ep(v1.VerbInfo, "workload ID", svc.Handle(n.handleInfo), handlerConcurrency)),
		budgeted(ep(v1.VerbClone, "workload ID", svc.Handle(n.handleClone), handlerConcurrency)),
		budgeted(ep(v1.VerbExec, "workload ID", svc.Handle(n.handleExec), handlerConcurrency)),
	}
}

// owned resolves a request about one workload to this node's record of it: 404 when the
// workload is not here (or in another namespace).
func (n *Node) owned(r *svc.Request) (Record, error) {
	rec, ok := n.work.Lookup(r.Namespace, r.ID)
	if !ok {
		return Record{}, n.work.NotHere(r.Namespace, r.ID)
	}
	r.Ack(time.Now().Add(nexletCallTimeout + nexletGap)) // it is ours: only our answer counts
	return rec, nil
}

func (n *Node) handleStop(ctx context.Context, r *svc.Request, req *v1.StopRequest) (v1.WorkloadInfo, error) {
	ns, wid := r.Namespace, r.ID
	away := r.Headers.Get(svc.HeaderStopAway) != ""
	if away && r.Headers.Get(svc.HeaderRecorder) != n.cfg.NodeID {
		return v1.WorkloadInfo{}, v1.NotFound("node %s was not asked to record the stop", n.cfg.NodeID) // another node was
	}
	rec, ok := n.work.Lookup(ns, wid)
	if !ok {
		t, dead := n.idx.Tombstone(wid)
		if dead && (ns == v1.SystemNamespace || t.Info.Namespace == ns) {
			return t.Info, nil
		}
		if away { // the lookup found its record on a node no node hears from, this one said
			return n.work.StopAway(ctx, ns, wid, *req, n.work.NotHere(ns, wid))
		}
		return v1.WorkloadInfo{}, n.work.NotHere(ns, wid)
	}
	deadline := time.Now().Add(copies.StopBound(rec, *req))
	r.Ack(deadline)
	if err := n.work.Moving(rec); err != nil {
		return v1.WorkloadInfo{}, err
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return n.work.StopWorkload(ctx, rec, *req)
}

func (n *Node) handleInfo(ctx context.Context, r *svc.Request, _ *struct{}) (any, error) {
	if r.Namespace == v1.SystemNamespace && r.ID == n.cfg.NodeID {
		return n.Info(true), nil
	}
	rec, err := n.owned(r)
	if err != nil {
		return nil, err
	}
	var info v1.WorkloadInfo
	cctx, cancel := context.WithTimeout(ctx, nexletCallTimeout)
	defer cancel()
	err = n.work.Ask(cctx, rec.NexletID, v1.NexletGet, rec.WorkloadID, nil, &info)
	switch {
	case err == nil:
		return info, nil
	case rec.Final != nil, v1.IsCode(err, v1.CodeUnavailable), v1.IsNotFound(err) && rec.Desired != DesiredFinished:
		// ended and forgotten by a restarted nexlet, or its nexlet does not answer, or
		// lost it (it restarted; the node starts it again as it reconciles): the record
		info = listing.RecordInfo(n.cfg.NodeID, rec, false)
		info.Definition = &rec.Definition
		return info, nil
	}
	return nil, err
}

// handleExec runs a command beside a workload this node owns, through its nexlet.
func (n *Node) handleExec(ctx context.Context, r *svc.Request, req *v1.ExecRequest) (v1.ExecReply, error) {
	if err := req.Validate(); err != nil {
		return v1.ExecReply{}, err
	}
	rec, ok := n.work.Lookup(r.Namespace, r.ID)
	if !ok {
		return v1.ExecReply{}, n.work.NotHere(r.Namespace, r.ID)
	}
	bound := time.Duration(req.Timeout) + nexletCallTimeout
	r.Ack(time.Now().Add(bound + nexletGap)) // it is ours: only our answer counts
	var reply v1.ExecReply
	cctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	err := n.work.Ask(cctx, rec.NexletID, v1.NexletExec, rec.WorkloadID, req, &reply)
	return reply, err
}

func (n *Node) handleClone(ctx context.Context, r *svc.Request, req *v1.CloneRequest) (v1.CloneReply, error) {
	rec, err := n.owned(r)
	if err != nil {
		return v1.CloneReply{}, err
	}
	wid, def := rec.WorkloadID, rec.Definition
	if req.ResealFor != "" && !n.announcer.KnowsXKey(req.ResealFor) {
		// opening the sealed values for a key the caller names would hand them to anyone
		// in the namespace: only a nexlet of the cluster may receive them
		return v1.CloneReply{}, v1.Errorf(v1.CodeForbidden, "reseal_for %s is not the key of a nexlet registered with this cluster", req.ResealFor)
	}
	if req.ResealFor != "" && seal.Contains(def.StartRequest) {
		// only the original's nexlet can open its sealed values: it seals them for the clone's
		var out json.RawMessage
		cctx, cancel := context.WithTimeout(ctx, nexletCallTimeout)
		defer cancel()
		if err := n.work.Ask(cctx, rec.NexletID, v1.NexletReseal, "",
			v1.ResealRequest{StartRequest: def.StartRequest, Recipient: req.ResealFor, Namespace: def.Namespace}, &out); err != nil {
			return v1.CloneReply{}, err
		}
		def.StartRequest = out
	}
	return v1.CloneReply{WorkloadID: wid, Definition: def}, nil
}

func (n *Node) handleRegister(_ context.Context, _ *svc.Request, req *v1.RegisterRequest) (v1.RegisterReply, error) {
	if _, err := schema.NewRegistry().Compile(req.StartRequestSchema); err != nil {
		return v1.RegisterReply{}, v1.BadRequest("nexlet %s: start_request_schema: %v", req.NexletID, err)
	}
	if !n.cfg.AllowRemoteNexlets && req.HostID != n.cfg.HostID {
		n.log.Warn("refused a nexlet from another machine", zap.String("nexlet_id", req.NexletID), zap.String("host_id", req.HostID))
		return v1.RegisterReply{}, v1.Errorf(v1.CodeForbidden,
			"nexlet %s runs on another machine (host %q); start nexd with --allow-remote-nexlets to accept it", req.NexletID, req.HostID)
	}
	n.flags.FailedNexlets.Delete(req.NexletID)
	registration := n.nexlets.Register(*req, time.Now())
	n.auction.RefreshIsolation()
	// Index its workloads before it is listed or bids, so what a client sees it can stop.
	n.copies.Reconcile(req.NexletID)
	n.nexlets.Ready(req.NexletID, registration)
	n.auction.RefreshCgroups()
	go n.announcer.Announce(false) // the cluster learns its key now (a clone may be resealed for it)
	n.log.Info("nexlet registered", zap.String("nexlet_id", req.NexletID), zap.String("type", req.RegisterType), zap.String("version", req.Version), zap.String("isolation", cmp.Or(req.Isolation, v1.IsolationNone)))
	if req.Isolation != v1.IsolationUID {
		n.log.Warn("nexlet " + req.NexletID + " runs workloads as its own user (nex.isolation=none): one can read another's files and credentials, and the node's keys; run only workloads you trust here (the nexlet's log says why it does not run each workload as a user of its own)")
	}
	n.events.Of(v1.EventRegistered, req.NexletID, "")
	reply := v1.RegisterReply{NodeID: n.cfg.NodeID, HeartbeatInterval: v1.Duration(n.cfg.HeartbeatInterval)}
	if _, shared := n.cfg.Store.(ClusterStore); shared {
		// half the node-loss window: stopped well before the cluster starts it elsewhere
		reply.DisconnectStopAfter = v1.Duration(n.cfg.NodeLossWindow / 2)
	}
	return reply, nil
}

func (n *Node) handleHeartbeat(_ context.Context, r *svc.Request, req *v1.Heartbeat) (struct{}, error) {
	id := r.ID
	if !n.nexlets.Heartbeat(id, time.Now(), registry.Stats{States: req.States, Restarts: req.Restarts, Counters: req.Stats}) {
		return struct{}{}, v1.NotFound("nexlet %s is not registered with node %s", id, n.cfg.NodeID)
	}
	var finished, recounted []string
	for _, wid := range req.Finished {
		if w, ok := n.idx.Get(wid); ok && w.Rec.Desired == DesiredRunning {
			finished = append(finished, wid)
		}
	}
	for wid, count := range req.RestartCounts {
		if w, ok := n.idx.Get(wid); ok && w.Rec.Desired == DesiredRunning && w.Rec.Restarts != count {
			recounted = append(recounted, wid)
		}
	}
	if len(finished)+len(recounted) > 0 {
		n.news.Add(id, finished, recounted, req)
	}
	return struct{}{}, nil
}
