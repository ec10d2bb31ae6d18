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
	_, err = js.CreateOrUpdateObjectStore(ctx, cfg)
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return v1.BundleBucketReply{}, v1.Errorf(v1.CodeUnavailable, "bundles need JetStream, and it is off")
	}
	if err != nil {
		return v1.BundleBucketReply{}, records.StorageError(err, fmt.Sprintf("make bundle bucket %s (max_bytes %d)", bucket, cfg.MaxBytes))
	}
	return v1.BundleBucketReply{Bucket: bucket, MaxBytes: cfg.MaxBytes}, nil
}
