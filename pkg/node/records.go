package node

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/pkg/node/records"
)

// The node keeps its desired state in the records room (package records): the Record,
// the stores, the key names, the lease and the groups' storage. These names keep the
// node's API as it was before the room had a package of its own.

type (
	// Record is a workload's desired state (records.Record).
	Record = records.Record
	// Store keeps a node's records (records.Store).
	Store = records.Store
	// ClusterStore is a Store the nodes of a cluster share (records.ClusterStore).
	ClusterStore = records.ClusterStore
	// MemoryStore keeps records in memory, or in files (records.MemoryStore).
	MemoryStore = records.MemoryStore
	// KVStore keeps records in JetStream KV (records.KVStore).
	KVStore = records.KVStore
	// Lease is a lease in the lease bucket (records.Lease).
	Lease = records.Lease
	// Group is a replica group's record (records.Group).
	Group = records.Group
)

// RecordVersion is the layout version of a Record.
const RecordVersion = records.RecordVersion

// Desired states of a workload record.
const (
	DesiredRunning  = records.DesiredRunning
	DesiredStopping = records.DesiredStopping
	DesiredFinished = records.DesiredFinished
	DesiredMoved    = records.DesiredMoved
)

// The JetStream buckets the node keeps its state in.
const (
	KVBucket      = records.KVBucket
	LeaseBucket   = records.LeaseBucket
	SecretsBucket = records.SecretsBucket
)

// Errors of the state stores.
var (
	ErrNoJetStream = records.ErrNoJetStream
	ErrConflict    = records.ErrConflict
	ErrNotStored   = records.ErrNotStored
)

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore { return records.NewMemoryStore() }

// NewFileStore returns a store that keeps one file per record in dir.
func NewFileStore(dir string) (*MemoryStore, error) { return records.NewFileStore(dir) }

// OpenKVStore opens (creating it when missing) the state bucket for node nodeID.
func OpenKVStore(ctx context.Context, nc *nats.Conn, nodeID string, replicas int) (*KVStore, error) {
	return records.OpenKVStore(ctx, nc, nodeID, replicas)
}

// CheckJetStream tells whether JetStream answers (records.CheckJetStream).
func CheckJetStream(ctx context.Context, js jetstream.JetStream) error {
	return records.CheckJetStream(ctx, js)
}

// JetStreamPermanent tells whether err from JetStream will not pass by waiting.
func JetStreamPermanent(err error) bool { return records.JetStreamPermanent(err) }
