package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/copies"
	"github.com/nexrun/nex/pkg/node/index"
	"github.com/nexrun/nex/pkg/node/listing"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"github.com/nexrun/nex/pkg/schema"
	"github.com/nexrun/nex/pkg/seal"
)

// index puts a copy of rec in the node's index (replacing an older one).
func (n *Node) index(rec Record) {
	ports := rec.Definition.Ports()
	res, _ := rec.Definition.WantedResources() // malformed: the deploy refused it
	n.idx.Put(index.Entry{Rec: rec, Ports: ports, Res: n.held(res)})
}

// unindex drops a workload from the index.
func (n *Node) unindex(wid string) { n.idx.Drop(wid) }

// deploy records the desired state while the nexlet starts the workload (in parallel:
// a crash in between is still covered, since a restarted node adopts what its nexlets
// run), and undoes the start if the record cannot be written.
func (n *Node) deploy(ctx context.Context, ns, nexletID string, def v1.WorkloadDefinition, requestID string) (v1.WorkloadInfo, error) {
	wid := v1.NewID()
	log := n.log.With(zap.String("workload_id", wid), zap.String("namespace", ns), zap.String("name", def.Name))
	rec := Record{WorkloadID: wid, NexletID: nexletID, Desired: DesiredRunning, Definition: def, UpdatedAt: time.Now().UTC(), CreatedAt: time.Now().UTC(), RequestID: requestID}
	// a reconcile that runs meanwhile (the nexlet just registered again) finds the record
	// before the nexlet has the workload: it must not start it a second time
	n.flags.Deploying.Store(wid, struct{}{})
	defer n.flags.Deploying.Delete(wid)
	if err := n.admit(ctx, ns, requestID, rec); err != nil {
		return v1.WorkloadInfo{}, err
	}
	stored := make(chan error, 1)
	go func() {
		put := rec // the store sets its revision: a copy of its own
		err := n.cfg.Store.Put(ctx, &put)
		if err == nil {
			n.reindex(put)
		}
		stored <- err
	}()
	// the nexlet must answer before the client stops waiting (svc.DefaultTimeout), so that
	// the client hears the truth from this node, not from a retry that finds the start
	// still in flight
	sctx, cancel := context.WithTimeout(ctx, deployStartTimeout)
	info, err := n.startOnNexlet(sctx, rec, 0)
	cancel()
	if v1.IsCode(err, v1.CodeTimeout) {
		err = v1.Errorf(v1.CodeTimeout, "nexlet %s did not start workload %s within %s (fetching its artifacts?): the start was called off", nexletID, wid, deployStartTimeout)
	}
	serr := <-stored
	if err == nil && serr != nil {
		log.Error("record desired state; stopping the workload again", zap.Error(serr))
		_ = svc.Call(ctx, n.nxc, v1.NexletSubject(n.cfg.NodeID, nexletID, v1.NexletStop, wid), v1.StopRequest{}, nil)
		err = records.StorageError(serr, "record workload "+wid+" (it was stopped again)")
	}
	if err != nil && v1.IsCode(err, v1.CodeTimeout) {
		// the nexlet may still be starting it (a slow fetch): the start has failed as far
		// as the user and the records know, so it must not go on to run untracked
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			sctx, cancel := context.WithTimeout(n.ctx, nexletCallTimeout)
			defer cancel()
			_ = svc.Call(sctx, n.nxc, v1.NexletSubject(n.cfg.NodeID, nexletID, v1.NexletStop, wid), v1.StopRequest{}, nil)
		}()
	}
	if err != nil {
		n.unindex(wid)
		n.unclaim(rec)
		// also when the record's write failed: it may have been stored all the same (a
		// reply lost in a leader election), and a takeover would start the workload the
		// client was told did not start
		if derr := n.cfg.Store.Delete(context.Background(), wid); derr != nil {
			log.Error("remove the record of a workload that did not start: it may be started again", zap.Error(derr))
		}
		n.metrics.startFailures.Add(1)
		if v1.AsError(err).Code >= 500 {
			log.Warn("start failed", zap.Error(err))
		} else {
			log.Info("start refused", zap.Error(err))
		}
		return v1.WorkloadInfo{}, err
	}
	n.metrics.starts.Add(1)
	log.Debug("workload started", zap.String("nexlet_id", nexletID))
	if n.secretStore != nil && strings.Contains(string(def.StartRequest), seal.Prefix) {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.moves.Escrow(n.ctx, rec)
		}()
	}
	info.Definition = nil
	return info, nil
}

// claimRequest makes a start with a request ID idempotent: when a workload of ns was
// started with it already, done is true and the error is a conflict naming it (the client
// returns that workload, saying it was started before). Otherwise requestID is now
// claimed for rec and rec is indexed. A claim of this node's for a workload it does not
// have (its start was cut short by a crash) is taken over. Caller holds n.claimMu.
func (n *Node) claimRequest(ctx context.Context, ns, requestID string, rec Record) (done bool, err error) {
	if held, ok := n.byRequestID(ns, requestID); ok {
		return true, requestConflict(requestID, held.WorkloadID)
	}
	me := n.claimHolder(rec.WorkloadID)
	holder, err := n.cfg.Store.Claim(ctx, ns, requestID, me)
	if err != nil {
		return true, records.StorageError(err, "claim the start's request ID")
	}
	if holder != me {
		wid, node, _ := strings.Cut(holder, "@")
		if node != n.cfg.NodeID || n.idx.Has(wid) {
			return true, requestConflict(requestID, wid)
		}
		if err := n.cfg.Store.Reclaim(ctx, ns, requestID, holder, me); err != nil {
			return true, requestConflict(requestID, wid)
		}
		n.log.Info("took over the request ID of a start a crash cut short", zap.String("request_id", requestID), zap.String("was", wid))
	}
	n.index(rec)
	return false, nil
}

// claimHolder is what a claim of this node for workload wid holds.
func (n *Node) claimHolder(wid string) string { return wid + "@" + n.cfg.NodeID }

// requestConflict names the workload a request ID was used by.
func requestConflict(requestID, wid string) error {
	e := v1.Errorf(v1.CodeConflict, "request ID %q was used by workload %s", requestID, wid)
	e.Details = map[string]string{"workload_id": wid}
	return e
}

// byRequestID finds the workload of ns started with requestID on this node.
func (n *Node) byRequestID(ns, requestID string) (Record, bool) {
	return n.idx.ByRequestID(ns, requestID)
}

// unclaim releases the request ID of a workload that did not start or is gone.
func (n *Node) unclaim(rec Record) {
	if rec.RequestID == "" {
		return
	}
	if err := n.cfg.Store.Unclaim(context.Background(), rec.Definition.Namespace, rec.RequestID, n.claimHolder(rec.WorkloadID)); err != nil {
		n.log.Warn("release request ID", zap.String("workload_id", rec.WorkloadID), zap.Error(err))
	}
}

// startOnNexlet starts rec on its nexlet; restarts is how often it was restarted before
// (0 for a new workload).
func (n *Node) startOnNexlet(ctx context.Context, rec Record, restarts uint64) (v1.WorkloadInfo, error) {
	req := v1.StartWorkloadRequest{WorkloadID: rec.WorkloadID, NodeID: n.cfg.NodeID, Definition: rec.Definition, Restarts: restarts}
	if err := n.cfg.History.Ensure(ctx, rec.Definition.Namespace); err != nil {
		// the workload runs all the same: its output is live only until the streams exist
		n.log.Warn("no history for this namespace: its output and events are not kept", zap.String("namespace", rec.Definition.Namespace), zap.Error(err))
	}
	var nexletXKey string
	if e, ok := n.nexlets.Get(rec.NexletID, time.Now()); ok {
		nexletXKey = e.Reg.XKey
	}
	sr, err := n.secretStore.Resolve(ctx, rec.Definition.Namespace, rec.Definition.StartRequest, nexletXKey)
	if err != nil {
		return v1.WorkloadInfo{}, err
	}
	req.Definition.StartRequest = sr
	if err := n.sealCreds(&req, rec.NexletID); err != nil {
		return v1.WorkloadInfo{}, err
	}
	var info v1.WorkloadInfo
	cctx, cancel := context.WithTimeout(ctx, nexletCallTimeout)
	defer cancel()
	err = n.askNexlet(cctx, rec.NexletID, v1.NexletStart, rec.WorkloadID, req, &info)
	if info.Definition != nil {
		info.Definition.StartRequest = rec.Definition.StartRequest // the reference, not the resolved secret
	}
	return info, err
}

// lookup finds a workload of namespace ns on this node. Workloads of other namespaces
// are invisible (404), except from the system namespace.
func (n *Node) lookup(ns, wid string) (Record, bool) {
	w, ok := n.idx.Get(wid)
	if !ok || (ns != v1.SystemNamespace && w.Rec.Definition.Namespace != ns) {
		return Record{}, false
	}
	return w.Rec, true
}

// notHere is the 404 of a workload this node does not have. With a store the cluster
// shares, it names the node whose record holds the workload (details.owner), when another
// does: a lookup then waits for that node, and says it did not answer rather than "not
// found" (a chaos run: a stop said "not found" of a workload whose node, paused, the
// others had stopped hearing).
func (n *Node) notHere(ns, wid string) error {
	e := v1.NotFound("workload %s not found in namespace %s", wid, ns)
	cs, ok := n.cfg.Store.(ClusterStore)
	if !ok {
		return e
	}
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
	defer cancel()
	owners, err := cs.Owners(ctx, wid)
	if err != nil {
		// the store cannot say whether another node holds it (JetStream electing a
		// leader, or out of quorum): not here is all this node knows (a chaos run, two
		// servers down: a stop said "not found" of a workload that had just moved)
		e.Details = map[string]string{"owner_unknown": err.Error()}
		return e
	}
	for _, o := range owners {
		rec, err := cs.RecordOf(ctx, o, wid)
		if err != nil && !errors.Is(err, ErrNotStored) {
			e.Details = map[string]string{"owner_unknown": err.Error()}
			return e
		}
		if o == n.cfg.NodeID {
			if err == nil && (rec.Desired == DesiredRunning || rec.Desired == DesiredStopping) && (ns == v1.SystemNamespace || rec.Definition.Namespace == ns) {
				// its record is here and its nexlet has not reported it (restarted, and
				// not reconciled yet): "not found" would be false (a chaos run)
				return v1.Errorf(v1.CodeUnavailable, "workload %s is recorded on node %s, whose nexlet has not reported it yet (it restarted): nothing was done; try again", wid, n.cfg.NodeID)
			}
			continue
		}
		if err == nil && rec.Desired != DesiredMoved && (ns == v1.SystemNamespace || rec.Definition.Namespace == ns) {
			alive := n.members.Alive(o)
			e.Details = map[string]string{"owner": o, "owner_alive": strconv.FormatBool(alive)}
			return e
		}
	}
	return e
}

// workloadEndpoints are the control verbs on one workload (ep makes an endpoint of a
// verb that every node answers): a verb of this kind is added here, beside its handler.
func (n *Node) workloadEndpoints(ep func(verb, idName string, h svc.Func, concurrent int) svc.Endpoint) []svc.Endpoint {
	return []svc.Endpoint{
		ep(v1.VerbStop, "workload ID", svc.Handle(n.handleStop), handlerConcurrency),
		ep(v1.VerbInfo, "workload ID", svc.Handle(n.handleInfo), handlerConcurrency),
		ep(v1.VerbClone, "workload ID", svc.Handle(n.handleClone), handlerConcurrency),
		ep(v1.VerbExec, "workload ID", svc.Handle(n.handleExec), handlerConcurrency),
	}
}

// owned resolves a request about one workload to this node's record of it: 404 when the
// workload is not here (or in another namespace).
func (n *Node) owned(r *svc.Request) (Record, error) {
	rec, ok := n.lookup(r.Namespace, r.ID)
	if !ok {
		return Record{}, n.notHere(r.Namespace, r.ID)
	}
	r.Ack(time.Now().Add(nexletCallTimeout + nexletGap)) // it is ours: only our answer counts
	return rec, nil
}

func (n *Node) handleStop(ctx context.Context, r *svc.Request, req *v1.StopRequest) (v1.WorkloadInfo, error) {
	ns, wid := r.Namespace, r.ID
	rec, ok := n.lookup(ns, wid)
	if !ok {
		t, dead := n.idx.Tombstone(wid)
		if dead && (ns == v1.SystemNamespace || t.Info.Namespace == ns) {
			return t.Info, nil
		}
		return v1.WorkloadInfo{}, n.notHere(ns, wid)
	}
	deadline := time.Now().Add(copies.StopBound(rec, *req))
	r.Ack(deadline)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return n.stopWorkload(ctx, rec, *req)
}

// stopWorkload records the intent (desired stopping) before anything is stopped, so no
// recovery can start the workload again and a crash mid-stop is finished on recovery;
// when it cannot be recorded, nothing is stopped. Then it stops the workload on its
// nexlet, within ctx, and forgets it.
func (n *Node) stopWorkload(ctx context.Context, rec Record, req v1.StopRequest) (v1.WorkloadInfo, error) {
	n.flags.OwnStops.Store(rec.WorkloadID, struct{}{}) // its stopping record is this node's doing (stopMarked)
	defer n.flags.OwnStops.Delete(rec.WorkloadID)
	if rec.Desired != DesiredStopping {
		updated, err := n.setDesired(ctx, rec.WorkloadID, DesiredStopping)
		rec.TakenOver = rec.TakenOver || updated.TakenOver // as stored: its marks go first
		if v1.IsNotFound(err) {
			// it left this node (a drain or a takeover moved it) since the stop found it
			// here: "not found" would be false (a chaos run: a stop during a drain)
			return v1.WorkloadInfo{}, v1.Errorf(v1.CodeUnavailable, "workload %s left node %s (it moved) while it was being stopped: nothing was done; try again", rec.WorkloadID, n.cfg.NodeID)
		} else if err != nil {
			return v1.WorkloadInfo{}, records.StorageError(err, "record the stop of workload "+rec.WorkloadID+" (nothing was stopped)")
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var info v1.WorkloadInfo
	err := n.askNexlet(cctx, rec.NexletID, v1.NexletStop, rec.WorkloadID, req, &info)
	// a workload that ended runs nothing: when its nexlet is gone, removing it removes
	// the record (its workdir stays until the nexlet can be asked)
	ended := rec.Desired == DesiredFinished && v1.IsCode(err, v1.CodeUnavailable)
	if !ended && (v1.IsCode(err, v1.CodeUnavailable) || errors.Is(err, svc.ErrNoResponders)) {
		// the stop is recorded: the nexlet, restarting or cut off, is told when it is
		// back, and nothing brings the workload back meanwhile. Saying "failed" was
		// wrong: it took effect later all the same.
		d := rec.Definition
		return v1.WorkloadInfo{ID: rec.WorkloadID, Namespace: d.Namespace, Name: d.Name, Type: d.Type, Lifecycle: d.Lifecycle, NodeID: n.cfg.NodeID,
			NexletID: rec.NexletID, State: v1.StateStopping, Metadata: map[string]string{"note": "nexlet " + rec.NexletID + " did not answer: the stop is recorded, and done as soon as it is back"}}, nil
	}
	if err != nil && !v1.IsNotFound(err) && !ended {
		return v1.WorkloadInfo{}, err
	}
	d := rec.Definition
	if err != nil { // the nexlet no longer has it: it is gone either way
		info = v1.WorkloadInfo{ID: rec.WorkloadID, Namespace: d.Namespace, Name: d.Name, Type: d.Type, Lifecycle: d.Lifecycle, NodeID: n.cfg.NodeID, NexletID: rec.NexletID}
		if ended {
			info.Metadata = map[string]string{"note": "nexlet " + rec.NexletID + " did not answer: the record is removed, its workdir is not"}
		}
	}
	info.State = v1.StateStopped
	info.Definition = nil
	n.forget(rec, info)
	n.metrics.stops.Add(1)
	return info, nil
}

// setDesired updates the desired state of an indexed workload's record.
func (n *Node) setDesired(ctx context.Context, wid, desired string) (Record, error) {
	return n.updateRecord(ctx, wid, func(r *Record) { r.Desired = desired })
}

// updateRecord changes an indexed workload's record with change, by compare-and-set:
// on a conflict it re-reads the stored record and applies change to it once more. It
// indexes the new value. Records are values: what others hold stays as they read it.
func (n *Node) updateRecord(ctx context.Context, wid string, change func(*Record)) (Record, error) {
	w, ok := n.idx.Get(wid)
	if !ok {
		return Record{}, v1.NotFound("workload %s is not indexed on node %s", wid, n.cfg.NodeID)
	}
	updated := w.Rec
	change(&updated)
	updated.UpdatedAt = time.Now().UTC()
	err := n.cfg.Store.Put(ctx, &updated)
	if errors.Is(err, ErrConflict) { // written by another since it was read: read it again
		r, gerr := n.cfg.Store.Get(ctx, wid)
		switch {
		case errors.Is(gerr, ErrNotStored):
			if _, shared := n.cfg.Store.(ClusterStore); shared {
				// removed by another node (it moved, and its moved mark is gone): nothing
				// holds it any more, and a copy left here would run twice (a chaos run:
				// a node updated such a record every 2 s for minutes, its copy running)
				n.copies.LeaveMoved(w.Rec, copies.Unrecorded)
				return Record{}, v1.Errorf(v1.CodeUnavailable, "workload %s is no longer recorded on node %s (another node took it over, or it was stopped elsewhere): its copy here is stopped; try again", wid, n.cfg.NodeID)
			}
			return Record{}, err
		case gerr != nil:
			return Record{}, gerr
		case r.Desired == DesiredMoved:
			n.copies.LeaveMoved(*r, copies.StaleCopy)
			e := v1.Errorf(v1.CodeConflict, "workload %s was taken over by node %s", wid, r.MovedTo)
			e.Details = map[string]string{"moved_to": r.MovedTo}
			return Record{}, e
		}
		updated = *r
		change(&updated)
		updated.UpdatedAt = time.Now().UTC()
		err = n.cfg.Store.Put(ctx, &updated)
	}
	if err != nil {
		return Record{}, err
	}
	n.reindex(updated)
	return updated, nil
}

// reindex replaces the indexed value of a record that is still indexed, unless the index
// already holds a newer revision (two writers finishing out of order).
func (n *Node) reindex(rec Record) { n.idx.Update(rec) }

func (n *Node) forget(rec Record, info v1.WorkloadInfo) {
	wid := rec.WorkloadID
	if err := n.copies.DropMarks(rec); err != nil {
		// its stopping record stays, so a node whose mark names this one finds the record
		// and stops its copy; both go once the store answers
		n.log.Warn("remove the moved marks of a stopped workload; trying again", zap.String("workload_id", wid), zap.Error(err))
		n.copies.DropMarksLater(rec)
	} else if err := n.cfg.Store.Delete(context.Background(), wid); err != nil {
		n.log.Warn("delete workload state", zap.String("workload_id", wid), zap.Error(err))
	}
	n.unclaim(rec)
	n.idx.Bury(wid, info)
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
	err = n.askNexlet(cctx, rec.NexletID, v1.NexletGet, rec.WorkloadID, nil, &info)
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
	rec, ok := n.lookup(r.Namespace, r.ID)
	if !ok {
		return v1.ExecReply{}, n.notHere(r.Namespace, r.ID)
	}
	bound := time.Duration(req.Timeout) + nexletCallTimeout
	r.Ack(time.Now().Add(bound + nexletGap)) // it is ours: only our answer counts
	var reply v1.ExecReply
	cctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	err := n.askNexlet(cctx, rec.NexletID, v1.NexletExec, rec.WorkloadID, req, &reply)
	return reply, err
}

// knownXKey says whether key is the public xkey of a nexlet registered here or with a
// node that announced itself.
func (n *Node) knownXKey(key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.nexlets.All(time.Now()) {
		if e.Reg.XKey == key {
			return true
		}
	}
	return n.members.HasXKey(key)
}

func (n *Node) handleClone(ctx context.Context, r *svc.Request, req *v1.CloneRequest) (v1.CloneReply, error) {
	rec, err := n.owned(r)
	if err != nil {
		return v1.CloneReply{}, err
	}
	wid, def := rec.WorkloadID, rec.Definition
	if req.ResealFor != "" && !n.knownXKey(req.ResealFor) {
		// opening the sealed values for a key the caller names would hand them to anyone
		// in the namespace: only a nexlet of the cluster may receive them
		return v1.CloneReply{}, v1.Errorf(v1.CodeForbidden, "reseal_for %s is not the key of a nexlet registered with this cluster", req.ResealFor)
	}
	if req.ResealFor != "" && strings.Contains(string(def.StartRequest), seal.Prefix) {
		// only the original's nexlet can open its sealed values: it seals them for the clone's
		var out json.RawMessage
		cctx, cancel := context.WithTimeout(ctx, nexletCallTimeout)
		defer cancel()
		if err := n.askNexlet(cctx, rec.NexletID, v1.NexletReseal, "",
			v1.ResealRequest{StartRequest: def.StartRequest, Recipient: req.ResealFor}, &out); err != nil {
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
	n.mu.Lock()
	n.refreshIsolation()
	n.mu.Unlock()
	// Index its workloads before it is listed or bids, so what a client sees it can stop.
	n.copies.Reconcile(req.NexletID)
	n.nexlets.Ready(req.NexletID, registration)
	n.mu.Lock()
	n.refreshCgroups()
	n.mu.Unlock()
	go n.announce(false) // the cluster learns its key now (a clone may be resealed for it)
	n.log.Info("nexlet registered", zap.String("nexlet_id", req.NexletID), zap.String("type", req.RegisterType), zap.String("version", req.Version), zap.String("isolation", cmp.Or(req.Isolation, v1.IsolationNone)))
	if req.Isolation != v1.IsolationUID {
		n.log.Warn("nexlet " + req.NexletID + " runs workloads as its own user (nex.isolation=none): one can read another's files and credentials, and the node's keys; run only workloads you trust here (the nexlet's log says why it does not run each workload as a user of its own)")
	}
	n.nodeEvent(v1.EventRegistered, req.NexletID)
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

// recordFinished records that a workload ended for good, with what its nexlet says of it
// (state, exit code, error), so it stays listed as it ended after the nexlet forgets it.
func (n *Node) recordFinished(ctx context.Context, nexletID, wid string, told *v1.WorkloadInfo) {
	var final v1.WorkloadInfo
	var err error
	if told != nil { // the heartbeat said how it ended
		final = *told
	} else {
		cctx, cancel := context.WithTimeout(ctx, nexletCallTimeout)
		err = n.askNexlet(cctx, nexletID, v1.NexletGet, wid, nil, &final)
		cancel()
	}
	_, uerr := n.updateRecord(ctx, wid, func(r *Record) {
		r.Desired, r.FinishedAt = DesiredFinished, time.Now().UTC()
		if err == nil {
			final.Definition = nil
			r.Final = &final
		}
	})
	if uerr != nil {
		n.log.Warn("record finished workload", zap.String("workload_id", wid), zap.Error(uerr))
	}
}
