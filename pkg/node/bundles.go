package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
)

// handleBundleBucket makes the namespace's bundle bucket (v1.BundleBucket) when it is
// missing, bounded by Config.BundleMaxBytes, and brings an existing one's bound in line.
// The node makes it, not the user: a user allowed to create or update the stream could
// give it any subjects, sources or republish, and so read or write anything the account
// holds (another namespace's history, the state, the secrets) or call any verb.
func (n *Node) handleBundleBucket(ctx context.Context, r *svc.Request, _ *struct{}) (v1.BundleBucketReply, error) {
	bucket := v1.BundleBucket(r.Namespace)
	js, err := jetstream.New(n.nc.Conn)
	if err != nil {
		return v1.BundleBucketReply{}, err
	}
	cfg := jetstream.ObjectStoreConfig{Bucket: bucket, Description: "nex workload bundles of namespace " + r.Namespace + ", by SHA-256",
		MaxBytes: n.cfg.BundleMaxBytes, Replicas: max(1, n.cfg.BundleReplicas), Storage: jetstream.FileStorage}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = -1
	}
	// an existing bucket is brought in line in one update, never through a moment of
	// direct gets (CreateOrUpdateObjectStore turns them on again, and a reader that bound
	// then would make them, and be refused)
	err = bundleInLine(ctx, js, "OBJ_"+bucket, cfg.MaxBytes)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err = js.CreateObjectStore(ctx, cfg); err == nil || errors.Is(err, jetstream.ErrBucketExists) {
			err = bundleInLine(ctx, js, "OBJ_"+bucket, cfg.MaxBytes)
		}
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return v1.BundleBucketReply{}, v1.Errorf(v1.CodeUnavailable, "bundles need JetStream, and it is off")
	}
	if err != nil {
		return v1.BundleBucketReply{}, records.StorageError(err, fmt.Sprintf("make bundle bucket %s (max_bytes %d)", bucket, cfg.MaxBytes))
	}
	return v1.BundleBucketReply{Bucket: bucket, MaxBytes: cfg.MaxBytes}, nil
}

// bundleInLine gives a bundle bucket's stream the bound maxBytes and no direct gets:
// tenants may not make them (see creds.TenantPermissions), and a client reads a stream
// that allows them with them only.
func bundleInLine(ctx context.Context, js jetstream.JetStream, stream string, maxBytes int64) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	if !cfg.AllowDirect && cfg.MaxBytes == maxBytes {
		return nil
	}
	cfg.AllowDirect, cfg.MaxBytes = false, maxBytes
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// bundlesInLine turns direct gets off on every bundle bucket made before nodes made them
// so (tenants and workloads may make none: their reads of such a bucket were refused).
func (n *Node) bundlesInLine() {
	js, err := jetstream.New(n.nc.Conn)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
	defer cancel()
	names := js.StreamNames(ctx, jetstream.WithStreamListSubject("$O.>")) // object stores
	for name := range names.Name() {
		if !strings.HasPrefix(name, "OBJ_"+v1.BundleBucket("")) {
			continue
		}
		st, err := js.Stream(ctx, name)
		if err != nil {
			continue
		}
		if err := bundleInLine(ctx, js, name, st.CachedInfo().Config.MaxBytes); err != nil {
			n.log.Warn("turn direct gets off on a bundle bucket: tenants cannot read it until a node can", zap.String("stream", name), zap.Error(err))
		}
	}
}
