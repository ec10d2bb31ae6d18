package node

import (
	"context"
	"encoding/json"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/copies"
	"github.com/nexrun/nex/pkg/node/listing"
	"github.com/nexrun/nex/pkg/node/moves"
	"github.com/nexrun/nex/pkg/node/workloads"
	"go.uber.org/zap"
)

// newCopies wires the room of this node's own copies (package copies): reconciliation
// with the nexlets, the watch of the node's records, moved and unrecorded copies.
func (n *Node) newCopies() *copies.Copies {
	cs, _ := n.cfg.Store.(ClusterStore)
	return copies.New(copies.Config{
		Ctx: n.ctx, WG: &n.wg, Log: n.log, NodeID: n.cfg.NodeID,
		Store: n.cfg.Store, Cluster: cs, Index: n.idx, Nexlets: n.nexlets, Conn: n.nxc,
		Flags: &n.flags, Host: n.work, // the workloads room indexes, starts and stops for it
	})
}

// newMoves wires the room of workloads moving between nodes (package moves): takeovers
// onto this node, a drain's moves away, the escrow of sealed environments.
func (n *Node) newMoves() *moves.Moves {
	cs, _ := n.cfg.Store.(ClusterStore)
	return moves.New(moves.Config{
		Ctx: n.ctx, WG: &n.wg, Log: n.log, NodeID: n.cfg.NodeID, Conn: n.nc,
		Store: n.cfg.Store, Cluster: cs, Index: n.idx, Nexlets: n.nexlets, Secrets: n.secretStore,
		Copies: n.copies, Flags: &n.flags, Host: movesHost{n.work, n},
	})
}

// movesHost is what the moves room asks of the node: the workloads room, and events.
type movesHost struct {
	*workloads.Workloads
	n *Node
}

func (h movesHost) AskNexlet(ctx context.Context, nexletID, op, workloadID string, req, resp any) error {
	return h.Ask(ctx, nexletID, op, workloadID, req, resp)
}

func (h movesHost) PublishEvent(ev v1.Event)        { h.n.publishEvent(ev) }
func (h movesHost) Unplaced(rec Record, why string) { h.n.unplaced(rec, why) }

// newsRecorder writes heartbeat news (package news) to the node's records.
type newsRecorder struct{ n *Node }

func (r newsRecorder) Finished(ctx context.Context, nexletID, wid string, told *v1.WorkloadInfo) {
	r.n.work.RecordFinished(ctx, nexletID, wid, told)
}

func (r newsRecorder) Restarts(ctx context.Context, wid string, count uint64) {
	if _, err := r.n.work.UpdateRecord(ctx, wid, func(rec *Record) { rec.Restarts = max(rec.Restarts, count) }); err != nil {
		r.n.log.Warn("record restart count", zap.String("workload_id", wid), zap.Error(err))
	}
}

// newLister wires the listing room (package listing): the LIST verb.
func (n *Node) newLister() *listing.Lister {
	cs, _ := n.cfg.Store.(ClusterStore)
	return listing.New(listing.Config{Log: n.log, NodeID: n.cfg.NodeID, Nexlets: n.nexlets, Index: n.idx,
		Members: n.members, Cluster: cs, Host: listingHost{n}})
}

// listingHost is what the listing room asks of the node.
type listingHost struct{ n *Node }

// ListNexlet does not wait for a nexlet that is between processes (as askNexlet does, for
// nexletGap): its workloads are listed from their records as unknown at once, where a
// wait would outlast the client's patience with this node.
func (h listingHost) ListNexlet(ctx context.Context, nexletID string, req v1.NexletListRequest, out *json.RawMessage) error {
	return h.n.work.Call(ctx, nexletID, v1.NexletList, "", req, out, 0)
}

func (h listingHost) IsCoordinator() bool { return h.n.IsCoordinator() }

// newWorkloads wires the workloads room (package workloads): records, starts and stops.
func (n *Node) newWorkloads() *workloads.Workloads {
	cs, _ := n.cfg.Store.(ClusterStore)
	return workloads.New(workloads.Config{
		Ctx: n.ctx, WG: &n.wg, Log: n.log, NodeID: n.cfg.NodeID,
		Store: n.cfg.Store, Cluster: cs, Entries: n.idx, Nexlets: n.nexlets, Members: n.members, Conn: n.nxc,
		History: n.cfg.History, Secrets: n.secretStore, Minter: n.cfg.Minter, CredsTTL: n.cfg.CredsTTL,
		XKey: n.xkey, XKeyPub: n.xkeyPub, Quotas: n.cfg.Quotas, Held: n.held,
		Flags: &n.flags, Counters: &n.metrics.Counters, Host: workloadsHost{n},
	})
}

// workloadsHost is what the workloads room asks of the node's other rooms; they are
// wired after it, so it reaches them through the node.
type workloadsHost struct{ n *Node }

func (h workloadsHost) LeaveMoved(rec Record, why string)      { h.n.copies.LeaveMoved(rec, why) }
func (h workloadsHost) DropMarks(rec Record) error             { return h.n.copies.DropMarks(rec) }
func (h workloadsHost) DropMarksLater(rec Record)              { h.n.copies.DropMarksLater(rec) }
func (h workloadsHost) Escrow(ctx context.Context, rec Record) { h.n.moves.Escrow(ctx, rec) }
