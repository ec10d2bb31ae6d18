package records

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/testutil"
)

// A listing of keys cut short by its context is an error, not a shorter list: jetstream's
// key listers close their channel when the context ends, and such a listing read as
// complete (chaos runs: the newest records missing from a node's listing).
func TestListKeysCutShortIsAnError(t *testing.T) {
	s := testutil.StartServer(t)
	js, err := jetstream.New(testutil.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "keys"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"n1.a", "n1.b", "n2.a"} {
		if _, err := kv.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if keys, err := ListKeys(ctx, kv, NodeRecords("n1")); err != nil || len(keys) != 2 {
		t.Fatalf("keys of n1: %v, %v", keys, err)
	}
	if keys, err := ListKeys(ctx, kv); err != nil || len(keys) != 3 {
		t.Fatalf("every key: %v, %v", keys, err)
	}
	if keys, err := ListKeys(ctx, kv, NodeRecords("n3")); err != nil || len(keys) != 0 {
		t.Fatalf("keys of a node with none: %v, %v", keys, err)
	}
	// jetstream's own lister, given these timeouts, returned 1, 0, 1171 and 2804 keys of
	// 5000 with no error: here a listing is whole or an error
	const many = 5000
	for i := range many {
		if _, err := kv.Put(ctx, fmt.Sprintf("n4.k%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	cut := 0
	for ms := 1; ms <= 40; ms++ {
		short, cancel := context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		keys, err := ListKeys(short, kv, NodeRecords("n4"))
		cancel()
		switch {
		case err != nil:
			cut++
		case len(keys) != many:
			t.Fatalf("a listing with %d ms: %d keys of %d, and no error", ms, len(keys), many)
		}
	}
	if cut == 0 {
		t.Fatal("no listing was cut short: the test tried nothing")
	}
}

// A listing whose stream cannot answer (its cluster lost its quorum, as while JetStream
// elects a leader after a cut) fails after ListStall, well before its caller's deadline:
// a reconciliation waited out its whole minute so, and a cut-off service was not started
// again (TestDisconnectStopRunsOneCopy in a CI dry run).
func TestListKeysStalledFailsSoon(t *testing.T) {
	servers := testutil.StartCluster(t, 3)
	nc := testutil.Connect(t, servers[0])
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "stall", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "n1.a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	servers[1].Shutdown()
	servers[2].Shutdown()
	long, cancel := context.WithTimeout(ctx, 4*ListStall)
	defer cancel()
	keys, err := ListKeys(long, kv, NodeRecords("n1"))
	if err == nil || long.Err() != nil {
		t.Fatalf("a listing with no quorum: %v, %v (its caller's deadline passed: %v)", keys, err, long.Err())
	}
	t.Logf("a listing with no quorum: %v", err)
}
