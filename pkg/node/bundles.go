package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

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
