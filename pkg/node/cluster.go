package node

import (
	"context"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The node's side of the cluster room (package cluster): the coordinator it runs when its
// records are in a store the cluster shares (n.coord, nil otherwise; wired in rooms.go),
// and what the coordinator asks of the node (clusterHost).

// clusterHost is what the coordinator asks of its node.
type clusterHost struct{ n *Node }

func (h clusterHost) Lameduck() bool {
	return h.n.auction.State() == v1.NodeLameduck
}

func (h clusterHost) NodeEvent(ev v1.Event) { h.n.events.Node(ev) }
func (h clusterHost) Unplaced(rec Record, why string) {
	h.n.unplaced.Store(rec.WorkloadID, why) // for the list's note (listingHost.Unplaced)
	h.n.events.Unplaced(rec.Definition.Namespace, rec.WorkloadID, why)
}
func (h clusterHost) DropMarks(rec Record) error { return h.n.copies.DropMarks(rec) }

// handleGroup serves GROUP requests (cluster.Coordinator.HandleGroup); a node that keeps
// its records to itself has no groups.
func (n *Node) handleGroup(ctx context.Context, r *svc.Request, req *v1.GroupRequest) (v1.GroupStatus, error) {
	if n.coord == nil {
		return v1.GroupStatus{}, noGroups(n.cfg.NodeID)
	}
	return n.coord.HandleGroup(ctx, r, req)
}

// noGroups is the answer of a node that keeps its records to itself to a group request.
func noGroups(node string) error {
	return v1.Errorf(v1.CodeNotImplemented, "replica groups are a cluster feature: node %s keeps its records to itself (start nexd with --state kv)", node)
}

// IsCoordinator says whether this node holds the coordinator lease now.
func (n *Node) IsCoordinator() bool { return n.coord != nil && n.coord.Holds() }

// checkCoordinator says whether node holds the coordinator lease at epoch now
// (cluster.Coordinator.CheckFence).
func (n *Node) checkCoordinator(ctx context.Context, node string, epoch uint64) error {
	if n.coord == nil {
		return v1.Errorf(v1.CodeNotImplemented, "node %s keeps its records to itself: it has no coordinator to check node %s against (nothing was started)", n.cfg.NodeID, node)
	}
	return n.coord.CheckFence(ctx, node, epoch)
}
