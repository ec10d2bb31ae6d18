// Package moves is the room of workloads moving between nodes through this one: a
// takeover that moves a lost or draining node's workload here (takeover.go), a drain
// that moves this node's workloads away (drain.go), and the escrow of a workload's
// sealed environment that lets another node open it (escrow.go).
//
// What the node does for it (index a record, start a workload on a nexlet, ask a
// nexlet, publish an event) goes through Host; this node's own copies (claiming a start,
// stopping a copy that moved) through the copies room.
package moves

import (
	"context"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node/copies"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/room"
	"github.com/nexrun/nex/pkg/node/secrets"
)

// Host is what the room asks of its node.
type Host interface {
	// Index puts a copy of rec in the node's index, with what it holds of the node.
	Index(rec records.Record)
	// StartOnNexlet starts rec on its nexlet, as its restarts-th restart.
	StartOnNexlet(ctx context.Context, rec records.Record, restarts uint64) (v1.WorkloadInfo, error)
	// Ask sends one request to a local nexlet (op on workloadID, when given).
	Ask(ctx context.Context, nexletID, op, workloadID string, req, resp any) error
	// UpdateRecord changes the record of an indexed workload by compare-and-set.
	UpdateRecord(ctx context.Context, wid string, change func(*records.Record)) (records.Record, error)
	// PublishEvent publishes a workload's lifecycle event.
	PublishEvent(ev v1.Event)
	// Unplaced publishes that rec could not be placed, and why.
	Unplaced(rec records.Record, why string)
}

// Config wires a Moves.
type Config struct {
	room.Base
	Conn    *natsconn.Conn // the node's connection: auctions of other nodes
	Secrets *secrets.Store // nil without a secrets key
	Copies  *copies.Copies
	Host    Host
}

// Moves is the room.
type Moves struct{ Config }

// New returns the room.
func New(cfg Config) *Moves { return &Moves{Config: cfg} }
