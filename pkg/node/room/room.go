// Package room holds what the node's rooms (the packages beside it under pkg/node) share
// of their node: its lifetime, its log and identity, its records, its index and its
// registry of nexlets, and what it is doing with a workload or a nexlet at the moment.
package room

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"github.com/nexrun/nex/pkg/node/index"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
)

// Base is what a room is given of its node.
type Base struct {
	Ctx     context.Context // ends when the node stops
	WG      *sync.WaitGroup // the node's: it waits for the room's goroutines
	Log     *zap.Logger
	NodeID  string
	Store   records.Store
	Cluster records.ClusterStore // Store, when the cluster shares it; nil otherwise
	Entries *index.Index         // the workloads the node holds
	Nexlets *registry.Registry
	Flags   *Flags
}

// Flags say what the node is doing with a workload or a nexlet at the moment; the rooms
// that do it set them, the others read them.
type Flags struct {
	Deploying     sync.Map // workload ID -> struct{}: a deploy is starting it (reconcile leaves it be)
	Draining      sync.Map // workload ID -> struct{}: moving to another node in a drain
	OwnStops      sync.Map // workload ID -> struct{}: this node is stopping it
	FailedNexlets sync.Map // nexlet ID -> struct{}: the supervisor gave up on it
}
