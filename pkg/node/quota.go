package node

import (
	"context"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/index"
	"github.com/nexrun/nex/pkg/node/records"
)

// Namespace quotas (Config.Quotas, nexd --namespace-quota) are checked when a node
// deploys a start: the namespace's workloads across the cluster (every node's records in
// the KV state, this node's in-flight starts included) plus the new one must fit. Starts of
// one namespace are checked one at a time on a node; two nodes deploying for one namespace
// at the same moment can each take the last place.

// admit indexes rec, a new start of namespace ns (claiming its request ID, when it has
// one: a start that was made before is a conflict naming it), and checks ns's quota with
// rec counted; a start past the quota is unindexed again and refused. Starts of a
// namespace with a quota are admitted one at a time on a node.
func (n *Node) admit(ctx context.Context, ns, requestID string, rec Record) error {
	q, quota := v1.QuotaOf(n.cfg.Quotas, ns)
	if quota {
		n.quotaMu.Lock()
		defer n.quotaMu.Unlock()
	}
	if requestID == "" {
		n.index(rec)
	} else {
		n.claimMu.Lock() // claim and index at once: a second start with the key finds the first
		done, err := n.claimRequest(ctx, ns, requestID, rec)
		n.claimMu.Unlock()
		if done || err != nil {
			return err
		}
	}
	if !quota {
		return nil
	}
	u, err := n.namespaceUsage(ctx, ns, rec.WorkloadID)
	if err == nil {
		res, _ := rec.Definition.WantedResources() // malformed: refused before this
		if why := q.Exceeds(ns, u, n.held(res)); why != "" {
			err = v1.Errorf(v1.CodeQuotaExceeded, "%s (nexd --namespace-quota %s=%s)", why, ns, q)
		}
	}
	if err != nil {
		n.unindex(rec.WorkloadID)
		n.unclaim(rec)
	}
	return err
}

// namespaceUsage is what namespace ns's workloads hold (but workload except): those that
// run or are being stopped, on this node and, with a ClusterStore, on every other.
func (n *Node) namespaceUsage(ctx context.Context, ns, except string) (v1.Usage, error) {
	var u v1.Usage
	seen := map[string]bool{except: true}
	counts := func(rec *Record) bool {
		return rec.Definition.Namespace == ns && !seen[rec.WorkloadID] && (rec.Desired == DesiredRunning || rec.Desired == DesiredStopping)
	}
	for _, w := range n.idx.All(nil) {
		if counts(&w.Rec) {
			seen[w.Rec.WorkloadID] = true
			u.Add(w.Res) // parsed when it was indexed
		}
	}
	if cs, ok := n.cfg.Store.(ClusterStore); ok {
		all, err := cs.All(ctx)
		if err != nil {
			return u, records.StorageError(err, "count namespace "+ns+"'s workloads for its quota")
		}
		for node, recs := range all {
			if node == n.cfg.NodeID {
				continue // this node's index is newer (its starts in flight are there)
			}
			for _, r := range recs {
				if counts(r) {
					seen[r.WorkloadID] = true
					res, _ := r.Definition.WantedResources()
					u.Add(n.held(res)) // with this node's defaults: give every node the same
				}
			}
		}
	}
	return u, nil
}

// handleUsage answers what the namespace's workloads on this node hold, and its quota
// (from system: every namespace's this node runs or has a quota for).
func (n *Node) handleUsage(_ context.Context, r *svc.Request, _ *struct{}) (v1.UsageReply, error) {
	reply := v1.UsageReply{NodeID: n.cfg.NodeID, Namespaces: map[string]v1.NamespaceUsage{}}
	all := r.Namespace == v1.SystemNamespace
	if !all {
		reply.Namespaces[r.Namespace] = v1.NamespaceUsage{}
	}
	for _, w := range n.idx.All(index.Entry.Running) {
		ns := w.Rec.Definition.Namespace
		if !all && ns != r.Namespace {
			continue
		}
		u := reply.Namespaces[ns]
		u.Add(w.Res)
		reply.Namespaces[ns] = u
	}
	if all {
		for ns := range n.cfg.Quotas {
			if _, ok := reply.Namespaces[ns]; !ok {
				reply.Namespaces[ns] = v1.NamespaceUsage{}
			}
		}
	}
	for ns, u := range reply.Namespaces {
		if q, ok := v1.QuotaOf(n.cfg.Quotas, ns); ok { // "*" too: for every namespace without one
			u.Quota = &q
		}
		reply.Namespaces[ns] = u
	}
	return reply, nil
}
