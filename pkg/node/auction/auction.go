package auction

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nexrun/nex/internal/ports"
	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/words"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/placement"
	"github.com/nexrun/nex/pkg/node/registry"
)

func (a *Auctioneer) Auction(_ context.Context, r *svc.Request, req *v1.AuctionRequest) (v1.AuctionReply, error) {
	defer func(t0 time.Time) { a.Observe(time.Since(t0)) }(time.Now())
	reply := v1.AuctionReply{NodeID: a.NodeID, NodeName: a.Name}
	if req.RequestID != "" {
		if rec, ok := a.Existing(r.Namespace, req.RequestID); ok { // a retried start: it runs here
			reply.Existing = &v1.WorkloadInfo{ID: rec.WorkloadID, Namespace: rec.Definition.Namespace, Name: rec.Definition.Name, NodeID: a.NodeID}
			return reply, nil
		}
	}
	inUse := ports.InUse(req.Ports) // binds: before the lock, never under it
	a.mu.Lock()
	defer a.mu.Unlock()
	if reason := a.declineReason(r.Namespace, req, inUse); reason != "" {
		reply.Decline = reason
		return reply, nil
	}
	now := time.Now()
	isolation := req.Tags[v1.TagIsolation]
	if a.requiresIsolation(r.Namespace) {
		isolation = v1.IsolationUID
	}
	counts := a.Index.NexletCounts()
	nexlets := a.Nexlets.All(now)
	candidates := placement.Candidates(nexlets, req, isolation, counts)
	if len(candidates) == 0 {
		reply.Decline, reply.Soon = placement.NoCandidate(nexlets, req, counts)
		return reply, nil
	}
	// never promise a limit no nexlet here can enforce
	enforcing := slices.DeleteFunc(slices.Clone(candidates), func(e registry.Nexlet) bool { return !placement.Enforces(e, req.Resources.Names()) })
	if len(enforcing) == 0 {
		reply.Decline = placement.LimitsReason(req, candidates, placement.BestCgroups(nexlets, req.Type))
		return reply, nil
	}
	holds, err := a.Holds(req.Resources)
	if err != nil {
		reply.Decline = err.Error()
		return reply, nil
	}
	b := a.bids.Offer(now, func(p placement.Promised) *placement.Bid {
		why := a.bidsHeld(r.Namespace, p.Unused[r.Namespace], p.PerNS[r.Namespace], holds)
		load, running := 0.0, 0
		if why == "" {
			why, load, running = a.fit(holds, p)
		}
		if why == "" { // what does not fit anyway is told so first
			why = a.halfHeld(r.Namespace, p.PerNS[r.Namespace], holds)
		}
		if why != "" {
			reply.Decline = why
			return nil
		}
		e := a.pickNexlet(enforcing, counts, p)
		b := &placement.Bid{Bid: v1.Bid{
			BidID: a.prefix + v1.NewID(), NodeID: a.NodeID, NexletID: e.Reg.NexletID,
			Type: req.Type, ExpiresAt: now.Add(a.BidTTL).UTC(), StartRequestSchema: e.Reg.StartRequestSchema, XKey: e.Reg.XKey,
			Workloads: running,
		}, NS: r.Namespace, Lifecycle: req.Lifecycle, Res: req.Resources, Holds: holds}
		if a.Placement != v1.PlacementRandom {
			b.Load = &load
		}
		return b
	})
	if b == nil {
		return reply, nil
	}
	reply.Bid = &b.Bid
	return reply, nil
}

// pickNexlet picks which of the node's nexlets bids: the one with the fewest workloads
// and outstanding bids (a node may run several nexlets of a type, as when one process
// cannot hold all its workloads' descriptors), ties at random; with --placement random,
// any at random. out is what the node's outstanding bids hold.
func (a *Auctioneer) pickNexlet(from []registry.Nexlet, counts map[string]int, out placement.Promised) registry.Nexlet {
	if len(from) == 1 || a.Placement == v1.PlacementRandom {
		return from[rand.IntN(len(from))]
	}
	busy := make(map[string]int, len(from))
	ids := make([]string, len(from))
	for i, e := range from {
		busy[e.Reg.NexletID] = counts[e.Reg.NexletID]
		ids[i] = e.Reg.NexletID
	}
	for id := range busy {
		busy[id] += out.PerNexlet[id]
	}
	id := placement.LeastBusy(ids, busy, rand.IntN)
	return from[slices.Index(ids, id)]
}

// declineReason says why this node cannot run req for namespace ns, or "" when it can.
// Caller holds a.mu.
func (a *Auctioneer) declineReason(ns string, req *v1.AuctionRequest, inUse map[int]bool) string {
	if a.state == v1.NodeLameduck {
		return "node is in lameduck mode"
	}
	nexlets := a.Nexlets.All(time.Now())
	isolation := placement.IsolationFor(nexlets, req.Type) // what a nexlet of this type offers
	if isolation != v1.IsolationUID && a.requiresIsolation(ns) {
		return fmt.Sprintf("namespace %s requires isolation (nex.isolation=uid) and no %s nexlet here runs workloads as users of their own", ns, req.Type)
	}
	if len(req.Tags) > 0 {
		have := maps.Clone(a.tags)
		if _, ok := have[v1.TagIsolation]; ok {
			have[v1.TagIsolation] = isolation
		}
		if _, ok := have[v1.TagCgroups]; ok {
			have[v1.TagCgroups] = placement.BestCgroups(nexlets, req.Type) // what a nexlet of this type offers
		}
		if why := placement.UnmatchedTag(have, req.Tags); why != "" {
			return why
		}
	}
	if len(req.Ports) > 0 {
		exposed := make(map[int]string)
		for _, w := range a.Index.All(nil) {
			for _, p := range w.Ports {
				exposed[p] = "of another namespace" // named to its own namespace only
				if w.Rec.Definition.Namespace == ns {
					exposed[p] = w.Rec.Definition.Name
				}
			}
		}
		if why := placement.PortTaken(req.Ports, exposed, inUse); why != "" {
			return why
		}
	}
	var types, lifecycles []string
	for _, e := range nexlets {
		types = append(types, e.Reg.RegisterType)
		if e.Reg.RegisterType == req.Type {
			lifecycles = append(lifecycles, e.Reg.Lifecycles...)
		}
	}
	if len(types) == 0 {
		return "no nexlet is registered"
	}
	if len(lifecycles) == 0 {
		return fmt.Sprintf("type %s not served (node serves: %s)", req.Type, strings.Join(uniqueSorted(types), ", "))
	}
	if !slices.Contains(lifecycles, req.Lifecycle) {
		return fmt.Sprintf("lifecycle %s not supported by type %s (supported: %s)", req.Lifecycle, req.Type, strings.Join(uniqueSorted(lifecycles), ", "))
	}
	return ""
}

// uniqueSorted is in sorted, without repeats.
func uniqueSorted(in []string) []string {
	out := slices.Sorted(slices.Values(in))
	return slices.Compact(out)
}

// requiresIsolation says whether this node runs ns's workloads only isolated.
func (a *Auctioneer) requiresIsolation(ns string) bool {
	return slices.Contains(a.RequireIsolation, ns) || slices.Contains(a.RequireIsolation, "*")
}

// Bids of one namespace a node holds unused (not yet claimed by a deploy) at once: those
// that hold room (each for BidTTL, or until released), and all of them (a bid for no
// resources holds none, but is kept and looked through by every auction).
const (
	MaxRoomBidsPerNamespace = 64
	MaxBidsPerNamespace     = 4096
)

// halfHeld says why namespace ns, with no quota of a resource, may have no more unused
// bids that hold it here: they would hold more than half of what the node offers of it
// ("" when they would not, and for a namespace's first: a start may ask for more). A
// newcomer's walk, with no quota set, held the CPU of a node with three bids it never
// deployed, asking again every BidTTL, and another namespace's starts were declined.
func (a *Auctioneer) halfHeld(ns string, held v1.Usage, holds *v1.Resources) string {
	if held.Workloads == 0 || holds.Empty() {
		return ""
	}
	q, _ := v1.QuotaOf(a.Quotas, ns)
	mem, cpu := a.allocatable()
	switch {
	case q.Memory == 0 && holds.Memory > 0 && held.Memory+holds.Memory > mem/2:
		return fmt.Sprintf("namespace %s holds %s of this node's %s of memory in %d bids not yet deployed; with %s more it would hold over half, the most a namespace without a memory quota may (nexd --namespace-quota)",
			ns, held.Memory, mem, held.Workloads, holds.Memory) + ": " + a.later()
	case q.CPU == 0 && holds.CPU > 0 && held.CPU+holds.CPU > cpu/2:
		return fmt.Sprintf("namespace %s holds %s of this node's %s CPUs in %d bids not yet deployed; with %s more it would hold over half, the most a namespace without a cpu quota may (nexd --namespace-quota)",
			ns, v1.FormatCores(held.CPU), v1.FormatCores(cpu), held.Workloads, v1.FormatCores(holds.CPU)) + ": " + a.later()
	}
	return ""
}

// later says how a namespace's unused bids stop holding room.
func (a *Auctioneer) later() string {
	return fmt.Sprintf("deploy or release them, or wait %s for them to expire", a.BidTTL.Round(time.Second))
}

// bidsHeld says why namespace ns, which holds unused bids here (held: those that hold
// room), may have no more ("" when it may): it holds the most it may already, or one more
// asking for holds would take what its unused bids hold past its quota (a tenant's unused
// bids held a node's whole memory, its quota a seventh of it, asking again every BidTTL).
func (a *Auctioneer) bidsHeld(ns string, unused int, held v1.Usage, holds *v1.Resources) string {
	later := a.later()
	switch {
	case unused >= MaxBidsPerNamespace:
		return fmt.Sprintf("namespace %s holds %d bids of this node not yet deployed, the most one namespace may: %s", ns, unused, later)
	case holds.Empty():
		return ""
	case held.Workloads >= MaxRoomBidsPerNamespace:
		return fmt.Sprintf("namespace %s holds %d bids of this node that hold room and are not yet deployed, the most one namespace may: %s", ns, held.Workloads, later)
	}
	q, ok := v1.QuotaOf(a.Quotas, ns)
	if !ok || (q.Memory > 0 && holds.Memory == 0) || (q.CPU > 0 && holds.CPU == 0) {
		return "" // the deploy says what the start must ask for (quota_exceeded)
	}
	why := q.Exceeds(ns, held, holds)
	switch {
	case why == "":
		return ""
	case q.Workloads > 0 && held.Workloads >= q.Workloads:
		why = fmt.Sprintf("namespace %s has a quota of %s", ns, words.Count(q.Workloads, "workload", "workloads"))
	case held.Workloads == 0: // more than the whole quota: no start of it can be deployed
		return fmt.Sprintf("%s (nexd --namespace-quota %s=%s)", why, ns, q)
	}
	return fmt.Sprintf("%s, in %d bids of this node not yet deployed (nexd --namespace-quota %s=%s): %s", why, held.Workloads, ns, q, later)
}
