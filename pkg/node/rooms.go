package node

// The rooms of the node (the packages under pkg/node), wired, and what each asks of the
// node or of the others.

import (
	"context"
	"encoding/json"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/auction"
	"github.com/nexrun/nex/pkg/node/cluster"
	"github.com/nexrun/nex/pkg/node/copies"
	"github.com/nexrun/nex/pkg/node/events"
	"github.com/nexrun/nex/pkg/node/listing"
	"github.com/nexrun/nex/pkg/node/members"
	"github.com/nexrun/nex/pkg/node/moves"
	"github.com/nexrun/nex/pkg/node/news"
	"github.com/nexrun/nex/pkg/node/room"
	"github.com/nexrun/nex/pkg/node/workloads"
	"go.uber.org/zap"
)

// wire makes the node's rooms and ties each to what it asks of the others. The cluster
// room (the coordinator) exists only when the records are in a store the cluster shares.
func (n *Node) wire() {
	c := n.cfg
	cs, shared := c.Store.(ClusterStore)
	n.events = events.Publisher{Conn: n.nc.Conn, NodeID: c.NodeID}
	n.announcer = &members.Announcer{Conn: n.nc.Conn, NodeID: c.NodeID, Name: c.Name, Members: n.members, Log: n.log, Back: &n.peerBack,
		XKeys: func() []string {
			var keys []string
			for _, e := range n.nexlets.All(time.Now()) {
				if e.Reg.XKey != "" {
					keys = append(keys, e.Reg.XKey)
				}
			}
			return keys
		}}
	if shared {
		n.coord = cluster.New(n.ctx, cluster.Config{NodeID: c.NodeID, NodeLossWindow: c.NodeLossWindow, Conn: n.nc, Store: cs,
			SecretsKey: c.SecretsKey, Members: n.members, Host: clusterHost{n}, Log: n.log, WG: &n.wg, Rescan: c.rescan, Quotas: c.Quotas})
	}
	n.auction = auction.New(auction.Config{NodeID: c.NodeID, Name: c.Name, Tags: c.Tags, BidTTL: c.BidTTL, Placement: c.Placement,
		Memory: c.Memory, ReserveMemory: c.ReserveMemory, CPUs: c.CPUs, ReserveCPU: c.ReserveCPU,
		DefaultLimits: c.DefaultLimits, MaxLimits: c.MaxLimits, RequireIsolation: c.RequireIsolation, Quotas: c.Quotas,
		Index: n.idx, Nexlets: n.nexlets, Observe: n.metrics.observeAuction,
		Existing: func(ns, requestID string) (Record, bool) { return n.work.ByRequestID(ns, requestID) }})
	rb := room.Base{Ctx: n.ctx, WG: &n.wg, Log: n.log, NodeID: c.NodeID, Store: c.Store, Cluster: cs, Entries: n.idx, Nexlets: n.nexlets, Flags: &n.flags}
	n.work = workloads.New(workloads.Config{Base: rb, Members: n.members, Conn: n.nxc,
		History: c.History, Secrets: n.secretStore, Minter: c.Minter, CredsTTL: c.CredsTTL,
		XKey: n.xkey, XKeyPub: n.xkeyPub, Quotas: c.Quotas, Held: n.auction.Held,
		Counters: &n.metrics.Counters, Host: workloadsHost{n},
	})
	n.copies = copies.New(copies.Config{Base: rb, Conn: n.nxc,
		Host: n.work, // the workloads room indexes, starts and stops for it
	})
	n.moves = moves.New(moves.Config{Base: rb, Conn: n.nc, Secrets: n.secretStore, Copies: n.copies, Host: movesHost{n.work, n}})
	n.news = news.New(n.ctx, &n.wg, newsRecorder{n})
	n.lister = listing.New(listing.Config{Log: n.log, NodeID: c.NodeID, Nexlets: n.nexlets, Index: n.idx,
		Members: n.members, Cluster: cs, Host: listingHost{n}})
}

// movesHost is what the moves room asks of the node: the workloads room, and events.
type movesHost struct {
	*workloads.Workloads
	n *Node
}

func (h movesHost) PublishEvent(ev v1.Event) { h.n.events.Workload(ev) }
func (h movesHost) Unplaced(rec Record, why string) {
	h.n.events.Unplaced(rec.Definition.Namespace, rec.WorkloadID, why)
}

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

// listingHost is what the listing room asks of the node.
type listingHost struct{ n *Node }

// ListNexlet does not wait for a nexlet that is between processes (as askNexlet does, for
// nexletGap): its workloads are listed from their records as unknown at once, where a
// wait would outlast the client's patience with this node.
func (h listingHost) ListNexlet(ctx context.Context, nexletID string, req v1.NexletListRequest, out *json.RawMessage) error {
	return h.n.work.Call(ctx, nexletID, v1.NexletList, "", req, out, 0)
}

func (h listingHost) IsCoordinator() bool { return h.n.IsCoordinator() }

func (h listingHost) Unplaced(wid string) string {
	why, _ := h.n.unplaced.Load(wid)
	s, _ := why.(string)
	return s
}

// workloadsHost is what the workloads room asks of the node's other rooms; they are
// wired after it, so it reaches them through the node.
type workloadsHost struct{ n *Node }

func (h workloadsHost) LeaveMoved(rec Record, why string)      { h.n.copies.LeaveMoved(rec, why) }
func (h workloadsHost) DropMarks(rec Record) error             { return h.n.copies.DropMarks(rec) }
func (h workloadsHost) DropMarksLater(rec Record)              { h.n.copies.DropMarksLater(rec) }
func (h workloadsHost) Escrow(ctx context.Context, rec Record) { h.n.moves.Escrow(ctx, rec) }
