package records

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

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
// node's listing, and a workload taken for one no node holds).
func ListKeys(ctx context.Context, kv jetstream.KeyValue, filters ...string) ([]string, error) {
	if len(filters) == 0 {
		filters = []string{">"}
	}
	w, err := kv.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
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
		case <-ctx.Done():
			return nil, fmt.Errorf("the listing of keys was cut short: %w", ctx.Err())
		}
	}
}
