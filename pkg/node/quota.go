package node

import (
	"context"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Namespace quotas are checked when a start is deployed (package workloads, admit); USAGE
// reports them.

// handleUsage answers what the namespace's workloads on this node hold, and its quota
// (from system: every namespace's this node runs or has a quota for).
func (n *Node) handleUsage(_ context.Context, r *svc.Request, _ *struct{}) (v1.UsageReply, error) {
	reply := v1.UsageReply{NodeID: n.cfg.NodeID, Namespaces: map[string]v1.NamespaceUsage{}}
	all := r.Namespace == v1.SystemNamespace
	if !all {
		reply.Namespaces[r.Namespace] = v1.NamespaceUsage{}
	}
	for _, w := range n.idx.All(nil) {
		ns := w.Rec.Definition.Namespace
		if !all && ns != r.Namespace {
			continue
		}
		workload, resources := w.Rec.QuotaHold()
		if !workload {
			continue
		}
		u := reply.Namespaces[ns]
		if resources {
			u.Add(w.Res)
		} else {
			u.Workloads++
		}
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
