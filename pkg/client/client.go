// Package client is the typed Go client of the nex API v1, used by the nex CLI and by
// users' automation.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/retry"
	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/schema"
	"github.com/nexrun/nex/pkg/seal"
)

// NoAgentsMessage is the message of the no_placement error.
const NoAgentsMessage = "no agents available for workload placement"

// Client talks to the nodes of one namespace.
type Client struct {
	nc *natsconn.Conn
	ns string
	// Straggler bounds how long a fan-out waits for nodes that stopped answering
	// after the first reply arrived.
	Straggler time.Duration
	// OnAck, when set, is told when the node that owns a workload has acknowledged a stop,
	// info or clone of it, and by when it will answer (progress for people).
	OnAck func(Ack)
}

// Ack is a node's acknowledgement that it owns a workload a request is about, and the
// time by which it will answer.
type Ack = svc.Ack

// New returns a client for namespace ns over nc. A request the server denies (a NATS user
// without the right to publish to the subject, or to receive the replies) is reported when
// it times out; a client made by On over a connection made once with natsconn.Watch
// reports it at once.
func New(nc *nats.Conn, ns string) (*Client, error) { return On(natsconn.Plain(nc), ns) }

// On returns a client for namespace ns over a connection wrapped by natsconn.Watch (or
// natsconn.Plain). Make the Conn once and give it to every client.
func On(nc *natsconn.Conn, ns string) (*Client, error) {
	if err := v1.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	return &Client{nc: nc, ns: ns, Straggler: 500 * time.Millisecond}, nil
}

// Connected reports whether the NATS connection is up.
func (c *Client) Connected() bool { return c.nc.IsConnected() }

// Namespace is the client's namespace.
func (c *Client) Namespace() string { return c.ns }

// Declines are the reasons nodes gave for not bidding.
type Declines []v1.AuctionReply

// Auction asks every node for a bid and returns the bids and the declines.
func (c *Client) Auction(ctx context.Context, req v1.AuctionRequest) ([]v1.Bid, Declines, error) {
	if err := req.Validate(); err != nil {
		return nil, nil, err
	}
	var bids []v1.Bid
	var declines Declines
	ask := func() error {
		return svc.FanOut(ctx, c.nc, v1.ControlSubject(c.ns, v1.VerbAuction), req, c.Straggler, func(r svc.Reply) bool {
			var ar v1.AuctionReply
			if err := r.Decode(&ar); err != nil {
				declines = append(declines, v1.AuctionReply{NodeID: r.NodeID, Decline: err.Error()})
				return false
			}
			if ar.Bid != nil {
				bids = append(bids, *ar.Bid)
			} else {
				declines = append(declines, ar)
			}
			return false
		})
	}
	err := ask()
	// No node at all may be a node between servers (its server went, it reconnects within
	// a quarter of a second): asked again for noNodeWait before "no agents" is the answer
	// (a fault test: three starts failed so while the node moved off the KV leader's server).
	backoff := retry.Backoff{First: 50 * time.Millisecond, Max: 400 * time.Millisecond}
	for began := time.Now(); errors.Is(err, svc.ErrNoResponders) && time.Since(began) < noNodeWait && backoff.Wait(ctx, 0); {
		err = ask()
	}
	if errors.Is(err, svc.ErrNoResponders) {
		return nil, nil, nil // no node: no bid, and the start says no agents are available
	}
	sort.Slice(declines, func(i, j int) bool { return declines[i].NodeID < declines[j].NodeID })
	return bids, declines, err
}

// soon says whether a node declined only for a moment (a nexlet still registering).
func (d Declines) soon() bool {
	return slices.ContainsFunc(d, func(r v1.AuctionReply) bool { return r.Soon })
}

// noNodeWait is how long an auction no node answers, or (for a start) whose only
// bidders are still registering, is asked again.
const noNodeWait = 1500 * time.Millisecond

// NoPlacementError builds the no_placement error carrying every node's decline.
func NoPlacementError(d Declines) *v1.Error {
	e := v1.Errorf(v1.CodeNoPlacement, NoAgentsMessage)
	if d == nil {
		d = Declines{}
	}
	e.Details = d
	return e
}

// StartWorkload auctions def among the nodes, picks a random bid, seals the environment
// for the winning nexlet, validates the start request against its schema and deploys.
// It auctions again once if the bid expired.
func (c *Client) StartWorkload(ctx context.Context, def v1.WorkloadDefinition) (*v1.WorkloadInfo, error) {
	return c.start(ctx, def, "", nil)
}

// StartOnce is StartWorkload made idempotent by requestID: started again with the same
// key in the same namespace (a retry after a timeout, a script run twice), it returns the
// workload the first start made, never a second one, and before is true.
func (c *Client) StartOnce(ctx context.Context, def v1.WorkloadDefinition, requestID string) (w *v1.WorkloadInfo, before bool, err error) {
	if err := v1.ValidateRequestID(requestID); err != nil {
		return nil, false, err
	}
	w, err = c.start(ctx, def, requestID, nil)
	if errors.As(err, new(*startedBefore)) {
		return w, true, nil
	}
	return w, false, err
}

// startedBefore marks the workload a start returns because its request ID was used.
type startedBefore struct{}

func (*startedBefore) Error() string { return "started before" }

// existing returns the workload a start with the same request ID made, marked with
// startedBefore (with its definition, so a caller can tell whether it asked for the same).
func (c *Client) existing(ctx context.Context, wid string) (*v1.WorkloadInfo, error) {
	info, err := c.WorkloadInfo(ctx, wid)
	if err != nil {
		return nil, fmt.Errorf("the request ID was used by workload %s, which cannot be read: %w", wid, err)
	}
	return info, &startedBefore{}
}

// Differs says how def differs from the definition a workload was started with, in what
// a person would notice (name, type, lifecycle, description, tags), or "" when it does
// not. Start requests are not compared: their sealed values differ each time.
func Differs(def v1.WorkloadDefinition, had *v1.WorkloadDefinition) string {
	if had == nil {
		return ""
	}
	var d []string
	for _, f := range [][3]string{{"name", had.Name, def.Name}, {"type", had.Type, def.Type}, {"lifecycle", had.Lifecycle, def.Lifecycle}, {"description", had.Description, def.Description}} {
		if f[1] != f[2] {
			d = append(d, fmt.Sprintf("%s %q, not %q", f[0], f[1], f[2]))
		}
	}
	if !maps.Equal(had.Tags, def.Tags) {
		d = append(d, "other tags")
	}
	return strings.Join(d, ", ")
}

// start places def; prepare, when set, may rewrite the definition for the chosen bid
// (a clone re-sealing its values for the new nexlet).
func (c *Client) start(ctx context.Context, def v1.WorkloadDefinition, requestID string, prepare func(v1.Bid, *v1.WorkloadDefinition) error) (*v1.WorkloadInfo, error) {
	def.Namespace = c.ns
	if err := def.Validate(); err != nil {
		return nil, err
	}
	res, err := def.WantedResources()
	if err != nil {
		return nil, err
	}
	ask := v1.AuctionRequest{Type: def.Type, Lifecycle: def.Lifecycle, Tags: def.Tags, Ports: def.Ports(), RequestID: requestID, Resources: res}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		bids, declines, err := c.Auction(ctx, ask)
		// no bid while a nexlet registers again (its node reconnected, and reconciles it)
		// is asked again for a moment (a fault test: four starts failed so, 0.1 s after
		// the node moved off the KV leader's server)
		backoff := retry.Backoff{First: 50 * time.Millisecond, Max: 400 * time.Millisecond}
		for began := time.Now(); err == nil && len(bids) == 0 && declines.soon() && time.Since(began) < noNodeWait && backoff.Wait(ctx, 0); {
			bids, declines, err = c.Auction(ctx, ask)
		}
		if err != nil {
			return nil, err
		}
		for _, d := range declines {
			if d.Existing != nil {
				return c.existing(ctx, d.Existing.ID)
			}
		}
		if len(bids) == 0 {
			return nil, NoPlacementError(declines)
		}
		b := RankBids(bids)[0]
		c.ReleaseBids(ctx, bids, b.BidID, res)
		placed, err := c.forBid(def, b, prepare)
		if err != nil {
			c.ReleaseBids(ctx, []v1.Bid{b}, "", res) // nothing is deployed on it
			return nil, err
		}
		var info v1.WorkloadInfo
		lastErr = svc.RetryBusy(ctx, func() error { // the bid stays the namespace's until it expires
			return svc.Call(ctx, c.nc, v1.ControlSubject(c.ns, v1.VerbDeploy, b.BidID), v1.DeployRequest{Workload: placed, RequestID: requestID}, &info)
		})
		if lastErr == nil {
			return &info, nil
		}
		if holder := conflictHolder(lastErr); requestID != "" && holder != "" {
			return c.existing(ctx, holder)
		}
		if v1.AsError(lastErr).ErrorCode != v1.CodeBidExpired {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

// forBid is def as it is deployed on bid b: checked against its nexlet's schema, made
// ready (prepare, when set), its environment sealed for its nexlet.
func (c *Client) forBid(def v1.WorkloadDefinition, b v1.Bid, prepare func(v1.Bid, *v1.WorkloadDefinition) error) (v1.WorkloadDefinition, error) {
	if err := schema.Validate(b.StartRequestSchema, def.StartRequest); err != nil {
		return def, v1.Errorf(v1.CodeSchemaInvalid, "%s", err.Error())
	}
	if prepare != nil {
		if err := prepare(b, &def); err != nil {
			return def, err
		}
	}
	if b.XKey != "" {
		sealed, err := seal.Environment(def.StartRequest, b.XKey, c.ns)
		if err != nil {
			return def, err
		}
		if len(sealed) > v1.MaxStartRequestBytes && len(def.StartRequest) <= v1.MaxStartRequestBytes {
			// what the user wrote is under the limit: say what took it past
			return def, v1.Errorf(v1.CodeTooLarge, "start_request is %d bytes, and %d with its environment values sealed (each grows by a third and about 100 bytes); the limit is %d: keep large values in artifacts or fewer variables", len(def.StartRequest), len(sealed), v1.MaxStartRequestBytes)
		}
		def.StartRequest = sealed
	}
	return def, nil
}

// conflictHolder is the workload named by a conflict over a request ID ("" otherwise).
func conflictHolder(err error) string {
	if !v1.IsCode(err, v1.CodeConflict) {
		return ""
	}
	if d, ok := v1.AsError(err).Details.(map[string]any); ok {
		if id, ok := d["workload_id"].(string); ok {
			return id
		}
	}
	return ""
}

// ListWorkloads lists the workloads of the namespace on every node (all namespaces
// from system), optionally of one type, with their metadata.
func (c *Client) ListWorkloads(ctx context.Context, typ string) ([]v1.WorkloadInfo, error) {
	return c.List(ctx, v1.ListRequest{Type: typ})
}

// List lists workloads as req says (a type filter; metadata or not).
func (c *Client) List(ctx context.Context, req v1.ListRequest) ([]v1.WorkloadInfo, error) {
	list, _, err := c.ListReport(ctx, req)
	return list, err
}

// ListReport is List that also names the nodes that did not answer in time, though the
// others named them alive, and those that answered with an error: their workloads are not
// in the list.
func (c *Client) ListReport(ctx context.Context, req v1.ListRequest) (list []v1.WorkloadInfo, missing []string, err error) {
	out := []v1.WorkloadInfo{}
	var firstErr error
	var failed []string // nodes that answered with an error: their workloads are not listed
	missing, err = svc.FanOutMissing(ctx, c.nc, v1.ControlSubject(c.ns, v1.VerbList), req, c.Straggler, func(r svc.Reply) bool {
		lr, err := decodeList(r)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			if r.NodeID != "" {
				failed = append(failed, r.NodeID)
			}
			return false
		}
		if len(out) == 0 {
			out = lr.Workloads
		} else {
			out = append(out, lr.Workloads...)
		}
		return false
	})
	out = onePerID(out)
	if err != nil {
		return nil, nil, c.noNode(err, "list workloads")
	}
	if len(out) == 0 && firstErr != nil {
		return nil, missing, firstErr
	}
	// a node that failed its list (shutting down, say) is short of its workloads as one
	// that did not answer is: said, never a shorter list that looks whole
	for _, id := range failed {
		if !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	// pdqsort on a total order: far fewer moves of these large structs than a stable sort
	slices.SortFunc(out, func(a, b v1.WorkloadInfo) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, missing, nil
}

// decodeList decodes a node's list reply into a slice sized for it, not grown as it is
// decoded: each workload is an object that starts with its ID, as nodes encode them (a
// wrong count costs only a slice that grows, or room unused).
func decodeList(r svc.Reply) (v1.ListReply, error) {
	var lr v1.ListReply
	body, err := r.Body()
	if err != nil {
		return lr, err
	}
	lr.Workloads = make([]v1.WorkloadInfo, 0, min(bytes.Count(body, []byte(`{"id":`)), len(body)/64))
	if err := json.Unmarshal(body, &lr); err != nil {
		return lr, v1.Errorf(v1.CodeInternal, "decode reply: %v", err)
	}
	return lr, nil
}

// lookup sends a request about one workload to every node and returns the owner's
// answer; only the owner's answer ends the wait once it has acknowledged (see svc.Lookup).
func (c *Client) lookup(ctx context.Context, verb, wid string, req, resp any) error {
	if err := v1.ValidateToken("workload ID", wid); err != nil {
		return err
	}
	return c.one(ctx, v1.ControlSubject(c.ns, verb, wid), req, resp, fmt.Sprintf("workload %s not found in namespace %s", wid, c.ns))
}

// one asks every node about one thing and returns the answer of the node that has it;
// when every node says 404, it returns not_found with notFound as the message.
func (c *Client) one(ctx context.Context, subject string, req, resp any, notFound string) error {
	err := svc.RetryBusy(ctx, func() error { return svc.Lookup(ctx, c.nc, subject, req, resp, c.Straggler, c.OnAck) })
	if v1.IsNotFound(err) && v1.AsError(err).Message == "not found" {
		return v1.NotFound("%s", notFound)
	}
	return c.noNode(err, "find "+subject[strings.LastIndexByte(subject, '.')+1:])
}

// StopWorkload stops a workload and returns when its processes are gone. A workload
// whose record is on a node the others do not hear from (stopped, lost, paused or cut
// off), which no node has, is stopped by record: a node that said so marks that node's
// record stopping (svc.HeaderStopAway), and the answer is "stopping", with a note: that node
// stops it when it is back, and nothing starts it elsewhere meanwhile.
func (c *Client) StopWorkload(ctx context.Context, wid string, req v1.StopRequest) (*v1.WorkloadInfo, error) {
	var info v1.WorkloadInfo
	err := c.lookup(ctx, v1.VerbStop, wid, req, &info)
	if owner, by, ok := svc.OwnerDown(err); ok {
		h := nats.Header{svc.HeaderStopAway: []string{owner}, svc.HeaderRecorder: []string{by}}
		err = svc.AskNode(ctx, c.nc, v1.ControlSubject(c.ns, v1.VerbStop, wid), by, h, req, &info)
		if v1.IsNotFound(err) {
			// that node hears from the owner again, or the record changed (moved, gone):
			// the nodes are asked again, once
			err = c.lookup(ctx, v1.VerbStop, wid, req, &info)
		}
	}
	if err != nil {
		return nil, err
	}
	return &info, nil
}

// RemoveWorkload removes a workload that ended for good (a job that ran, a service that
// gave up) with its record and workdir; one that still runs is refused with conflict.
func (c *Client) RemoveWorkload(ctx context.Context, wid string) (*v1.WorkloadInfo, error) {
	info, err := c.WorkloadInfo(ctx, wid)
	if err != nil {
		return nil, err
	}
	if !info.Finished() {
		return nil, v1.Errorf(v1.CodeConflict, "workload %s is %s, not finished: stop it (nex workload stop %s)", wid, info.State, wid)
	}
	return c.StopWorkload(ctx, wid, v1.StopRequest{})
}

// WorkloadInfo returns one workload.
func (c *Client) WorkloadInfo(ctx context.Context, wid string) (*v1.WorkloadInfo, error) {
	var info v1.WorkloadInfo
	if err := c.lookup(ctx, v1.VerbInfo, wid, nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Exec runs a command beside running workload wid (v1.ExecRequest) and returns how it
// ended and what it printed.
func (c *Client) Exec(ctx context.Context, wid string, req v1.ExecRequest) (*v1.ExecReply, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var reply v1.ExecReply
	if err := c.lookup(ctx, v1.VerbExec, wid, req, &reply); err != nil {
		return nil, err
	}
	return &reply, nil
}

// CloneOptions change a clone.
type CloneOptions struct {
	// Tags replace the original's tags when not empty.
	Tags map[string]string
	// Name replaces the original's name when not empty, so the two can be told apart by name.
	Name string
	// StopOriginal stops the original once the clone has started.
	StopOriginal bool
}

// CloneWorkload auctions a copy of a workload's definition, then optionally stops the
// original; the original is untouched if the clone fails to start.
func (c *Client) CloneWorkload(ctx context.Context, wid string, o CloneOptions) (*v1.WorkloadInfo, error) {
	var cr v1.CloneReply
	if err := c.lookup(ctx, v1.VerbClone, wid, v1.CloneRequest{}, &cr); err != nil {
		return nil, err
	}
	def := cr.Definition
	if len(o.Tags) > 0 {
		def.Tags = o.Tags
	}
	if o.Name != "" {
		def.Name = o.Name
		if err := def.Validate(); err != nil {
			return nil, err
		}
	}
	in := c
	if c.ns == v1.SystemNamespace && def.Namespace != "" && def.Namespace != c.ns {
		// the copy stays in the workload's namespace: started under system, a tenant's
		// definition would run with the system namespace's credentials
		copied := *c
		copied.ns = def.Namespace
		in = &copied
	}
	info, err := in.start(ctx, def, "", func(b v1.Bid, d *v1.WorkloadDefinition) error {
		if b.XKey == "" || !seal.Contains(d.StartRequest) {
			return nil
		}
		var resealed v1.CloneReply
		if err := c.lookup(ctx, v1.VerbClone, wid, v1.CloneRequest{ResealFor: b.XKey}, &resealed); err != nil {
			return fmt.Errorf("re-seal the environment for the clone's nexlet: %w", err)
		}
		d.StartRequest = resealed.Definition.StartRequest
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", wid, err)
	}
	if o.StopOriginal {
		if _, err := c.StopWorkload(ctx, wid, v1.StopRequest{}); err != nil {
			return info, fmt.Errorf("clone %s started as %s, but stopping the original: %w", wid, info.ID, err)
		}
	}
	return info, nil
}

// noNode turns a read that no node answered into an unavailable error: nothing is
// known, which is not the same as nothing being there.
func (c *Client) noNode(err error, what string) error {
	if errors.Is(err, svc.ErrNoResponders) {
		where := " (namespace " + c.ns + ")"
		if strings.Contains(what, "node") {
			where = "" // nodes belong to no namespace
		}
		return v1.Errorf(v1.CodeUnavailable, "cannot %s%s: no node answered; is nexd running, and connected to this NATS server and account?", what, where)
	}
	return err
}

// ListNodes pings every node.
func (c *Client) ListNodes(ctx context.Context) ([]v1.NodeInfo, error) {
	out := []v1.NodeInfo{}
	err := svc.FanOut(ctx, c.nc, v1.SystemSubject(v1.VerbPing), nil, c.Straggler, func(r svc.Reply) bool {
		var ni v1.NodeInfo
		if r.Decode(&ni) == nil {
			out = append(out, ni)
		}
		return false
	})
	if err != nil {
		return nil, c.noNode(err, "list nodes")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// NodeInfo returns the full description of one node, schemas included.
func (c *Client) NodeInfo(ctx context.Context, nodeID string) (*v1.NodeInfo, error) {
	if err := v1.ValidateToken("node ID", nodeID); err != nil {
		return nil, err
	}
	var ni v1.NodeInfo
	err := svc.FanOut(ctx, c.nc, v1.SystemSubject(v1.VerbInfo, nodeID), nil, c.Straggler, func(r svc.Reply) bool {
		if r.NodeID != nodeID {
			return false
		}
		return r.Decode(&ni) == nil
	})
	if err != nil {
		return nil, c.noNode(err, "ask for node "+nodeID)
	}
	if ni.NodeID == "" {
		return nil, v1.NotFound("node %s not found", nodeID)
	}
	return &ni, nil
}

// Lameduck puts node nodeID in lameduck mode: it stops bidding at once, and stops its
// workloads and exits once delay has passed.
func (c *Client) Lameduck(ctx context.Context, nodeID string, delay time.Duration) (*v1.LameduckReply, error) {
	if err := v1.ValidateToken("node ID", nodeID); err != nil {
		return nil, err
	}
	var reply v1.LameduckReply
	if err := c.one(ctx, v1.SystemSubject(v1.VerbLameduck, nodeID), v1.LameduckRequest{Delay: v1.Duration(delay)}, &reply, "node "+nodeID+" not found"); err != nil {
		return nil, err
	}
	return &reply, nil
}

// onePerID keeps one entry per workload: a node's own report over the coordinator's
// "unknown" entry from the records of a node it no longer hears from.
func onePerID(list []v1.WorkloadInfo) []v1.WorkloadInfo {
	at := make(map[string]int, len(list))
	out := list[:0]
	for _, w := range list {
		i, seen := at[w.ID]
		switch {
		case !seen:
			at[w.ID] = len(out)
			out = append(out, w)
		case out[i].State == v1.StateUnknown && w.State != v1.StateUnknown:
			out[i] = w
		}
	}
	return out
}
