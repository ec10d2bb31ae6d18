// Package auction is the room of this node's bids: its standing (running, or lameduck)
// and its tags, what it offers its workloads (its capacity), the answer to an auction (a
// bid, or why not), and a bid claimed by a deploy or released. The decisions themselves
// are the placement room's pure functions; the bids given are its Book.
package auction

import (
	"strings"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/index"
	"github.com/nexrun/nex/pkg/node/placement"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"github.com/nexrun/nex/pkg/schema"
)

// Config wires an Auctioneer.
type Config struct {
	NodeID, Name string
	Tags         map[string]string // the node's own, checked
	BidTTL       time.Duration
	Placement    string // v1.PlacementLeastLoaded or v1.PlacementRandom
	// Memory and CPUs the node offers, less what it keeps for itself.
	Memory, ReserveMemory    v1.ByteSize
	CPUs, ReserveCPU         float64
	DefaultLimits, MaxLimits v1.Resources
	RequireIsolation         []string            // namespaces ("*": every one) run only isolated here
	Quotas                   map[string]v1.Quota // nexd --namespace-quota: a namespace's unused bids hold no more
	Index                    *index.Index
	Nexlets                  *registry.Registry
	// Existing finds the workload of a namespace started here with a request ID: an
	// auction of a retried start answers with it.
	Existing func(ns, requestID string) (records.Record, bool)
	// Observe takes how long an auction took (the node's metrics).
	Observe func(time.Duration)
}

// Auctioneer is the room.
type Auctioneer struct {
	Config
	prefix string // starts every bid ID of the node (BidPrefix)
	bids   *placement.Book

	mu    sync.Mutex // the standing and the tags; an auction decides under it
	state string
	tags  map[string]string
}

// New returns the room of a running node.
func New(cfg Config) *Auctioneer {
	return &Auctioneer{Config: cfg, prefix: BidPrefix(cfg.NodeID), bids: placement.NewBook(), state: v1.NodeRunning, tags: cfg.Tags}
}

// BidPrefix starts every bid ID of a node, so a DEPLOY finds its node without a lookup:
// the tail of a node key (the last characters vary the most), or the whole ID when short.
func BidPrefix(nodeID string) string {
	return nodeID[max(0, len(nodeID)-10):]
}

// Mine says whether bidID is one of this node's.
func (a *Auctioneer) Mine(bidID string) bool { return strings.HasPrefix(bidID, a.prefix) }

// Expire forgets the bids that expired by now.
func (a *Auctioneer) Expire(now time.Time) { a.bids.Expire(now) }

// Release drops a bid of ns its client will not use, freeing the room it held. A bid a
// deploy has claimed stays until the deploy is done.
func (a *Auctioneer) Release(ns, bidID string) { a.bids.Release(bidID, ns) }

// Claim claims bid bidID of namespace ns for def, once, whatever happens next: its room
// stays reserved until done is called (the workload is indexed by then, or did not
// start, and holds its own room). Another namespace's bid is as if it did not exist, and
// is left alone. def gets ns when it names no namespace, and is checked against the bid
// (type, lifecycle, resources) and against the start request schema of the bid's nexlet:
// the client is never trusted.
func (a *Auctioneer) Claim(ns, bidID string, def *v1.WorkloadDefinition) (nexletID string, done func(), err error) {
	b, ok := a.bids.Claim(bidID, ns, time.Now())
	if !ok {
		return "", nil, v1.Errorf(v1.CodeBidExpired, "bid %s is unknown, used or expired; run the auction again", bidID)
	}
	done = func() { a.bids.Done(bidID) }
	if err := a.check(ns, bidID, b, def); err != nil {
		done()
		return "", nil, err
	}
	return b.NexletID, done, nil
}

func (a *Auctioneer) check(ns, bidID string, b placement.Bid, def *v1.WorkloadDefinition) error {
	if def.Namespace == "" {
		def.Namespace = ns
	}
	if def.Namespace != ns {
		return v1.BadRequest("workload namespace %q does not match request namespace %q", def.Namespace, ns)
	}
	if err := def.Validate(); err != nil {
		return err
	}
	if def.Type != b.Type || def.Lifecycle != b.Lifecycle {
		return v1.BadRequest("bid %s was for %s/%s, not %s/%s", bidID, b.Type, b.Lifecycle, def.Type, def.Lifecycle)
	}
	res, err := def.WantedResources()
	if err != nil {
		return err
	}
	if !sameResources(res, b.Res) {
		return v1.BadRequest("bid %s was for resources %s, not %s: run the auction with the workload's resources", bidID, describeResources(b.Res), describeResources(res))
	}
	e, ok := a.Nexlets.Get(b.NexletID, time.Now())
	if !ok {
		return v1.Errorf(v1.CodeUnavailable, "nexlet %s is no longer registered", b.NexletID)
	}
	// Never trust the client: check the start request against the nexlet's own schema.
	if err := schema.Validate(e.Reg.StartRequestSchema, def.StartRequest); err != nil {
		return v1.Errorf(v1.CodeSchemaInvalid, "%s", err.Error())
	}
	return nil
}
