// Package copies is the room of this node's own copies of workloads: the reconciliation
// of a (re-)registered nexlet with the node's records, the watch of the node's records
// that other nodes write (a takeover's moved mark, a removal, a stop), and the stop of a
// copy that moved away or lost its record, or the keeping of one whose move failed.
//
// It owns its locks (one reconciliation of a nexlet at a time, one stop of a moved copy
// at a time, the watch). What the node does for it (index a record, start or stop a
// workload on its nexlet, record how one finished) goes through Host.
package copies

import (
	"context"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"github.com/nexrun/nex/pkg/node/room"
)

// Host is what the room asks of its node.
type Host interface {
	// Index puts a copy of rec in the node's index, with what it holds of the node.
	Index(rec records.Record)
	// StopWorkload stops rec on its nexlet, recording the intent first.
	StopWorkload(ctx context.Context, rec records.Record, req v1.StopRequest) (v1.WorkloadInfo, error)
	// StartOnNexlet starts rec on its nexlet, as its restarts-th restart.
	StartOnNexlet(ctx context.Context, rec records.Record, restarts uint64) (v1.WorkloadInfo, error)
	// RecordFinished records that workload wid of nexletID ended for good, as told.
	RecordFinished(ctx context.Context, nexletID, wid string, told *v1.WorkloadInfo)
}

// Config wires a Copies.
type Config struct {
	room.Base
	Conn *natsconn.Conn // asks the local nexlets
	Host Host
}

// Copies is the room.
type Copies struct {
	Config

	mu            sync.Mutex
	reconciles    map[string]*sync.Mutex // one reconciliation at a time per nexlet
	reconciling   sync.Map               // nexlet ID -> struct{}: ReconcileLater is trying again
	stoppingMoved sync.Map               // workload ID -> struct{}: StopMoved is stopping this node's copy

	watchMu     sync.Mutex
	watchCancel context.CancelFunc // ends the watch of this node's records (Watch)
}

// New returns the room.
func New(cfg Config) *Copies {
	return &Copies{Config: cfg, reconciles: map[string]*sync.Mutex{}}
}

// StopBound is how long a stop of rec may take: its grace period (the request's, else
// the one its start request names, else the default), plus room for the nexlet to answer.
func StopBound(rec records.Record, req v1.StopRequest) time.Duration {
	grace := time.Duration(rec.Stop(req).GracePeriod)
	if grace <= 0 {
		grace = rec.Definition.Grace()
	}
	if grace <= 0 {
		grace = DefaultGrace
	}
	return grace + registry.CallTimeout
}

// DefaultGrace is the grace period of a stop when neither the request nor the workload
// names one (nexlet-native's --stop-grace default).
const DefaultGrace = 10 * time.Second
