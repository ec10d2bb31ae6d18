package workloads

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/index"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"go.uber.org/zap"
)

// Index puts a copy of rec in the node's index (replacing an older one).
func (wl *Workloads) Index(rec records.Record) {
	ports := rec.Definition.Ports()
	res, _ := rec.Definition.WantedResources() // malformed: the deploy refused it
	wl.Entries.Put(index.Entry{Rec: rec, Ports: ports, Res: wl.Held(res)})
}

// Unindex drops a workload from the index.
func (wl *Workloads) Unindex(wid string) { wl.Entries.Drop(wid) }

// Reindex replaces the indexed value of a record that is still indexed, unless the index
// already holds a newer revision (two writers finishing out of order).
func (wl *Workloads) Reindex(rec records.Record) { wl.Entries.Update(rec) }

// Lookup finds a workload of namespace ns on this node. Workloads of other namespaces
// are invisible (404), except from the system namespace.
func (wl *Workloads) Lookup(ns, wid string) (records.Record, bool) {
	w, ok := wl.Entries.Get(wid)
	if !ok || (ns != v1.SystemNamespace && w.Rec.Definition.Namespace != ns) {
		return records.Record{}, false
	}
	return w.Rec, true
}

// NotHere is the 404 of a workload this node does not have. With a store the cluster
// shares, it names the node whose record holds the workload (details.owner), when another
// does: a lookup then waits for that node, and says it did not answer rather than "not
// found" (a chaos run: a stop said "not found" of a workload whose node, paused, the
// others had stopped hearing).
func (wl *Workloads) NotHere(ns, wid string) error {
	e := v1.NotFound("workload %s not found in namespace %s", wid, ns)
	cs := wl.Cluster
	if cs == nil {
		return e
	}
	ctx, cancel := context.WithTimeout(wl.Ctx, 2*time.Second)
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
		if err != nil && !errors.Is(err, records.ErrNotStored) {
			e.Details = map[string]string{"owner_unknown": err.Error()}
			return e
		}
		if o == wl.NodeID {
			if err == nil && (rec.Desired == records.DesiredRunning || rec.Desired == records.DesiredStopping) && (ns == v1.SystemNamespace || rec.Definition.Namespace == ns) {
				// its record is here and its nexlet has not reported it (restarted, and
				// not reconciled yet): "not found" would be false (a chaos run)
				return v1.Errorf(v1.CodeUnavailable, "workload %s is recorded on node %s, whose nexlet has not reported it yet (it restarted): nothing was done; try again", wid, wl.NodeID)
			}
			continue
		}
		if err == nil && rec.Desired != records.DesiredMoved && (ns == v1.SystemNamespace || rec.Definition.Namespace == ns) {
			alive := wl.Members.Alive(o)
			e.Details = map[string]string{"owner": o, "owner_alive": strconv.FormatBool(alive), "owner_desired": rec.Desired}
			return e
		}
	}
	return e
}

// Ask sends one request to a local nexlet, riding out a short gap in its connection.
func (wl *Workloads) Ask(ctx context.Context, nexletID, op, workloadID string, req, resp any) error {
	return wl.Call(ctx, nexletID, op, workloadID, req, resp, registry.CallGap)
}

// Call asks a nexlet, asking again for up to wait while nothing listens.
func (wl *Workloads) Call(ctx context.Context, nexletID, op, workloadID string, req, resp any, wait time.Duration) error {
	subject := v1.NexletSubject(wl.NodeID, nexletID, op)
	if workloadID != "" {
		subject = v1.NexletSubject(wl.NodeID, nexletID, op, workloadID)
	}
	return svc.CallWaiting(ctx, wl.Conn, subject, req, resp, wait)
}

// StopAway records the stop of a workload whose record is on a node this one does not
// hear from (stopped, lost, paused or cut off), as notHere (NotHere's 404) names it, when
// a lookup found no node that has it and the client asks this node to (the STOP's
// svc.HeaderStopAway): that node's record is marked stopping (records.MarkStopping), so
// that node stops its copy when it is back, with req's grace, and the workload starts
// nowhere else meanwhile (the coordinator removes a lost node's stopping record rather
// than place it). Without such a node, notHere is the answer. (A newcomer's walk: a
// service whose environment is sealed for its node's key alone, which cannot move, could
// not be stopped until its node came back.)
func (wl *Workloads) StopAway(ctx context.Context, ns, wid string, req v1.StopRequest, notHere error) (v1.WorkloadInfo, error) {
	d, _ := v1.AsError(notHere).Details.(map[string]string)
	owner := d["owner"]
	if wl.Cluster == nil || owner == "" || d["owner_alive"] != "false" {
		return v1.WorkloadInfo{}, notHere
	}
	cctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	rec, err := records.MarkStopping(cctx, wl.Cluster, ns, owner, wid, req.GracePeriod)
	switch {
	case err != nil:
		return v1.WorkloadInfo{}, err
	case rec != nil && rec.Desired == records.DesiredMoved && rec.MovedTo != "":
		e := v1.Errorf(v1.CodeConflict, "workload %s was taken over by node %s", wid, rec.MovedTo)
		e.Details = map[string]string{"moved_to": rec.MovedTo}
		return v1.WorkloadInfo{}, e
	case rec == nil || rec.Desired != records.DesiredStopping:
		return v1.WorkloadInfo{}, notHere
	}
	def := rec.Definition
	wl.Log.Info("a stop of a workload whose node is not heard from: its record says stop", zap.String("workload_id", wid), zap.String("node", owner))
	return v1.WorkloadInfo{ID: wid, Namespace: def.Namespace, Name: def.Name, Type: def.Type, Lifecycle: def.Lifecycle, NodeID: owner, NexletID: rec.NexletID,
		State: v1.StateStopping, Metadata: map[string]string{"note": "node " + owner + " is not heard from (stopped, lost or cut off): the stop is recorded, and done as soon as it is back; the workload does not start anywhere else"}}, nil
}
