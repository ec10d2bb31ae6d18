package node

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/micro"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/ports"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/placement"
	"github.com/nexrun/nex/pkg/node/registry"
	"github.com/nexrun/nex/pkg/schema"
)

// nexletCallTimeout bounds a request from the node to a local nexlet.
const nexletCallTimeout = registry.CallTimeout

// nexletGap is how long the node keeps asking a registered nexlet that has no
// subscription (registry.CallGap).
const nexletGap = registry.CallGap

func (n *Node) addService() error {
	srv, err := svc.NewServer(n.nc, svc.Config{
		Config: micro.Config{
			Name:        "nexd",
			Version:     n.cfg.Version,
			Description: "nex node daemon",
			Metadata:    map[string]string{"api": v1.APIVersion, "node_id": n.cfg.NodeID, "node_name": n.cfg.Name, "nexus": n.cfg.Nexus},
		},
		Logger: n.log,
		OnError: func(subject string, e *v1.Error) {
			if e.Code >= 500 {
				n.log.Warn("request failed", zap.String("subject", subject), zap.String("error_code", e.ErrorCode), zap.String("error", e.Message))
			} else {
				n.log.Debug("request rejected", zap.String("subject", subject), zap.String("error_code", e.ErrorCode), zap.String("error", e.Message))
			}
		},
	})
	if err != nil {
		return err
	}
	n.srv = srv
	control := func(verb, idName string) (string, func(string) (string, string, error)) {
		return v1.ControlWildcard(verb, idName != ""), svc.ControlTokens(idName)
	}
	// Every node answers control requests (fan-out); requests that wait on a nexlet run
	// concurrently, the auction and ping answer from memory.
	ep := func(verb, idName string, h svc.Func, concurrent int) svc.Endpoint {
		subject, tokens := control(verb, idName)
		if concurrent > 0 {
			h = n.settle(verb, h)
		}
		return svc.Endpoint{Name: verb, Subject: subject, Tokens: tokens, Handler: h, Concurrent: concurrent, Headers: n.fanoutHeaders, EveryInstance: true}
	}
	// the verbs on one workload stand beside their handlers (workloadEndpoints)
	eps := append(n.workloadEndpoints(ep), []svc.Endpoint{
		ep(v1.VerbAuction, "", svc.Handle(n.handleAuction), 0),
		ep(v1.VerbList, "", svc.Handle(n.handleList), handlerConcurrency),
		ep(v1.VerbLameduck, "node ID", svc.Handle(n.handleLameduck), handlerConcurrency),
		ep(v1.VerbGroup, "group ID", svc.Handle(n.handleGroup), handlerConcurrency),
		ep(v1.VerbUsage, "", svc.Handle(n.handleUsage), 0),
		{Name: v1.VerbBundleBucket, Subject: v1.ControlWildcard(v1.VerbBundleBucket, false), Tokens: svc.ControlTokens(""),
			Handler: svc.Handle(n.handleBundleBucket), Concurrent: 4},
		{Name: v1.VerbPing, Subject: v1.SystemSubject(v1.VerbPing), Handler: svc.Handle(n.handlePing), Headers: n.fanoutHeaders, EveryInstance: true},
		{Name: v1.VerbDeploy, Subject: v1.ControlWildcard(v1.VerbDeploy, true), Tokens: svc.ControlTokens("bid ID"),
			Handler: svc.Handle(n.handleDeploy), Concurrent: handlerConcurrency, EveryInstance: true},
		{Name: v1.VerbRelease, Subject: v1.ControlWildcard(v1.VerbRelease, true), Tokens: svc.ControlTokens("bid ID"),
			Handler: svc.Handle(n.handleRelease), EveryInstance: true},
		{Name: "REGISTER", Subject: v1.RegisterSubject(n.cfg.NodeID), Handler: svc.Handle(n.handleRegister), Concurrent: handlerConcurrency},
		{Name: "HEARTBEAT", Subject: v1.HeartbeatSubject(n.cfg.NodeID, "*"), Tokens: svc.LastToken("nexlet ID"),
			Handler: svc.Handle(n.handleHeartbeat), Concurrent: handlerConcurrency},
	}...)
	eps = append(eps, n.secretStore.Endpoints()...)
	for _, e := range eps {
		if err := srv.Add(e); err != nil {
			srv.Stop(context.Background())
			return err
		}
	}
	return nil
}

// handlerConcurrency bounds the requests of one endpoint handled at once.
const handlerConcurrency = 256

func (n *Node) handleAuction(_ context.Context, r *svc.Request, req *v1.AuctionRequest) (v1.AuctionReply, error) {
	defer func(t0 time.Time) { n.metrics.observeAuction(time.Since(t0)) }(time.Now())
	reply := v1.AuctionReply{NodeID: n.cfg.NodeID, NodeName: n.cfg.Name}
	if req.RequestID != "" {
		if rec, ok := n.work.ByRequestID(r.Namespace, req.RequestID); ok { // a retried start: it runs here
			reply.Existing = &v1.WorkloadInfo{ID: rec.WorkloadID, Namespace: rec.Definition.Namespace, Name: rec.Definition.Name, NodeID: n.cfg.NodeID}
			return reply, nil
		}
	}
	inUse := ports.InUse(req.Ports) // binds: before the lock, never under it
	n.mu.Lock()
	defer n.mu.Unlock()
	if reason := n.declineReason(r.Namespace, req, inUse); reason != "" {
		reply.Decline = reason
		return reply, nil
	}
	now := time.Now()
	isolation := req.Tags[v1.TagIsolation]
	if n.requiresIsolation(r.Namespace) {
		isolation = v1.IsolationUID
	}
	counts := n.idx.NexletCounts()
	nexlets := n.nexlets.All(now)
	candidates := placement.Candidates(nexlets, req, isolation, counts)
	if len(candidates) == 0 {
		reply.Decline = placement.NoCandidate(nexlets, req, counts)
		return reply, nil
	}
	// never promise a limit no nexlet here can enforce
	enforcing := slices.DeleteFunc(slices.Clone(candidates), func(e registry.Nexlet) bool { return !placement.Enforces(e, req.Resources.Names()) })
	if len(enforcing) == 0 {
		reply.Decline = placement.LimitsReason(req, candidates, placement.BestCgroups(nexlets, req.Type))
		return reply, nil
	}
	holds, err := n.holds(req.Resources)
	if err != nil {
		reply.Decline = err.Error()
		return reply, nil
	}
	b := n.bids.Offer(now, func(p placement.Promised) *placement.Bid {
		why, load, running := n.fit(holds, p)
		if why != "" {
			reply.Decline = why
			return nil
		}
		e := n.pickNexlet(enforcing, counts, p)
		b := &placement.Bid{Bid: v1.Bid{
			BidID: n.bidPrefix + v1.NewID(), NodeID: n.cfg.NodeID, NexletID: e.Reg.NexletID,
			Type: req.Type, ExpiresAt: now.Add(n.cfg.BidTTL).UTC(), StartRequestSchema: e.Reg.StartRequestSchema, XKey: e.Reg.XKey,
			Workloads: running,
		}, NS: r.Namespace, Lifecycle: req.Lifecycle, Res: req.Resources, Holds: holds}
		if n.cfg.Placement != v1.PlacementRandom {
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
func (n *Node) pickNexlet(from []registry.Nexlet, counts map[string]int, out placement.Promised) registry.Nexlet {
	if len(from) == 1 || n.cfg.Placement == v1.PlacementRandom {
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
// Caller holds n.mu.
func (n *Node) declineReason(ns string, req *v1.AuctionRequest, inUse map[int]bool) string {
	if n.state == v1.NodeLameduck {
		return "node is in lameduck mode"
	}
	nexlets := n.nexlets.All(time.Now())
	isolation := placement.IsolationFor(nexlets, req.Type) // what a nexlet of this type offers
	if isolation != v1.IsolationUID && n.requiresIsolation(ns) {
		return fmt.Sprintf("namespace %s requires isolation (nex.isolation=uid) and no %s nexlet here runs workloads as users of their own", ns, req.Type)
	}
	if len(req.Tags) > 0 {
		have := maps.Clone(n.cfg.Tags)
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
		for _, w := range n.idx.All(nil) {
			for _, p := range w.Ports {
				exposed[p] = w.Rec.Definition.Name
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

func (n *Node) handleDeploy(ctx context.Context, r *svc.Request, req *v1.DeployRequest) (v1.WorkloadInfo, error) {
	ns, bidID := r.Namespace, r.ID
	if !strings.HasPrefix(bidID, n.bidPrefix) {
		return v1.WorkloadInfo{}, svc.ErrNoReply
	}
	if req.Coordinator != "" || req.Epoch != 0 {
		if err := n.checkCoordinator(ctx, req.Coordinator, req.Epoch); err != nil {
			return v1.WorkloadInfo{}, err
		}
	}
	// single use, whatever happens next; its room stays reserved until the deploy is done
	// (another namespace's bid is as if it did not exist, and left alone)
	b, ok := n.bids.Claim(bidID, ns, time.Now())
	if !ok {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeBidExpired, "bid %s is unknown, used or expired; run the auction again", bidID)
	}
	defer n.bids.Done(bidID) // the workload is indexed now (or did not start): it holds its own room
	def := req.Workload
	if def.Namespace == "" {
		def.Namespace = ns
	}
	if def.Namespace != ns {
		return v1.WorkloadInfo{}, v1.BadRequest("workload namespace %q does not match request namespace %q", def.Namespace, ns)
	}
	if err := def.Validate(); err != nil {
		return v1.WorkloadInfo{}, err
	}
	if def.Type != b.Type || def.Lifecycle != b.Lifecycle {
		return v1.WorkloadInfo{}, v1.BadRequest("bid %s was for %s/%s, not %s/%s", bidID, b.Type, b.Lifecycle, def.Type, def.Lifecycle)
	}
	res, err := def.WantedResources()
	if err != nil {
		return v1.WorkloadInfo{}, err
	}
	if !sameResources(res, b.Res) {
		return v1.WorkloadInfo{}, v1.BadRequest("bid %s was for resources %s, not %s: run the auction with the workload's resources", bidID, describeResources(b.Res), describeResources(res))
	}
	e, ok := n.nexlets.Get(b.NexletID, time.Now())
	if !ok {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeUnavailable, "nexlet %s is no longer registered", b.NexletID)
	}
	// Never trust the client: check the start request against the nexlet's own schema.
	if err := schema.Validate(e.Reg.StartRequestSchema, def.StartRequest); err != nil {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeSchemaInvalid, "%s", err.Error())
	}
	if err := v1.ValidateRequestID(req.RequestID); err != nil {
		return v1.WorkloadInfo{}, err
	}
	if _, shared := n.cfg.Store.(ClusterStore); def.Disconnect == v1.DisconnectStop && !shared {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeNotImplemented, "disconnect: stop is a cluster feature: node %s keeps its records to itself (start nexd with --state kv)", n.cfg.NodeID)
	}
	if req.Takeover != nil {
		return n.moves.Takeover(ctx, b.NexletID, def, req.Takeover)
	}
	return n.work.Deploy(ctx, ns, b.NexletID, def, req.RequestID)
}

// handleRelease drops a bid its client will not use, freeing the room it held. A bid a
// deploy has claimed stays until the deploy is done.
func (n *Node) handleRelease(_ context.Context, r *svc.Request, _ *struct{}) (struct{}, error) {
	if !strings.HasPrefix(r.ID, n.bidPrefix) {
		return struct{}{}, svc.ErrNoReply
	}
	n.bids.Release(r.ID, r.Namespace)
	return struct{}{}, nil
}

// handleList is the LIST verb: the listing room (package listing) answers.
func (n *Node) handleList(ctx context.Context, r *svc.Request, req *v1.ListRequest) (json.RawMessage, error) {
	return n.lister.List(ctx, r.Namespace, req)
}

func (n *Node) handlePing(context.Context, *svc.Request, *struct{}) (v1.NodeInfo, error) {
	return n.Info(false), nil
}

// uniqueSorted is in sorted, without repeats.
func uniqueSorted(in []string) []string {
	out := slices.Sorted(slices.Values(in))
	return slices.Compact(out)
}

// settle holds back, in a node's first moments, the answers a caller counts on every node
// for: a "not here" (404) and a list. They name the peers the node knows, and the caller
// stops waiting once every node named has answered; a node started a moment ago may know
// none yet (its peers answer its first announcement within a round trip), and its answer,
// first to arrive, would end the lookup with a "not found" or a list of its own workloads
// only. A chaos run saw it: a group create answered "not found" while the coordinator
// created the group, and the client's second try was told the group existed.
func (n *Node) settle(verb string, h svc.Func) svc.Func {
	return func(ctx context.Context, r *svc.Request, data []byte) (any, error) {
		resp, err := h(ctx, r, data)
		if wait := time.Until(n.servingAt.Add(settleWindow(n.cfg.AnnounceInterval))); wait > 0 && (verb == v1.VerbList || v1.IsNotFound(err)) {
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			case <-n.done:
			}
		}
		return resp, err
	}
}

// settleWindow is how long a new node holds back the answers settle names: its peers'
// answers to its first announcement take a round trip (86 ms was the gap the chaos run
// fell into, with no answers asked for). Short, because a shell's completion asks a
// just-started node with half a second to spare.
func settleWindow(announce time.Duration) time.Duration { return min(announce, 250*time.Millisecond) }
