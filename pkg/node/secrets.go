package node

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
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/seal"
)

// SecretRef marks an environment value resolved from the namespace's secret store.
const SecretRef = "secret://"

type secretStore struct {
	key nkeys.KeyPair
	mu  sync.Mutex
	kv  jetstream.KeyValue // nil until opened
}

func (n *Node) secrets(ctx context.Context) (jetstream.KeyValue, error) {
	s := n.secretStore
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv == nil { // not opened at start: open it now, and again next time if this fails
		kv, err := OpenSecretsBucket(ctx, n.nc, 1)
		if err != nil {
			return nil, v1.Errorf(v1.CodeUnavailable, "secret store (needs JetStream): %v", err)
		}
		s.kv = kv
	}
	return s.kv, nil
}

// OpenSecretsBucket opens (creating when missing) the namespace secrets bucket.
func OpenSecretsBucket(ctx context.Context, nc *nats.Conn, replicas int) (jetstream.KeyValue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := CheckJetStream(ctx, js); err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SecretsBucket, Description: "nex namespace secrets (sealed)", History: 1, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s (replicas %d): %w", SecretsBucket, max(replicas, 1), err)
	}
	return kv, nil
}

func secretKey(ns, name string) (string, error) {
	if err := v1.ValidateToken("secret name", name); err != nil {
		return "", err
	}
	return records.SecretKey(ns, name), nil
}

// secretTarget reads the namespace and secret name of a request and opens the store.
func (n *Node) secretTarget(ctx context.Context, r *svc.Request) (ns, name, key string, kv jetstream.KeyValue, err error) {
	ns, name = r.Namespace, r.ID
	if key, err = secretKey(ns, name); err != nil {
		return
	}
	kv, err = n.secrets(ctx)
	return
}

// secretEndpoints serve the secret store (none without a secrets key). One node answers
// each request: the nodes share the bucket.
func (n *Node) secretEndpoints() []svc.Endpoint {
	if n.secretStore == nil {
		return nil
	}
	ep := func(verb, idName string, h svc.Func) svc.Endpoint {
		return svc.Endpoint{Name: verb, Subject: v1.ControlWildcard(verb, idName != ""), Tokens: svc.ControlTokens(idName), Handler: h, Concurrent: 16}
	}
	return []svc.Endpoint{
		ep(v1.VerbSecretPut, "secret name", svc.Handle(n.handleSecretPut)),
		ep(v1.VerbSecretRm, "secret name", svc.Handle(n.handleSecretRm)),
		ep(v1.VerbSecretList, "", svc.Handle(n.handleSecretList)),
		ep(v1.VerbSecretKey, "", svc.Handle(n.handleSecretKey)),
	}
}

func (n *Node) handleSecretKey(_ context.Context, _ *svc.Request, _ *struct{}) (v1.SecretKeyReply, error) {
	pub, err := n.secretStore.key.PublicKey()
	return v1.SecretKeyReply{XKey: pub}, err
}

func (n *Node) handleSecretPut(ctx context.Context, r *svc.Request, req *v1.SecretPutRequest) (v1.SecretInfo, error) {
	ns, name, key, kv, err := n.secretTarget(ctx, r)
	if err != nil {
		return v1.SecretInfo{}, err
	}
	if !seal.IsSealed(req.Value) {
		return v1.SecretInfo{}, v1.BadRequest("secret values travel sealed for the nodes' secrets key; this one is not")
	}
	if _, err := seal.Open(n.secretStore.key, req.Value); err != nil {
		return v1.SecretInfo{}, v1.BadRequest("secret %s is sealed for another key than this node's --secrets-key: %v", name, err)
	}
	if len(req.Value) > 64<<10 {
		return v1.SecretInfo{}, v1.Errorf(v1.CodeTooLarge, "secret %s is %d bytes sealed; the limit is 65536", name, len(req.Value))
	}
	if _, err := kv.PutString(ctx, key, req.Value); err != nil {
		return v1.SecretInfo{}, v1.Errorf(v1.CodeUnavailable, "store secret %s: %v", name, err)
	}
	return v1.SecretInfo{Name: name, Namespace: ns, UpdatedAt: time.Now().UTC()}, nil
}

func (n *Node) handleSecretRm(ctx context.Context, r *svc.Request, _ *struct{}) (v1.SecretInfo, error) {
	ns, name, key, kv, err := n.secretTarget(ctx, r)
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

func (n *Node) handleSecretList(ctx context.Context, r *svc.Request, _ *struct{}) ([]v1.SecretInfo, error) {
	ns := r.Namespace
	kv, err := n.secrets(ctx)
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

// resolveSecrets replaces secret://name environment values with the secret, sealed for
// the nexlet that will run the workload. The stored definition keeps the reference.
func (n *Node) resolveSecrets(ctx context.Context, ns string, startRequest json.RawMessage, nexletXKey string) (json.RawMessage, error) {
	if !strings.Contains(string(startRequest), SecretRef) {
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
		name, ok := strings.CutPrefix(v, SecretRef)
		if !ok {
			continue
		}
		if n.secretStore == nil {
			return nil, v1.BadRequest("start_request.environment.%s refers to %s, but this node has no --secrets-key", k, v)
		}
		key, err := secretKey(ns, name)
		if err != nil {
			return nil, v1.BadRequest("start_request.environment.%s: %v", k, err)
		}
		kv, err := n.secrets(ctx)
		if err != nil {
			return nil, err
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			return nil, v1.BadRequest("start_request.environment.%s: secret %s not found in namespace %s (nex secret put %s ...)", k, name, ns, name)
		}
		pt, err := seal.Open(n.secretStore.key, string(e.Value()))
		if err != nil {
			return nil, v1.Errorf(v1.CodeInternal, "open secret %s: %v", name, err)
		}
		if nexletXKey == "" {
			return nil, v1.Errorf(v1.CodeUnavailable, "the nexlet has no xkey to seal secret %s for", name)
		}
		sealed, err := seal.Value(n.xkey, pt, nexletXKey)
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
