package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node"
	"github.com/nexrun/nex/pkg/node/records"
)

// The node's state (records, groups, request claims, leases, secrets) lives in JetStream
// KV buckets. JetStream answers a request, and acknowledges a publish, on the reply
// subject its asker chose, without checking that subject against anyone's permissions,
// and a stream stores whatever reaches its subjects: with nothing but its own
// credentials, a tenant of the account the buckets are in had an answer to its own
// $JS.API.INFO written over another namespace's workload record (a review's walk). With
// --state.creds-file the buckets live in an account no tenant is in, where no tenant's
// request is answered.

// stateOptions are the node's connection options with the state account's credentials.
func stateOptions(o natsconn.Options, credsFile string) natsconn.Options {
	o.CredsFile, o.NKey, o.User, o.Password, o.Token = credsFile, "", "", "", ""
	o.InboxPrefix = ""
	return o
}

// stateConn is the connection to the state account, or the node's own without one.
func (d *daemon) stateConn() *nats.Conn {
	if d.snc != nil {
		return d.snc
	}
	return d.nc
}

// movedBuckets are the buckets a node copies into the state account: the leases are
// taken again within one period.
var movedBuckets = []string{node.KVBucket, node.SecretsBucket}

// moveState copies the state buckets of the node's own account into the state account
// (only keys the state account does not hold), then deletes them there: the first node
// started with --state.creds-file moves the cluster's state over, and a copy cut short
// goes on at the next start, since the old bucket is deleted only once copied whole. A
// removed workload does not come back: once deleted, nothing is copied again.
func (d *daemon) moveState(ctx context.Context) error {
	if d.snc == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	from, _ := jetstream.New(d.nc)
	to, _ := jetstream.New(d.snc)
	for _, bucket := range movedBuckets {
		old, err := from.KeyValue(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("move the state: bucket %s of the node's account: %w", bucket, err)
		}
		n, err := copyBucket(ctx, old, to, bucket)
		if err != nil {
			return fmt.Errorf("move the state: bucket %s: %w", bucket, err)
		}
		if err := from.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("move the state: delete bucket %s of the node's account: %w", bucket, err)
		}
		d.log.Info("state moved into the state account", zap.String("bucket", bucket), zap.Int("keys", n))
	}
	return nil
}

// copyBucket puts every key of old that the state account's bucket lacks (making the
// bucket as the old one was when it is missing).
func copyBucket(ctx context.Context, old jetstream.KeyValue, to jetstream.JetStream, bucket string) (int, error) {
	st, err := old.Status(ctx)
	if err != nil {
		return 0, err
	}
	cfg := jetstream.KeyValueConfig{Bucket: bucket, History: uint8(st.History()), Replicas: 1}
	if info, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		cfg.Replicas = info.StreamInfo().Config.Replicas
	}
	dst, err := to.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		dst, err = to.CreateKeyValue(ctx, cfg)
	}
	if err != nil {
		return 0, err
	}
	keys, err := records.ListKeys(ctx, old) // fails when cut short: the old bucket is then kept
	if err != nil {
		return 0, err
	}
	n := 0
	for _, key := range keys {
		e, err := old.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		if _, err := dst.Create(ctx, key, e.Value()); err == nil {
			n++
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return n, err
		}
	}
	return n, nil
}
