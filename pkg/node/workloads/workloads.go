// Package workloads is the room of the workloads on this node, as records and as
// processes of its nexlets: a start deployed (its request ID claimed, its namespace's
// quota checked, its record written while its nexlet starts it), a stop recorded before
// anything is stopped, records changed by compare-and-set, a workload that ended
// recorded as it ended, credentials minted and renewed, the node's own lookups ("not
// here", naming the node that holds it), and the calls to the local nexlets.
//
// What the node does for it in other rooms (a copy that moved given up, moved marks
// removed, an environment escrowed) goes through Host.
package workloads

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nkeys"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node/history"
	"github.com/nexrun/nex/pkg/node/members"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/room"
	"github.com/nexrun/nex/pkg/node/secrets"
)

// Host is what the room asks of the node's other rooms.
type Host interface {
	// LeaveMoved gives up this node's copy of a workload another node holds now.
	LeaveMoved(rec records.Record, why string)
	// DropMarks removes the moved marks other nodes keep of rec, before its record goes.
	DropMarks(rec records.Record) error
	// DropMarksLater removes them, then rec's record, once the store answers.
	DropMarksLater(rec records.Record)
	// Escrow keeps rec's sealed environment, sealed for the cluster's secrets key.
	Escrow(ctx context.Context, rec records.Record)
}

// Counters count what the room did, for the node's metrics.
type Counters struct {
	Starts, StartFailures, Stops atomic.Uint64
}

// Config wires a Workloads.
type Config struct {
	room.Base
	Members  *members.Members
	Conn     *natsconn.Conn   // asks the local nexlets
	History  *history.History // each namespace's streams, made before its first workload
	Secrets  *secrets.Store   // nil without a secrets key
	Minter   creds.Minter
	CredsTTL time.Duration
	XKey     nkeys.KeyPair // seals credentials for nexlets
	XKeyPub  string
	Quotas   map[string]v1.Quota
	// Held is what a workload asking for res holds on this node (the node's default limits).
	Held     func(res *v1.Resources) *v1.Resources
	Counters *Counters
	Host     Host
}

// Workloads is the room.
type Workloads struct {
	Config

	quotaMu sync.Mutex // starts of a namespace with a quota are admitted one at a time
	claimMu sync.Mutex // a start's request ID is claimed and its workload indexed at once

	expiring atomic.Bool // a removal of expired finished workloads is under way
}

// New returns the room.
func New(cfg Config) *Workloads { return &Workloads{Config: cfg} }
