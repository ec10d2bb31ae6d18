package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// A bundle bucket made before nodes made them without direct gets (which tenants and
// workloads may no longer make: their reads of it would be refused) is brought in line by
// the next node that starts; other object stores are left as they are.
func TestBundleBucketsLoseDirectGets(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, b := range []string{v1.BundleBucket("a"), "OTHER"} {
		if _, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: b}); err != nil {
			t.Fatal(err)
		}
	}
	direct := func(stream string) bool {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.AllowDirect
	}
	if !direct("OBJ_" + v1.BundleBucket("a")) {
		t.Fatal("an object store made by nats.go allows direct gets: the test's premise")
	}
	startNode(t, nc, "n1", nil)
	testutil.Eventually(t, 10*time.Second, "the node to turn the bundle bucket's direct gets off", func() bool { return !direct("OBJ_" + v1.BundleBucket("a")) })
	if !direct("OBJ_OTHER") {
		t.Fatal("the node changed an object store that is no bundle bucket")
	}
}
