package node

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/micro"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/registry"
	"github.com/nexrun/nex/pkg/seal"
)

// nexletCallTimeout bounds a request from the node to a local nexlet.
const nexletCallTimeout = registry.CallTimeout

// nexletGap is how long the node keeps asking a registered nexlet that has no
// subscription (registry.CallGap).
const nexletGap = registry.CallGap

func (n *Node) addService() error {
	srv, err := svc.NewServer(n.nc.Conn, svc.Config{
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
		return svc.Endpoint{Name: verb, Subject: subject, Tokens: tokens, Handler: h, Concurrent: concurrent, Headers: n.announcer.Headers, EveryInstance: true}
	}
	// the verbs on one workload stand beside their handlers (workloadEndpoints)
	eps := append(n.workloadEndpoints(ep), []svc.Endpoint{
		ep(v1.VerbAuction, "", svc.Handle(n.auction.Auction), 0),
		ep(v1.VerbList, "", svc.Handle(n.handleList), handlerConcurrency),
		ep(v1.VerbLameduck, "node ID", svc.Handle(n.handleLameduck), handlerConcurrency),
		ep(v1.VerbGroup, "group ID", svc.Handle(n.handleGroup), handlerConcurrency),
		ep(v1.VerbGroups, "", svc.Handle(func(ctx context.Context, r *svc.Request, _ *struct{}) ([]v1.GroupStatus, error) {
			if n.coord == nil {
				return nil, noGroups(n.cfg.NodeID)
			}
			return n.coord.HandleGroups(ctx, r) // the namespace's replica groups, from the coordinator
		}), handlerConcurrency),
		ep(v1.VerbUsage, "", svc.Handle(n.handleUsage), 0),
		{Name: v1.VerbBundleBucket, Subject: v1.ControlWildcard(v1.VerbBundleBucket, false), Tokens: svc.ControlTokens(""),
			Handler: svc.Handle(n.handleBundleBucket), Concurrent: 4},
		{Name: v1.VerbPing, Subject: v1.SystemSubject(v1.VerbPing), Handler: svc.Handle(n.handlePing), Headers: n.announcer.Headers, EveryInstance: true},
		{Name: v1.VerbDeploy, Subject: v1.ControlWildcard(v1.VerbDeploy, true), Tokens: svc.ControlTokens("bid ID"),
			Handler: svc.Handle(func(ctx context.Context, r *svc.Request, req *v1.DeployRequest) (v1.WorkloadInfo, error) {
				return n.deploy(ctx, r, req, false)
			}), Concurrent: handlerConcurrency, EveryInstance: true,
			PerNamespace: perNamespace, Owns: func(_, bid string) bool { return n.auction.Mine(bid) }},
		{Name: v1.VerbTakeover, Subject: v1.SystemSubject(v1.VerbTakeover, "*"), Tokens: svc.ControlTokens("bid ID"),
			Handler: svc.Handle(func(ctx context.Context, r *svc.Request, req *v1.DeployRequest) (v1.WorkloadInfo, error) {
				return n.deploy(ctx, r, req, true)
			}), Concurrent: handlerConcurrency, EveryInstance: true},
		{Name: v1.VerbRelease, Subject: v1.ControlWildcard(v1.VerbRelease, true), Tokens: svc.ControlTokens("bid ID"),
			Handler: svc.Handle(n.handleRelease), EveryInstance: true, FireAndForget: true}, // a bid that holds no resources is let go unasked
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

// handlerConcurrency bounds the requests of one endpoint handled at once; perNamespace
// is how many one namespace may have in flight of a verb that can wait long (a stop, an
// exec, a deploy fetching artifacts, a clone) instead (svc.Endpoint.PerNamespace).
const (
	handlerConcurrency = 256
	perNamespace       = 64
)

// deploy answers DEPLOY (takeover false) and TAKEOVER (true): it starts a workload on
// the bid it claims. A DEPLOY may not carry a takeover (a tenant's moved its workloads):
// a node's move of a workload (the coordinator's of a lost node's, a draining node's of
// its own) comes on the system namespace's TAKEOVER, which tenants cannot publish to,
// for the workload's own namespace.
func (n *Node) deploy(ctx context.Context, r *svc.Request, req *v1.DeployRequest, takeover bool) (v1.WorkloadInfo, error) {
	ns, bidID := r.Namespace, r.ID
	if !n.auction.Mine(bidID) {
		return v1.WorkloadInfo{}, svc.ErrNoReply
	}
	switch subject := v1.SystemSubject(v1.VerbTakeover, "<bid_id>"); {
	case !takeover && req.Takeover != nil:
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeForbidden, "deploy: a takeover comes from the cluster's nodes only, on %s", subject)
	case takeover && (ns != v1.SystemNamespace || req.Takeover == nil):
		return v1.WorkloadInfo{}, v1.BadRequest("takeover: a deploy that carries a takeover, on %s", subject)
	case takeover:
		if err := v1.ValidateNamespace(req.Workload.Namespace); err != nil {
			return v1.WorkloadInfo{}, err
		}
		ns = req.Workload.Namespace
	}
	if req.Coordinator != "" || req.Epoch != 0 {
		if err := n.checkCoordinator(ctx, req.Coordinator, req.Epoch); err != nil {
			return v1.WorkloadInfo{}, err
		}
	}
	def := req.Workload
	nexletID, done, err := n.auction.Claim(ns, bidID, &def)
	if err != nil {
		return v1.WorkloadInfo{}, err
	}
	defer done() // the workload is indexed now (or did not start): it holds its own room
	if err := v1.ValidateRequestID(req.RequestID); err != nil {
		return v1.WorkloadInfo{}, err
	}
	if err := seal.CheckNew(def.StartRequest, nil); err != nil && req.Takeover == nil {
		return v1.WorkloadInfo{}, v1.BadRequest("%v", err)
	}
	if _, shared := n.cfg.Store.(ClusterStore); def.Disconnect == v1.DisconnectStop && !shared {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeNotImplemented, "disconnect: stop is a cluster feature: node %s keeps its records to itself (start nexd with --state kv)", n.cfg.NodeID)
	}
	if req.Takeover != nil {
		return n.moves.Takeover(ctx, nexletID, def, req.Takeover)
	}
	return n.work.Deploy(ctx, ns, nexletID, def, req.RequestID)
}

// handleRelease drops a bid its client will not use (the auction room's Release).
func (n *Node) handleRelease(_ context.Context, r *svc.Request, _ *struct{}) (struct{}, error) {
	if !n.auction.Mine(r.ID) {
		return struct{}{}, svc.ErrNoReply
	}
	n.auction.Release(r.Namespace, r.ID)
	return struct{}{}, nil
}

// handleList is the LIST verb: the listing room (package listing) answers.
func (n *Node) handleList(ctx context.Context, r *svc.Request, req *v1.ListRequest) (json.RawMessage, error) {
	return n.lister.List(ctx, r.Namespace, req)
}

func (n *Node) handlePing(context.Context, *svc.Request, *struct{}) (v1.NodeInfo, error) {
	return n.Info(false), nil
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
