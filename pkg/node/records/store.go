package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/retry"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// RecordVersion is the layout version of a Record; a newer nexd can migrate older ones.
const RecordVersion = 1

// Desired states of a workload record.
const (
	DesiredRunning  = "running"  // keep it running; bring it back if its nexlet loses it
	DesiredStopping = "stopping" // a stop was asked for; finish it on recovery
	DesiredFinished = "finished" // a job ended or a service gave up: never resurrect
	// DesiredMoved: the node was lost and the workload was taken over by MovedTo; the
	// copy this node may still run (it was cut off, not dead) must stop.
	DesiredMoved = "moved"
)

// Record is a workload's desired state, as the node keeps it.
type Record struct {
	Version    int                   `json:"version"`
	WorkloadID string                `json:"workload_id"`
	NexletID   string                `json:"nexlet_id"`
	Desired    string                `json:"desired"`
	Definition v1.WorkloadDefinition `json:"definition"`
	UpdatedAt  time.Time             `json:"updated_at"`
	// RequestID is the key the start was made idempotent with ("" for none).
	RequestID string `json:"request_id,omitempty"`
	// Restarts is how often the nexlet restarted it, as last reported: a recovery start
	// carries on counting from here.
	Restarts uint64 `json:"restarts,omitempty"`
	// CreatedAt is when it was first started.
	CreatedAt time.Time `json:"created_at,omitzero"`
	// Final is what the nexlet last said of a workload that ended for good (Desired
	// finished): its state, exit code, error and metadata, listed from the record once
	// the nexlet no longer has it (after a nexlet or nexd restart).
	Final *v1.WorkloadInfo `json:"final,omitempty"`
	// FinishedAt is when it ended for good; --finished-retention counts from here.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// StopAway says another node recorded a user's stop on this record while this one was
	// not heard from; StopGrace is that stop's grace period (0: the workload's own), used
	// when it is back.
	StopAway  bool        `json:"stop_away,omitempty"`
	StopGrace v1.Duration `json:"stop_grace,omitempty"`
	// MovedTo is the node that took the workload over (Desired moved).
	MovedTo string `json:"moved_to,omitempty"`
	// TakenOver says the workload came here by a takeover: other nodes' records may keep
	// moved marks of it, which its stop removes before its own record (see dropMarks).
	TakenOver bool `json:"taken_over,omitempty"`
	// Escrow is the start request with its sealed environment values sealed for the
	// cluster's secrets key (--secrets-key) instead of this node's nexlet, so another
	// node can take the workload over when this one is lost.
	Escrow json.RawMessage `json:"escrow,omitempty"`
	// Revision is the store's revision of this record, for compare-and-swap updates.
	Revision uint64 `json:"-"`
}

// StopRequest is the stop of rec its node carries out: with the grace period a stop
// recorded by another node gave (StopGrace), or the workload's own.
func (r *Record) StopRequest() v1.StopRequest { return r.Stop(v1.StopRequest{}) }

// Stop is req with, when it names no grace period, the one a stop recorded by another
// node gave (StopGrace): a stop that names none (one sent while this node was away,
// answered as it resumed) does not cut that one short.
func (r *Record) Stop(req v1.StopRequest) v1.StopRequest {
	if req.GracePeriod == 0 {
		req.GracePeriod = r.StopGrace
	}
	return req
}

// QuotaHold says what rec holds against its namespace's quota: a workload while it runs,
// is being stopped, or ended and is kept (its UID and workdir stay on its node until it
// is removed: a tenant's finished jobs took every workload UID of a node while they
// counted for nothing), and the resources it asked for only while it runs or is being
// stopped.
func (r *Record) QuotaHold() (workload, resources bool) {
	switch r.Desired {
	case DesiredRunning, DesiredStopping:
		return true, true
	case DesiredFinished:
		return true, false
	}
	return false, false
}

// Store keeps the desired state of one node's workloads.
type Store interface {
	// Put creates (Revision 0) or updates the record if it is unchanged since it was
	// read; it sets rec.Revision to the new revision.
	Put(ctx context.Context, rec *Record) error
	// Delete removes a record; deleting a missing one is not an error.
	Delete(ctx context.Context, workloadID string) error
	// Get returns the node's record of one workload (ErrNotStored when there is none).
	Get(ctx context.Context, workloadID string) (*Record, error)
	// List returns every record of the node.
	List(ctx context.Context) ([]*Record, error)
	// Claim reserves a start's request ID in namespace ns for holder (the node tells who:
	// "<workload ID>@<node ID>"). When it is held already, Claim returns the holder (and
	// no error).
	Claim(ctx context.Context, ns, requestID, holder string) (string, error)
	// Reclaim hands a request ID from old to holder, if old still holds it (a claim whose
	// start a crash cut short).
	Reclaim(ctx context.Context, ns, requestID, old, holder string) error
	// Unclaim releases a request ID held by holder (a start that failed, a workload gone).
	Unclaim(ctx context.Context, ns, requestID, holder string) error
}

// MemoryStore keeps state in memory: it survives nexlet crashes, not a nexd restart
// (after which the node rebuilds its records from what its nexlets still run); made
// with NewFileStore it keeps them in a directory too, and survives nexd restarts.
type MemoryStore struct {
	mu     sync.Mutex
	rev    uint64
	recs   map[string]Record
	claims map[string]string // claimKey -> workload ID
	file   *fileState        // nil: memory only
	// claimsVersion orders the writes of the claims file
	claimsVersion uint64
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{recs: map[string]Record{}, claims: map[string]string{}}
}

// Claim reserves requestID for wid, or returns the workload that holds it.
func (m *MemoryStore) Claim(_ context.Context, ns, requestID, wid string) (string, error) {
	m.mu.Lock()
	k := claimKey(ns, requestID)
	if holder, ok := m.claims[k]; ok {
		m.mu.Unlock()
		return holder, nil
	}
	m.claims[k] = wid
	return wid, m.persistClaims()
}

// persistClaims writes the claims of a file store, outside the store's lock. Caller holds
// m.mu; persistClaims lets go of it.
func (m *MemoryStore) persistClaims() error {
	if m.file == nil {
		m.mu.Unlock()
		return nil
	}
	m.claimsVersion++
	version, snapshot := m.claimsVersion, maps.Clone(m.claims)
	m.mu.Unlock()
	return m.file.writeClaims(version, snapshot)
}

// Reclaim hands requestID from old to holder if old holds it.
func (m *MemoryStore) Reclaim(_ context.Context, ns, requestID, old, holder string) error {
	m.mu.Lock()
	k := claimKey(ns, requestID)
	if m.claims[k] != old {
		m.mu.Unlock()
		return fmt.Errorf("%w: request ID %q", ErrConflict, requestID)
	}
	m.claims[k] = holder
	return m.persistClaims()
}

// Unclaim releases requestID if wid holds it.
func (m *MemoryStore) Unclaim(_ context.Context, ns, requestID, wid string) error {
	m.mu.Lock()
	if k := claimKey(ns, requestID); m.claims[k] == wid {
		delete(m.claims, k)
		return m.persistClaims()
	}
	m.mu.Unlock()
	return nil
}

// Put stores rec with compare-and-swap semantics.
func (m *MemoryStore) Put(_ context.Context, rec *Record) error {
	m.mu.Lock()
	cur, ok := m.recs[rec.WorkloadID]
	if (ok && cur.Revision != rec.Revision) || (!ok && rec.Revision != 0) {
		m.mu.Unlock()
		return fmt.Errorf("%w: workload %s", ErrConflict, rec.WorkloadID)
	}
	m.rev++
	rec.Revision = m.rev
	rec.Version = RecordVersion
	m.recs[rec.WorkloadID] = *rec
	m.mu.Unlock()
	if m.file == nil {
		return nil
	}
	if err := m.file.write(*rec); err != nil {
		m.mu.Lock()
		if now, held := m.recs[rec.WorkloadID]; held && now.Revision == rec.Revision { // not stored: do not pretend it was
			if ok {
				m.recs[rec.WorkloadID] = cur
			} else {
				delete(m.recs, rec.WorkloadID)
			}
		}
		m.mu.Unlock()
		return err
	}
	return nil
}

// Delete removes a record.
func (m *MemoryStore) Delete(_ context.Context, wid string) error {
	m.mu.Lock()
	delete(m.recs, wid)
	m.mu.Unlock()
	if m.file != nil {
		return m.file.remove(wid)
	}
	return nil
}

// List returns copies of every record.
// Get returns one record.
func (m *MemoryStore) Get(_ context.Context, wid string) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[wid]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotStored, wid)
	}
	return &r, nil
}

func (m *MemoryStore) List(context.Context) ([]*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Record, 0, len(m.recs))
	for _, r := range m.recs {
		r := r
		out = append(out, &r)
	}
	return out, nil
}

// KVStore keeps state in JetStream KV under keys <node_id>.<workload_id>, so it
// survives nexd restarts and, with replicas, the loss of a NATS server.
type KVStore struct {
	kv       jetstream.KeyValue
	nodeID   string
	js       jetstream.JetStream
	replicas int
	stream   *streamHandle // the bucket's stream, looked up once (shared by copies, see of)
}

// streamHandle is a stream looked up when first needed.
type streamHandle struct {
	mu sync.Mutex
	st jetstream.Stream
}

// OpenKVStore opens (creating when missing) the state bucket with the given replicas.
func OpenKVStore(ctx context.Context, nc *nats.Conn, nodeID string, replicas int) (*KVStore, error) {
	if err := v1.ValidateToken("node ID", nodeID); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := CheckJetStream(ctx, js); err != nil {
		return nil, err
	}
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := openLeaderKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: KVBucket, Description: "nex desired workload state", History: 1, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s (replicas %d): %w", KVBucket, replicas, err)
	}
	return &KVStore{kv: kv, nodeID: nodeID, js: js, replicas: replicas, stream: &streamHandle{}}, nil
}

// openLeaderKV opens bucket cfg.Bucket for reads from its stream's leader, never from
// a replica that lags behind it (a server back from a restart answers from what it had
// until it has caught up: a chaos run's group stop read a copy's record from such a
// replica, found none, and the copy ran on). The stream is made as nats.go makes a
// bucket's, but with direct gets off from the start, and an existing one's settings are
// changed field by field: nats.go's CreateKeyValue and CreateOrUpdateKeyValue turn direct
// gets on, on an existing stream too, and a handle another node opened in that moment
// read with direct gets, which no server answers once they are off again: "no
// responders" from the coordinator lease for good (a test of two nodes started at once,
// once in a few runs; a chaos run's rolling updates, cut short, resumed and failed so
// for minutes). A handle is healed all the same when its reads find no responder
// (healingKV).
func openLeaderKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	// nodes that start at once create the stream together: one that finds it being made
	// by another is told "stream not found" for a moment, which waiting cures
	// (TestClusterBootsAtOnce: a nexd exited at start so, once in a CI run)
	var kv jetstream.KeyValue
	err := retry.Do(ctx, retry.Policy{Backoff: retry.Backoff{First: 100 * time.Millisecond, Max: time.Second}, Budget: 5 * time.Second,
		Transient: func(err error) bool {
			return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse)
		}}, func(ctx context.Context) error {
		st, err := js.Stream(ctx, "KV_"+cfg.Bucket)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			if _, err := js.CreateStream(ctx, bucketStream(cfg)); err != nil {
				return err // made by another meanwhile: already in use, and read next time
			}
			st, err = js.Stream(ctx, "KV_"+cfg.Bucket)
		}
		if err != nil {
			return err
		}
		have := st.CachedInfo().Config
		want := have
		want.AllowDirect, want.MaxAge, want.Replicas, want.MaxMsgsPerSubject = false, cfg.TTL, max(cfg.Replicas, 1), int64(max(cfg.History, 1))
		if want.MaxAge > 0 && want.Duplicates > want.MaxAge {
			want.Duplicates = want.MaxAge
		}
		if have.AllowDirect != want.AllowDirect || have.MaxAge != want.MaxAge || have.Replicas != want.Replicas ||
			have.MaxMsgsPerSubject != want.MaxMsgsPerSubject || have.Duplicates != want.Duplicates {
			if _, err := js.UpdateStream(ctx, want); err != nil {
				return err
			}
		}
		opened, err := js.KeyValue(ctx, cfg.Bucket)
		if err == nil {
			kv = &healingKV{KeyValue: opened, js: js}
		}
		return err
	})
	return kv, err
}

// bucketStream is the stream of bucket cfg as nats.go's CreateKeyValue makes it, with
// direct gets off.
func bucketStream(cfg jetstream.KeyValueConfig) jetstream.StreamConfig {
	dup := 2 * time.Minute
	if cfg.TTL > 0 && cfg.TTL < dup {
		dup = cfg.TTL
	}
	return jetstream.StreamConfig{Name: "KV_" + cfg.Bucket, Description: cfg.Description, Subjects: []string{"$KV." + cfg.Bucket + ".>"},
		MaxMsgsPerSubject: int64(max(cfg.History, 1)), MaxBytes: -1, MaxAge: cfg.TTL, MaxMsgSize: -1, Storage: cfg.Storage,
		Replicas: max(cfg.Replicas, 1), AllowRollup: true, DenyDelete: true, Duplicates: dup, MaxMsgs: -1, MaxConsumers: -1,
		Discard: jetstream.DiscardNew}
}

// healingKV is a bucket handle whose reads, when no server answers them, open the
// bucket again and ask once more: a handle opened while the stream's direct gets were on
// reads with them, and no server answers those once they are off (see openLeaderKV).
// Writes and watches go through the stream's subjects and need no healing.
type healingKV struct {
	jetstream.KeyValue
	js     jetstream.JetStream
	mu     sync.Mutex
	reader jetstream.KeyValue // the handle reads use, once healed (nil: KeyValue)
	healed time.Time          // the last reopening: at most one a second
}

func (h *healingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	e, err := h.current().Get(ctx, key)
	if errors.Is(err, nats.ErrNoResponders) && h.heal(ctx) {
		e, err = h.current().Get(ctx, key)
	}
	return e, err
}

func (h *healingKV) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	e, err := h.current().GetRevision(ctx, key, revision)
	if errors.Is(err, nats.ErrNoResponders) && h.heal(ctx) {
		e, err = h.current().GetRevision(ctx, key, revision)
	}
	return e, err
}

func (h *healingKV) current() jetstream.KeyValue {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reader != nil {
		return h.reader
	}
	return h.KeyValue
}

// heal opens the bucket again for reads, and says whether it did.
func (h *healingKV) heal(ctx context.Context) bool {
	h.mu.Lock()
	if time.Since(h.healed) < time.Second {
		h.mu.Unlock()
		return false
	}
	h.healed = time.Now()
	h.mu.Unlock()
	kv, err := h.js.KeyValue(ctx, h.Bucket())
	if err != nil {
		return false
	}
	h.mu.Lock()
	h.reader = kv
	h.mu.Unlock()
	return true
}

// CheckJetStream asks whether the account has JetStream: ErrNoJetStream when it is off
// (for good), the error as it came when it did not answer (a cluster electing its
// leader: try again, see JetStreamPermanent).
func CheckJetStream(ctx context.Context, js jetstream.JetStream) error {
	if _, err := js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("%w (%v)", ErrNoJetStream, err)
		}
		return fmt.Errorf("JetStream account info: %w", err)
	}
	return nil
}

// JetStreamPermanent tells a JetStream failure that waiting will not cure (JetStream off,
// no permission, a request the server refuses) from one of a cluster that is not ready
// yet (no meta leader, a stream electing its leader, too few servers routed so far, no
// answer in time), which is worth trying again.
func JetStreamPermanent(err error) bool {
	return errors.Is(err, ErrNoJetStream) || retry.JetStreamPermanent(err)
}

func (s *KVStore) key(wid string) (string, error) {
	if err := v1.ValidateToken("workload ID", wid); err != nil {
		return "", err
	}
	return recordKey(s.nodeID, wid), nil
}

// Put creates or updates rec with compare-and-swap on its revision.
func (s *KVStore) Put(ctx context.Context, rec *Record) error {
	key, err := s.key(rec.WorkloadID)
	if err != nil {
		return err
	}
	rec.Version = RecordVersion
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	var rev uint64
	retried := false
	err = Retry(ctx, func(actx context.Context) error {
		var err error
		if rec.Revision == 0 {
			rev, err = s.kv.Create(actx, key, b)
		} else {
			rev, err = s.kv.Update(actx, key, b, rec.Revision)
		}
		if err != nil && retried && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			// a try that timed out may have been stored after all: is it ours?
			e, gerr := s.kv.Get(actx, key)
			switch {
			case gerr == nil && string(e.Value()) == string(b):
				rev = e.Revision()
				return nil
			case gerr != nil && !errors.Is(gerr, jetstream.ErrKeyNotFound) && !errors.Is(gerr, jetstream.ErrKeyDeleted):
				// no telling: not a conflict (a takeover took that for "not stored",
				// and gave the old node's record back)
				return gerr
			}
		}
		retried = true
		return err
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("%w: workload %s", ErrConflict, rec.WorkloadID)
		}
		return fmt.Errorf("store workload %s: %w", rec.WorkloadID, err)
	}
	rec.Revision = rev
	return nil
}

// RetryBudget bounds how long a store operation rides out a stream leader election
// (4-9 s in a cluster) before it fails; AttemptTimeout bounds one try.
const (
	RetryBudget    = 15 * time.Second
	AttemptTimeout = 5 * time.Second
)

// Retry runs op until it succeeds, fails for a reason other than a passing one
// (retry.Transient), ctx ends, or RetryBudget has passed.
func Retry(ctx context.Context, op func(context.Context) error) error {
	return retry.Do(ctx, retry.Policy{Backoff: retry.Backoff{First: 100 * time.Millisecond, Max: 2 * time.Second},
		Attempt: AttemptTimeout, Budget: RetryBudget, Transient: retry.Transient}, op)
}

// Claim reserves requestID for wid with a create-only write, so two nodes starting with
// the same key at once cannot both win; it returns the holder when the key exists.
func (s *KVStore) Claim(ctx context.Context, ns, requestID, wid string) (string, error) {
	key := claimKey(ns, requestID)
	holder := wid
	err := Retry(ctx, func(actx context.Context) error {
		_, err := s.kv.Create(actx, key, []byte(wid))
		if errors.Is(err, jetstream.ErrKeyExists) {
			e, gerr := s.kv.Get(actx, key)
			if gerr != nil {
				return gerr
			}
			if holder = string(e.Value()); !validHolder(holder) {
				// no node's claim (validHolder): taken over, compare-and-set
				holder = wid
				_, err = s.kv.Update(actx, key, []byte(wid), e.Revision())
				return err
			}
			return nil
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("claim request ID: %w", err)
	}
	return holder, nil
}

// Reclaim hands requestID from old to holder with a compare-and-set on the claim.
func (s *KVStore) Reclaim(ctx context.Context, ns, requestID, old, holder string) error {
	key := claimKey(ns, requestID)
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("reclaim request ID: %w", err)
	}
	if string(e.Value()) != old {
		return fmt.Errorf("%w: request ID %q", ErrConflict, requestID)
	}
	if _, err := s.kv.Update(ctx, key, []byte(holder), e.Revision()); err != nil {
		return fmt.Errorf("reclaim request ID: %w", err)
	}
	return nil
}

// Unclaim releases requestID if wid holds it.
func (s *KVStore) Unclaim(ctx context.Context, ns, requestID, wid string) error {
	key := claimKey(ns, requestID)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || (err == nil && string(e.Value()) != wid) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release request ID: %w", err)
	}
	if err := s.kv.Purge(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("release request ID: %w", err)
	}
	return nil
}

// Delete removes a record (purging it, so no history is left behind).
func (s *KVStore) Delete(ctx context.Context, wid string) error {
	key, err := s.key(wid)
	if err != nil {
		return err
	}
	err = Retry(ctx, func(actx context.Context) error { return s.kv.Purge(actx, key) })
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete workload %s: %w", wid, err)
	}
	return nil
}

// List returns every record of this node.
// Get reads this node's record of wid.
func (s *KVStore) Get(ctx context.Context, wid string) (*Record, error) {
	return s.get(ctx, recordKey(s.nodeID, wid))
}

func (s *KVStore) List(ctx context.Context) ([]*Record, error) {
	keys, err := ListKeys(ctx, s.kv, NodeRecords(s.nodeID))
	if err != nil {
		return nil, fmt.Errorf("list state keys: %w", err)
	}
	var out []*Record
	for _, key := range keys {
		e, err := getListed(ctx, s.kv, key)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
				continue
			}
			return nil, fmt.Errorf("read state %s: %w", key, err)
		}
		r, err := decodeRecord(key, e.Value(), e.Revision())
		if errors.Is(err, ErrNotStored) {
			continue // not the node's writing (validRecord)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
