package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// A replica group is N copies of one definition, each a workload of its own (its own
// ID, record and node), that the user starts, scales and stops by the group's ID. The
// group's record (groups.<ns>.<id> in the state bucket) holds the definition, with its
// sealed values sealed for the cluster's secrets key, and the count; the coordinator
// keeps that many copies running, at most MaxPerNode on a node, spread over the values
// of the Spread tag.

// Group is a replica group's record.
type Group struct {
	Version    int                   `json:"version"`
	ID         string                `json:"id"`
	Definition v1.WorkloadDefinition `json:"definition"`
	Replicas   int                   `json:"replicas"`
	MaxPerNode int                   `json:"max_per_node"`
	Spread     string                `json:"spread,omitempty"`
	// GroupVersion is the definition's version: 1, and one more with each update.
	GroupVersion int       `json:"group_version"`
	CreatedAt    time.Time `json:"created_at"`
	Revision     uint64    `json:"-"`
}

// Groups lists the records of namespace ns's groups, or of every group (""). A record
// that cannot be read fails the listing (one removed meanwhile is left out): a listing
// without a group would have its copies stopped as a gone group's orphans.
func (s *KVStore) Groups(ctx context.Context, ns string) ([]*Group, error) {
	keys, err := ListKeys(ctx, s.kv, groupsOf(ns))
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	var out []*Group
	for _, key := range keys {
		e, err := getListed(ctx, s.kv, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read group %s: %w", key, err)
		}
		var g Group
		if json.Unmarshal(e.Value(), &g) == nil && validGroup(key, &g) {
			g.Revision = e.Revision()
			out = append(out, &g)
		}
	}
	return out, nil
}

// GroupsRevision is the stream sequence of the last write to any group's record (a
// create, an update, a removal), read from the stream's leader; 0: there never was one.
// While it stays the same, so do the groups: a coordinator reads them again only when it
// changes (listing them every 3 s was most of what an idle coordinator did).
// Of one namespace (ns), it changes with that namespace's groups alone.
func (s *KVStore) GroupsRevision(ctx context.Context, ns string) (uint64, error) {
	return s.lastWrite(ctx, groupsOf(ns))
}

// StateRevision is the stream sequence of the last write to the state bucket: to any
// record, group or claim (a removal writes too), read from the stream's leader; 0: there
// never was one. While it stays the same, so does every record, and what was read of
// them still holds: a coordinator reads them all again only when it changed (reading
// every record every 30 s was work an idle node did in proportion to its workloads).
func (s *KVStore) StateRevision(ctx context.Context) (uint64, error) {
	return s.lastWrite(ctx, ">")
}

// lastWrite is the stream sequence of the last write to a key that filter matches (0:
// none). The bucket keeps one message per key and every removal writes a marker, so the
// last message is the last write.
func (s *KVStore) lastWrite(ctx context.Context, filter string) (uint64, error) {
	s.stream.mu.Lock()
	st := s.stream.st
	s.stream.mu.Unlock()
	if st == nil {
		var err error
		if st, err = s.js.Stream(ctx, "KV_"+s.kv.Bucket()); err != nil {
			return 0, err
		}
		// a handle looked up while another node's CreateOrUpdateKeyValue had direct gets
		// on reads from replicas, and gets no answer once they are off again: kept only
		// when it reads from the leader (see openLeaderKV)
		if !st.CachedInfo().Config.AllowDirect {
			s.stream.mu.Lock()
			s.stream.st = st
			s.stream.mu.Unlock()
		}
	}
	m, err := st.GetLastMsgForSubject(ctx, "$KV."+s.kv.Bucket()+"."+filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		s.stream.mu.Lock()
		s.stream.st = nil // looked up again next time
		s.stream.mu.Unlock()
		return 0, err
	}
	return m.Sequence, nil
}

// Group reads one group's record (ErrNotStored when there is none).
func (s *KVStore) Group(ctx context.Context, ns, id string) (*Group, error) {
	e, err := s.kv.Get(ctx, groupKey(ns, id))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, fmt.Errorf("%w: group %s", ErrNotStored, id)
		}
		return nil, err
	}
	var g Group
	if err := json.Unmarshal(e.Value(), &g); err != nil {
		return nil, fmt.Errorf("decode group %s: %w", id, err)
	}
	if !validGroup(e.Key(), &g) {
		return nil, fmt.Errorf("%w: group %s (its key holds no group)", ErrNotStored, id)
	}
	g.Revision = e.Revision()
	return &g, nil
}

// PutGroup creates (Revision 0) or updates a group's record, compare-and-set.
func (s *KVStore) PutGroup(ctx context.Context, g *Group) error {
	g.Version = RecordVersion
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	key := groupKey(g.Definition.Namespace, g.ID)
	var rev uint64
	if g.Revision == 0 {
		rev, err = s.kv.Create(ctx, key, b)
	} else {
		rev, err = s.kv.Update(ctx, key, b, g.Revision)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("%w: group %s", ErrConflict, g.ID)
		}
		return err
	}
	g.Revision = rev
	return nil
}

// DeleteGroup removes a group's record.
func (s *KVStore) DeleteGroup(ctx context.Context, ns, id string) error {
	if err := s.kv.Purge(ctx, groupKey(ns, id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}
