package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/seal"
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

// checkStateAccount refuses a --state.creds-file of the node's own account: the move
// would copy the buckets onto themselves and then delete them (a newcomer's walk, with
// node.creds given for both: every record and secret gone).
func (d *daemon) checkStateAccount() error {
	if d.snc == nil {
		return nil
	}
	same, err := sameAccount(d.nc, d.snc)
	if err != nil {
		return fmt.Errorf("--state.creds-file: tell its account from the node's: %w", err)
	}
	if same {
		return errors.New("--state.creds-file: its user is of the node's own account (--nats.creds-file's), where tenants are: give credentials of another account, one no tenant is in (nex security init makes state.creds)")
	}
	return nil
}

// sameAccount says whether two connections to one NATS system are of one account: by
// the server's user info when it answers it (a system account is configured), else by
// whether a message published on a reaches a subscription of b.
func sameAccount(a, b *nats.Conn) (bool, error) {
	accountOf := func(nc *nats.Conn) string {
		m, err := nc.Request("$SYS.REQ.USER.INFO", nil, 2*time.Second)
		if err != nil {
			return ""
		}
		var r struct {
			Data struct {
				Account string `json:"account"`
			} `json:"data"`
		}
		_ = json.Unmarshal(m.Data, &r)
		return r.Data.Account
	}
	if x, y := accountOf(a), accountOf(b); x != "" && y != "" {
		return x == y, nil
	}
	subject := "_NEX_ACCOUNT_PROBE." + nuid.Next()
	sub, err := b.SubscribeSync(subject)
	if err != nil {
		return false, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.FlushTimeout(2 * time.Second); err != nil {
		return false, err
	}
	if err := a.Publish(subject, nil); err != nil {
		return false, err
	}
	if err := a.FlushTimeout(2 * time.Second); err != nil {
		return false, err
	}
	_, err = sub.NextMsg(time.Second)
	return err == nil, nil
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
		n, skipped, err := copyBucket(ctx, old, to, bucket)
		if err != nil {
			return fmt.Errorf("move the state: bucket %s: %w", bucket, err)
		}
		if len(skipped) > 0 {
			d.log.Warn("state not moved: these keys hold what no node writes (a tenant's doing, through JetStream's answers)", zap.String("bucket", bucket), zap.Strings("keys", skipped))
		}
		if err := from.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("move the state: delete bucket %s of the node's account: %w", bucket, err)
		}
		d.log.Info("state moved into the state account", zap.String("bucket", bucket), zap.Int("keys", n))
	}
	// the old leases go too: held again within a period, in the state account
	if err := from.DeleteKeyValue(ctx, node.LeaseBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("move the state: delete bucket %s of the node's account: %w", node.LeaseBucket, err)
	}
	return nil
}

// copyBucket puts every key of old that the state account's bucket lacks (making the
// bucket as the old one was when it is missing), and names the keys it skipped: values
// no node writes (records.ValidState, a sealed secret), which tenants can have JetStream
// write into a bucket of their account.
func copyBucket(ctx context.Context, old jetstream.KeyValue, to jetstream.JetStream, bucket string) (int, []string, error) {
	st, err := old.Status(ctx)
	if err != nil {
		return 0, nil, err
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
		return 0, nil, err
	}
	keys, err := records.ListKeys(ctx, old) // fails when cut short: the old bucket is then kept
	if err != nil {
		return 0, nil, err
	}
	n, skipped := 0, []string(nil)
	for _, key := range keys {
		e, err := old.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return n, skipped, err
		}
		if !nodeWrote(bucket, key, e.Value()) {
			skipped = append(skipped, key)
			continue
		}
		if _, err := dst.Create(ctx, key, e.Value()); err == nil {
			n++
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return n, skipped, err
		}
	}
	return n, skipped, nil
}

// nodeWrote says whether value is what a node writes under key of bucket.
func nodeWrote(bucket, key string, value []byte) bool {
	if bucket == node.SecretsBucket {
		ns, name, ok := strings.Cut(key, ".")
		return ok && v1.ValidateNamespace(ns) == nil && v1.ValidateToken("secret name", name) == nil && seal.IsSealed(string(value))
	}
	return records.ValidState(key, value)
}
