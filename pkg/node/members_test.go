package node_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
	"github.com/nexrun/nex/pkg/node"
)

// A node that falls silent (killed: no leaving announcement) is no longer taken for alive
// once the node-loss window has passed, when the window is shorter than three
// announcement intervals: fan-outs wait for every node some answer names alive, and the
// coordinator's takeover auctions each waited out their straggler bound for a node it
// had already taken for lost (failover at a 3 s window took 7.8 s, 4.8 s past it).
func TestSilentNodeIsNotWaitedForPastTheWindow(t *testing.T) {
	s := testutil.StartServer(t)
	cfg := func(name string) node.Config {
		return node.Config{NodeID: nodeID(t), Name: name, Store: node.NewMemoryStore(),
			AnnounceInterval: time.Second, NodeLossWindow: 1500 * time.Millisecond}
	}
	a := newNodeWith(t, testutil.Connect(t, s), cfg("a"))
	ncB := testutil.Connect(t, s)
	b := newNodeWith(t, ncB, cfg("b"))
	knowEachOther(t, a, b)
	ncB.Close() // b falls silent: it announces nothing more, leaving or not
	killed := time.Now()
	testutil.Eventually(t, 10*time.Second, "the silent node to be no longer taken for alive", func() bool {
		return !slices.Contains(a.Peers(), b.ID())
	})
	// three announcement intervals (3 s) and a sweep's period (1 s) was the bound before
	if took := time.Since(killed); took > 2500*time.Millisecond {
		t.Fatalf("the silent node was taken for alive for %s after it fell silent; the node-loss window is 1.5 s", took)
	}
}
