package records

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The names of what the node keeps in JetStream: its buckets and every key in them, in
// one place. The state bucket (KVBucket) holds:
//
//	<node ID>.<workload ID>      a node's record of a workload (Record)
//	groups.<namespace>.<group>   a replica group (Group)
//	requests.<namespace>.<hash>  the claim of a start's request ID
//
// The lease bucket (LeaseBucket) holds one key per lease ("coordinator"); the secrets
// bucket (SecretsBucket) <namespace>.<secret name>.

const (
	// KVBucket holds the desired state: records, groups and request-ID claims.
	KVBucket = "NEX_STATE"
	// LeaseBucket holds the cluster's leases; its age limit is the lease period.
	LeaseBucket = "NEX_LEASES"
	// SecretsBucket holds every namespace's secrets, each value sealed for the nodes'
	// shared secrets key: encrypted at rest, opened only by a node at deploy.
	SecretsBucket = "NEX_SECRETS"
	// CoordinatorLease is the lease the coordinating node holds.
	CoordinatorLease = "coordinator"
)

// recordKey is where node's record of workload wid lives.
func recordKey(node, wid string) string { return node + "." + wid }

// NodeRecords matches every record of node.
func NodeRecords(node string) string { return node + ".*" }

// workloadRecords matches every node's record of workload wid.
func workloadRecords(wid string) string { return "*." + wid }

// groupKey is where replica group id of namespace ns lives.
func groupKey(ns, id string) string { return "groups." + ns + "." + id }

// allGroups matches every replica group.
const allGroups = "groups.>"

// groupsOf matches namespace ns's replica groups (every one's: "").
func groupsOf(ns string) string {
	if ns == "" {
		return allGroups
	}
	return "groups." + ns + ".*"
}

// claimKey is where a request ID's claim lives: hashed, since a request ID may hold
// any printable character and a KV key may not.
func claimKey(ns, requestID string) string {
	sum := sha256.Sum256([]byte(requestID))
	return "requests." + ns + "." + hex.EncodeToString(sum[:16])
}

// SecretKey is where secret name of namespace ns lives; NamespaceSecrets matches them all.
func SecretKey(ns, name string) string { return ns + "." + name }

func NamespaceSecrets(ns string) string { return ns + ".*" }

// recordOfKey reads a key of the state bucket: whose record of which workload it is, ok
// false for a key that is no record (a group, a claim).
func recordOfKey(key string) (node, wid string, ok bool) {
	node, wid, ok = strings.Cut(key, ".")
	if !ok || node == "requests" || node == "groups" {
		return "", "", false
	}
	return node, wid, true
}

// ListKeys lists the keys of kv that match filters (every key without one). It fails when
// ctx ends first: jetstream's key listers close their channel then, and a listing cut
// short by a timeout read as complete (chaos runs: the newest records missing from a
// node's listing, and a workload taken for one no node holds). It fails too when the
// listing stalls for ListStall (its consumer not made, or no key given, in that time):
// a consumer asked of a server whose stream was still electing its leader after a cut
// never answered, and a re-registering nexlet's reconciliation waited out its whole
// minute, its cut-off service not started again (TestDisconnectStopRunsOneCopy in a CI
// dry run); its caller asks again sooner.
func ListKeys(ctx context.Context, kv jetstream.KeyValue, filters ...string) ([]string, error) {
	if len(filters) == 0 {
		filters = []string{">"}
	}
	// the watch lives as long as the context it was made with: this listing's
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stall := time.NewTimer(ListStall)
	defer stall.Stop()
	type made struct {
		w   jetstream.KeyWatcher
		err error
	}
	madeCh := make(chan made, 1)
	go func() {
		w, err := kv.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
		madeCh <- made{w, err}
	}()
	var w jetstream.KeyWatcher
	select {
	case m := <-madeCh:
		if m.err != nil {
			return nil, m.err
		}
		w = m.w
	case <-stall.C:
		return nil, fmt.Errorf("the listing of keys stalled: no consumer made in %s", ListStall) // cancel ends the making
	}
	defer func() { _ = w.Stop() }()
	stall.Reset(ListStall)
	var keys []string
	for {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil, errors.New("the listing of keys ended before it had given them all")
			case e == nil: // every key there was is given
				return keys, nil
			}
			keys = append(keys, e.Key())
			stall.Reset(ListStall)
		case <-ctx.Done():
			return nil, fmt.Errorf("the listing of keys was cut short: %w", ctx.Err())
		case <-stall.C:
			return nil, fmt.Errorf("the listing of keys stalled: nothing for %s after %d keys", ListStall, len(keys))
		}
	}
}

// ListStall is how long a listing of keys, or a read of one, may go without an answer
// before it fails (JetStream's own API timeout).
const ListStall = 5 * time.Second

// getListed reads a key a listing gave, waiting at most ListStall for the answer.
func getListed(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, ListStall)
	defer cancel()
	return kv.Get(ctx, key)
}
