package node_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/node"
)

// An idle coordinator of a cluster without replica groups is quiet: it does not read every
// record every few seconds (it did: 100 gets every 3 s at 100 services, most of an idle
// node's work, to find copies of groups that are gone, which a read now and then finds),
// it does not list the groups with a consumer of its own every 3 s (it did), and it
// renews its lease every 2 s at the default 10 s window, not every second.
func TestIdleCoordinatorIsQuiet(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	// the coordinator looks again at every record every 2 s, not 30: a window of 10 s
	// holds four of those looks, each a read of every record if it does not remember them
	n := newNodeWith(t, nc, node.WithRescan(node.Config{NodeID: id, Name: "n", Store: kvStore(t, nc, id)}, 2*time.Second))
	runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(t, s), "default")
	const workloads = 40
	for range workloads {
		if _, err := c.StartWorkload(context.Background(), def("idle")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 20*time.Second, "the node to coordinate", n.IsCoordinator)
	// every read of one record is a request on this subject (direct gets are off)
	var gets atomic.Int64
	sub, err := testutil.Connect(t, s).Subscribe("$JS.API.STREAM.MSG.GET.KV_"+node.KVBucket, func(*nats.Msg) { gets.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	var listings, consumers, renewals atomic.Int64
	watch := testutil.Connect(t, s)
	for subject, count := range map[string]*atomic.Int64{
		// a listing of the groups is a consumer filtered on their keys
		"$JS.API.CONSUMER.CREATE.KV_" + node.KVBucket + ".*.$KV." + node.KVBucket + ".groups.>": &listings,
		// a listing of the keys (which nodes have records) is a consumer too
		"$JS.API.CONSUMER.CREATE.KV_" + node.KVBucket + ".>": &consumers,
		"$KV." + node.LeaseBucket + ".>":                     &renewals,
	} {
		if _, err := watch.Subscribe(subject, func(*nats.Msg) { count.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	// a window of three group rounds (every 3 s) and four looks at every record (every
	// 2 s here): time is what is measured here, it synchronises nothing; one full read of
	// the records is allowed in it (the first round as coordinator may fall in it)
	time.Sleep(10 * time.Second)
	used := gets.Load()
	t.Logf("in 10 s: %d reads of a record, %d listings of the groups, %d consumers on the state, %d lease renewals", used, listings.Load(), consumers.Load(), renewals.Load())
	if listings.Load() > 1 { // the first round as coordinator lists them, then when one is written
		t.Errorf("an idle coordinator listed the groups %d times in 10 s: every round", listings.Load())
	}
	// the first round as coordinator, when it falls in the window, lists the groups once
	// and the keys once or twice (a consumer each: 3 in 2 of 3 runs under -race, the same
	// on the previous build); listing the keys at every look would be 5 or more
	if consumers.Load() > 3 {
		t.Errorf("an idle coordinator made %d consumers on the state bucket in 10 s: it lists the keys at every look", consumers.Load())
	}
	if renewals.Load() > 6 {
		t.Errorf("an idle coordinator renewed its lease %d times in 10 s: more than every 2 s", renewals.Load())
	}
	if used >= 2*workloads {
		t.Fatalf("an idle coordinator read %d records in 10 s, with %d records and no group: it reads every record at every look, though none was written", used, workloads)
	}
}
