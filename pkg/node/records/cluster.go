package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The cluster's shared state is the KV state bucket: every node's records under
// <node_id>.<workload_id>. A node that is lost (no announcement within the node-loss
// window) has its records taken over by other nodes: the coordinator (the node holding
// the coordinator lease) auctions each one among the live nodes and asks the winner to
// take it over; the winner marks the lost node's record moved (compare-and-set on the
// revision the coordinator read, so one node wins), creates its own and starts the
// workload under the same ID. The lost node, when it comes back, finds its record
// moved and stops the copy it may still run.

// ClusterStore is a Store the nodes of a cluster share.
type ClusterStore interface {
	Store
	// All lists the records of every node, by node ID.
	All(ctx context.Context) (map[string][]*Record, error)
	// RecordOf reads node's record of wid (ErrNotStored when there is none).
	RecordOf(ctx context.Context, node, wid string) (*Record, error)
	// PutOf writes node's record (compare-and-set on rec.Revision, as Put).
	PutOf(ctx context.Context, node string, rec *Record) error
	// RemoveOf deletes node's record of wid if it is still at revision rev.
	RemoveOf(ctx context.Context, node, wid string, rev uint64) error
	// Nodes counts the records of each node, from the keys alone.
	Nodes(ctx context.Context) (map[string]int, error)
	// RecordsOf lists one node's records.
	RecordsOf(ctx context.Context, node string) ([]*Record, error)
	// Owners lists the nodes that hold a record of wid.
	Owners(ctx context.Context, wid string) ([]string, error)
	// WatchOwn calls f with each record of this node written by someone else from now
	// on (nil record: deleted), until ctx ends.
	WatchOwn(ctx context.Context, f func(wid string, rec *Record)) error
	// Lease opens the lease named key, held for ttl after each renewal.
	Lease(ctx context.Context, key string, ttl time.Duration) (*Lease, error)
	// Groups lists the replica groups' records: namespace ns's, or every one's ("").
	Groups(ctx context.Context, ns string) ([]*Group, error)
	// Group reads the record of group id in namespace ns (ErrNotStored when there is none).
	Group(ctx context.Context, ns, id string) (*Group, error)
	// PutGroup writes a group's record (compare-and-set on g.Revision; 0: create).
	PutGroup(ctx context.Context, g *Group) error
	// DeleteGroup removes a group's record.
	DeleteGroup(ctx context.Context, ns, id string) error
	// GroupsRevision changes whenever a record of a group of namespace ns (of any, "")
	// is written or removed.
	GroupsRevision(ctx context.Context, ns string) (uint64, error)
	// StateRevision changes whenever anything in the state bucket is written or removed.
	StateRevision(ctx context.Context) (uint64, error)
}

// ErrNotStored means a record is not in the store.
var ErrNotStored = errors.New("no such record")

var _ ClusterStore = (*KVStore)(nil)

// All lists every node's records.
func (s *KVStore) All(ctx context.Context) (map[string][]*Record, error) {
	keys, err := ListKeys(ctx, s.kv)
	if err != nil {
		return nil, fmt.Errorf("list state keys: %w", err)
	}
	out := map[string][]*Record{}
	for _, key := range keys {
		node, _, ok := recordOfKey(key)
		if !ok {
			continue
		}
		r, err := s.get(ctx, key)
		if errors.Is(err, ErrNotStored) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[node] = append(out[node], r)
	}
	return out, nil
}

// Nodes counts every node's records, reading keys only.
func (s *KVStore) Nodes(ctx context.Context) (map[string]int, error) {
	keys, err := ListKeys(ctx, s.kv)
	if err != nil {
		return nil, fmt.Errorf("list state keys: %w", err)
	}
	out := map[string]int{}
	for _, key := range keys {
		if node, _, ok := recordOfKey(key); ok {
			out[node]++
		}
	}
	return out, nil
}

// RecordsOf lists node's records.
func (s *KVStore) RecordsOf(ctx context.Context, node string) ([]*Record, error) {
	recs, err := s.of(node).List(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	return recs, err
}

func (s *KVStore) get(ctx context.Context, key string) (*Record, error) {
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, fmt.Errorf("%w: %s", ErrNotStored, key)
		}
		return nil, fmt.Errorf("read state %s: %w", key, err)
	}
	return decodeRecord(key, e.Value(), e.Revision())
}

func decodeRecord(key string, b []byte, rev uint64) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode state %s: %w", key, err)
	}
	if r.Version > RecordVersion {
		return nil, fmt.Errorf("state %s has layout version %d, newer than this nexd understands (%d)", key, r.Version, RecordVersion)
	}
	if !validRecord(key, &r) {
		return nil, fmt.Errorf("%w: %s holds no record of its workload", ErrNotStored, key)
	}
	r.Revision = rev
	return &r, nil
}

// RecordOf reads node's record of wid.
func (s *KVStore) RecordOf(ctx context.Context, node, wid string) (*Record, error) {
	return s.get(ctx, recordKey(node, wid))
}

// PutOf writes node's record of rec.WorkloadID, compare-and-set on rec.Revision.
func (s *KVStore) PutOf(ctx context.Context, node string, rec *Record) error {
	return s.of(node).Put(ctx, rec)
}

// of is this store as node's: the same bucket, node's keys.
func (s *KVStore) of(node string) *KVStore {
	return &KVStore{kv: s.kv, nodeID: node, js: s.js, replicas: s.replicas, stream: s.stream}
}

// RemoveOf deletes node's record of wid when it is still at rev.
func (s *KVStore) RemoveOf(ctx context.Context, node, wid string, rev uint64) error {
	err := Retry(ctx, func(actx context.Context) error {
		return s.kv.Purge(actx, recordKey(node, wid), jetstream.LastRevision(rev))
	})
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("%w: workload %s of node %s", ErrConflict, wid, node)
		}
		return fmt.Errorf("delete workload %s of node %s: %w", wid, node, err)
	}
	return nil
}

// Owners lists the nodes holding a record of wid.
func (s *KVStore) Owners(ctx context.Context, wid string) ([]string, error) {
	keys, err := ListKeys(ctx, s.kv, workloadRecords(wid))
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, key := range keys {
		if node, _, ok := recordOfKey(key); ok {
			nodes = append(nodes, node)
		}
	}
	return nodes, nil
}

// WatchOwn watches this node's records for writes by others.
func (s *KVStore) WatchOwn(ctx context.Context, f func(wid string, rec *Record)) error {
	w, err := s.kv.Watch(ctx, NodeRecords(s.nodeID), jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("watch state: %w", err)
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				_, wid, _ := strings.Cut(e.Key(), ".")
				if e.Operation() != jetstream.KeyValuePut {
					f(wid, nil)
					continue
				}
				if r, err := decodeRecord(e.Key(), e.Value(), e.Revision()); err == nil {
					f(wid, r)
				}
			}
		}
	}()
	return nil
}

// Lease is a key in the lease bucket that one node at a time holds: Create takes it, an
// Update at the revision it holds renews it, and the server removes it a lease period
// after the last renewal. The holder counts itself the holder only until half a period
// after its last successful renewal (by its own monotonic clock), so it has stopped
// acting well before the server lets anybody else take it.
//
// The revision of the Create that took the lease is its epoch, greater than that of any
// earlier holder: the holder writes "<node ID> <epoch>" as the key's value, and a node
// asked to act by a holder checks, with Holder, that the lease is still its at that
// epoch (fencing: a holder that was paused or cut off past its lease is refused).
type Lease struct {
	kv    jetstream.KeyValue
	key   string
	ttl   time.Duration
	me    string
	rev   uint64
	epoch uint64    // the revision that took it
	good  time.Time // held until then
}

// GoodUntil is when this node stops counting itself the holder unless it renews the
// lease: half a period after its last renewal.
func (l *Lease) GoodUntil() time.Time { return l.good }

// Epoch is the epoch of the lease this node holds (0: none).
func (l *Lease) Epoch() uint64 {
	if l.rev == 0 {
		return 0
	}
	return l.epoch
}

func (l *Lease) value() []byte { return []byte(l.me + " " + strconv.FormatUint(l.epoch, 10)) }

// Holder reads who holds the lease now, and since which epoch.
func (l *Lease) Holder(ctx context.Context) (node string, epoch uint64, err error) {
	e, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	node, ep, ok := strings.Cut(string(e.Value()), " ")
	if !ok { // just taken: the Create's revision is the epoch
		return node, e.Revision(), nil
	}
	epoch, err = strconv.ParseUint(ep, 10, 64)
	return node, epoch, err
}

// Lease opens the lease named key (creating the lease bucket when missing).
func (s *KVStore) Lease(ctx context.Context, key string, ttl time.Duration) (*Lease, error) {
	var kv jetstream.KeyValue
	err := Retry(ctx, func(actx context.Context) error {
		var err error
		kv, err = openLeaderKV(actx, s.js, jetstream.KeyValueConfig{ // who holds it, as its leader says
			Bucket: LeaseBucket, Description: "nex cluster leases", History: 1, TTL: ttl, Replicas: s.replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", LeaseBucket, err)
	}
	return &Lease{kv: kv, key: key, ttl: ttl, me: s.nodeID}, nil
}

// Hold takes or renews the lease and says whether this node holds it now.
func (l *Lease) Hold(ctx context.Context) bool {
	now := time.Now()
	if l.rev != 0 {
		rev, err := l.kv.Update(ctx, l.key, l.value(), l.rev)
		switch {
		case err == nil:
			l.rev, l.good = rev, now.Add(l.ttl/2)
			return true
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			// a renewal whose answer was lost may have been stored: then it is ours still
			if e, gerr := l.kv.Get(ctx, l.key); gerr == nil && string(e.Value()) == string(l.value()) {
				l.rev = e.Revision()
				return now.Before(l.good)
			}
			l.rev = 0 // somebody else has it
			return false
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
			l.rev = 0 // it ran out
			return false
		default: // no answer: it may have been renewed; we hold it while it surely is ours
			return now.Before(l.good)
		}
	}
	rev, err := l.kv.Create(ctx, l.key, []byte(l.me))
	if err != nil {
		return false
	}
	l.rev, l.epoch, l.good = rev, rev, now.Add(l.ttl/2)
	if rev, err := l.kv.Update(ctx, l.key, l.value(), l.rev); err == nil { // say the epoch
		l.rev = rev
	}
	return true
}

// Release gives the lease up (a node that stops).
func (l *Lease) Release(ctx context.Context) {
	if l.rev != 0 {
		_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
		l.rev = 0
	}
}

// MarkStopping records on node's record of wid that it is to stop, compare-and-set on
// the record as read, for a node that does not answer: the node stops its copy when it
// hears of it (its watch, or its reconciliation once back), with grace (0: the
// workload's own), and the coordinator removes such a record of a lost node rather than
// place the workload elsewhere. A record of another namespace than ns (unless ns is
// system) is not touched. It returns the record as it stands (nil: there is none, or it
// is another namespace's); a record that is not running is left as is.
func MarkStopping(ctx context.Context, cs ClusterStore, ns, node, wid string, grace v1.Duration) (*Record, error) {
	for range 3 {
		rec, err := cs.RecordOf(ctx, node, wid)
		if errors.Is(err, ErrNotStored) {
			return nil, nil
		}
		if err != nil {
			return nil, StorageError(err, "read the record of workload "+wid)
		}
		if ns != v1.SystemNamespace && rec.Definition.Namespace != ns {
			return nil, nil
		}
		if rec.Desired != DesiredRunning {
			return rec, nil
		}
		rec.Desired, rec.StopAway, rec.StopGrace, rec.UpdatedAt = DesiredStopping, true, grace, time.Now().UTC()
		if err = cs.PutOf(ctx, node, rec); !errors.Is(err, ErrConflict) {
			if err != nil {
				return nil, StorageError(err, "record the stop of workload "+wid)
			}
			return rec, nil
		}
	}
	return nil, v1.Errorf(v1.CodeUnavailable, "the record of workload %s kept changing as its stop was recorded: try again", wid)
}
