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

// An idle coordinator of a cluster without replica groups does not read every record
// every few seconds: it did (100 gets every 3 s at 100 services, most of an idle node's
// work), to find copies of groups that are gone, which a read now and then finds.
func TestIdleCoordinatorReadsNoRecords(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	n := newNode(t, nc, id, kvStore(t, nc, id))
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
	// a window of three group rounds (every 3 s): time is what is measured here, it
	// synchronises nothing; one full read of the records is allowed in it
	time.Sleep(10 * time.Second)
	used := gets.Load()
	t.Logf("%d reads of a record in 10 s", used)
	if used >= 2*workloads {
		t.Fatalf("an idle coordinator read %d records in 10 s, with %d records and no group: it reads every record every round", used, workloads)
	}
}
