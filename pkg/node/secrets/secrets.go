// Package secrets is the secrets room of a node: the namespaces' secrets, stored sealed
// for the cluster's --secrets-key in a bucket the nodes share, the SECRET verbs that keep
// them, and resolving secret:// references in a start request for the nexlet that runs
// the workload.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/seal"
)

// Ref marks an environment value resolved from the namespace's secret store.
const Ref = "secret://"

// Store is the room: the cluster's secrets key and the bucket (opened when first needed
// if it could not be at start).
type Store struct {
	key  nkeys.KeyPair
	nc   *natsconn.Conn
	seal nkeys.KeyPair // seals a resolved secret for a nexlet (the node's own xkey)
	mu   sync.Mutex
	kv   jetstream.KeyValue // nil until opened
}

// New returns the store of a node with the cluster's secrets key (nil without one: the
// node has no store, and refuses secret references); kv may be nil (opened when first
// needed, through nc). sealer seals a secret for the nexlet that runs its workload.
func New(key nkeys.KeyPair, kv jetstream.KeyValue, nc *natsconn.Conn, sealer nkeys.KeyPair) *Store {
	if key == nil {
		return nil
	}
	return &Store{key: key, kv: kv, nc: nc, seal: sealer}
}

// Key is the cluster's secrets key.
func (s *Store) Key() nkeys.KeyPair { return s.key }

func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv == nil { // not opened at start: open it now, and again next time if this fails
		kv, err := OpenBucket(ctx, s.nc.Conn, 1)
		if err != nil {
			return nil, v1.Errorf(v1.CodeUnavailable, "secret store (needs JetStream): %v", err)
		}
		s.kv = kv
	}
	return s.kv, nil
}

// OpenBucket opens (creating when missing) the namespace secrets bucket.
func OpenBucket(ctx context.Context, nc *nats.Conn, replicas int) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := records.CheckJetStream(ctx, js); err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: records.SecretsBucket, Description: "nex namespace secrets (sealed)", History: 1, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s (replicas %d): %w", records.SecretsBucket, max(replicas, 1), err)
	}
	return kv, nil
}

func secretKey(ns, name string) (string, error) {
	if err := v1.ValidateToken("secret name", name); err != nil {
		return "", err
	}
	return records.SecretKey(ns, name), nil
}

// target reads the namespace and secret name of a request and opens the store.
func (s *Store) target(ctx context.Context, r *svc.Request) (ns, name, key string, kv jetstream.KeyValue, err error) {
	ns, name = r.Namespace, r.ID
	if key, err = secretKey(ns, name); err != nil {
		return
	}
	kv, err = s.bucket(ctx)
	return
}

// Endpoints serve the secret store (none without a secrets key). One node answers each
// request: the nodes share the bucket.
func (s *Store) Endpoints() []svc.Endpoint {
	if s == nil {
		return nil
	}
	ep := func(verb, idName string, h svc.Func) svc.Endpoint {
		// a namespace holds at most 4 of the 16 at once (each may wait out a KV leader
		// election): one tenant's flood of puts makes no other's wait
		return svc.Endpoint{Name: verb, Subject: v1.ControlWildcard(verb, idName != ""), Tokens: svc.ControlTokens(idName), Handler: h, Concurrent: 16, PerNamespace: 4}
	}
	return []svc.Endpoint{
		ep(v1.VerbSecretPut, "secret name", svc.Handle(s.handlePut)),
		ep(v1.VerbSecretRm, "secret name", svc.Handle(s.handleRm)),
		ep(v1.VerbSecretList, "", svc.Handle(s.handleList)),
		ep(v1.VerbSecretKey, "", svc.Handle(s.handleKey)),
	}
}

func (s *Store) handleKey(_ context.Context, _ *svc.Request, _ *struct{}) (v1.SecretKeyReply, error) {
	pub, err := s.key.PublicKey()
	return v1.SecretKeyReply{XKey: pub}, err
}

func (s *Store) handlePut(ctx context.Context, r *svc.Request, req *v1.SecretPutRequest) (v1.SecretInfo, error) {
	ns, name, key, kv, err := s.target(ctx, r)
	if err != nil {
		return v1.SecretInfo{}, err
	}
	if !seal.IsSealed(req.Value) {
		return v1.SecretInfo{}, v1.BadRequest("secret values travel sealed for the nodes' secrets key; this one is not")
	}
	if strings.HasPrefix(req.Value, seal.LegacyPrefix) {
		return v1.SecretInfo{}, v1.BadRequest("secret %s is sealed by an older nex (%s...), for no namespace: put it again with this nex, which seals it for namespace %s", name, seal.LegacyPrefix, ns)
	}
	if _, err := seal.Open(s.key, req.Value, ns); errors.Is(err, seal.ErrOtherNamespace) {
		return v1.SecretInfo{}, v1.BadRequest("secret %s was sealed for another namespace than %s: %v", name, ns, err)
	} else if err != nil {
		return v1.SecretInfo{}, v1.BadRequest("secret %s is not sealed for the nodes' secrets key (--secrets-key; SECRET_KEY names it): %v", name, err)
	}
	if len(req.Value) > seal.MaxSecretBytes {
		return v1.SecretInfo{}, v1.Errorf(v1.CodeTooLarge, "secret %s is %d bytes sealed; the limit is %d sealed, about %d bytes of value", name, len(req.Value), seal.MaxSecretBytes, (seal.MaxSecretBytes-200)*3/4)
	}
	if _, err := kv.PutString(ctx, key, req.Value); err != nil {
		return v1.SecretInfo{}, v1.Errorf(v1.CodeUnavailable, "store secret %s: %v", name, err)
	}
	return v1.SecretInfo{Name: name, Namespace: ns, UpdatedAt: time.Now().UTC()}, nil
}

func (s *Store) handleRm(ctx context.Context, r *svc.Request, _ *struct{}) (v1.SecretInfo, error) {
	ns, name, key, kv, err := s.target(ctx, r)
	if err != nil {
		return v1.SecretInfo{}, err
	}
	if _, err := kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return v1.SecretInfo{}, v1.NotFound("secret %s not found in namespace %s", name, ns)
	}
	if err := kv.Purge(ctx, key); err != nil {
		return v1.SecretInfo{}, v1.Errorf(v1.CodeUnavailable, "remove secret %s: %v", name, err)
	}
	return v1.SecretInfo{Name: name, Namespace: ns}, nil
}

func (s *Store) handleList(ctx context.Context, r *svc.Request, _ *struct{}) ([]v1.SecretInfo, error) {
	ns := r.Namespace
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := records.ListKeys(ctx, kv, records.NamespaceSecrets(ns))
	if err != nil {
		return nil, err
	}
	out := []v1.SecretInfo{}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		out = append(out, v1.SecretInfo{Name: strings.TrimPrefix(k, records.SecretKey(ns, "")), Namespace: ns, UpdatedAt: e.Created()})
	}
	return out, nil
}

// Resolve replaces secret://name environment values with the secret, sealed for the
// nexlet that will run the workload (nexletXKey). The stored definition keeps the
// reference. A node without a store refuses a reference.
func (s *Store) Resolve(ctx context.Context, ns string, startRequest json.RawMessage, nexletXKey string) (json.RawMessage, error) {
	if !strings.Contains(string(startRequest), Ref) {
		return startRequest, nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(startRequest, &m) != nil {
		return startRequest, nil
	}
	var env map[string]string
	if json.Unmarshal(m["environment"], &env) != nil {
		return startRequest, nil
	}
	changed := false
	for k, v := range env {
		name, ok := strings.CutPrefix(v, Ref)
		if !ok {
			continue
		}
		if s == nil {
			return nil, v1.BadRequest("start_request.environment.%s refers to %s, but this node has no --secrets-key", k, v)
		}
		key, err := secretKey(ns, name)
		if err != nil {
			return nil, v1.BadRequest("start_request.environment.%s: %v", k, err)
		}
		kv, err := s.bucket(ctx)
		if err != nil {
			return nil, err
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			return nil, v1.BadRequest("start_request.environment.%s: secret %s not found in namespace %s (nex secret put %s ...)", k, name, ns, name)
		}
		pt, err := seal.Open(s.key, string(e.Value()), ns)
		if err != nil {
			return nil, v1.Errorf(v1.CodeInternal, "open secret %s: %v", name, err)
		}
		if nexletXKey == "" {
			return nil, v1.Errorf(v1.CodeUnavailable, "the nexlet has no xkey to seal secret %s for", name)
		}
		sealed, err := seal.Value(s.seal, pt, nexletXKey, ns)
		if err != nil {
			return nil, err
		}
		env[k] = sealed
		changed = true
	}
	if !changed {
		return startRequest, nil
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	m["environment"] = b
	out, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("rebuild start request: %w", err)
	}
	return out, nil
}
