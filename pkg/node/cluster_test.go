package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/node"
)

// startCluster runs three JetStream servers routed to each other on loopback.
func startCluster(t *testing.T) []*server.Server { return testutil.StartCluster(t, 3) }

func clusterConn(t *testing.T, servers []*server.Server, first int) *nats.Conn {
	t.Helper()
	urls := []string{servers[first].ClientURL()}
	for i, s := range servers {
		if i != first {
			urls = append(urls, s.ClientURL())
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestThreeServerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test in -short mode")
	}
	servers := startCluster(t)
	ctx := context.Background()
	type member struct {
		id    string
		nc    *nats.Conn
		node  *node.Node
		store node.Store
		mem   *memNexlet
	}
	var members []*member
	for i := range servers {
		nc := clusterConn(t, servers, i)
		id := nodeID(t)
		store, err := node.OpenKVStore(ctx, nc, id, 3)
		if err != nil {
			t.Fatal(err)
		}
		m := &member{id: id, nc: nc, store: store, node: newNode(t, nc, id, store)}
		m.mem = runMemNexlet(t, nc, id, nil)
		waitNexlet(t, m.node)
		members = append(members, m)
	}
	knowEachOther(t, members[0].node, members[1].node, members[2].node)

	c, _ := client.New(clusterConn(t, servers, 2), "default")
	placed := map[string]int{}
	var ids []string
	for i := 0; i < 12; i++ {
		w, err := c.StartWorkload(ctx, def(fmt.Sprintf("w%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		placed[w.NodeID]++
		ids = append(ids, w.ID)
	}
	if len(placed) < 2 {
		t.Fatalf("12 workloads all landed on one node: %v", placed)
	}

	// Lose a NATS server: the control plane carries on and KV keeps every record.
	servers[0].Shutdown()
	testutil.Eventually(t, 30*time.Second, "all workloads listed after losing a server", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		l, err := c.ListWorkloads(cctx, "")
		return err == nil && len(l) == 12
	})
	testutil.Eventually(t, 30*time.Second, "a new workload to start after losing a server", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		w, err := c.StartWorkload(cctx, def("after"))
		if err == nil {
			ids = append(ids, w.ID)
			placed[w.NodeID]++
		}
		return err == nil
	})
	total := 0
	for _, m := range members {
		testutil.Eventually(t, 30*time.Second, "KV to answer", func() bool {
			recs, err := m.store.List(ctx)
			if err == nil {
				total += len(recs)
			}
			return err == nil
		})
	}
	if total != 13 {
		t.Fatalf("KV holds %d records, want 13", total)
	}

	// A node dies and comes back with its ID: it adopts its workloads from KV.
	victim := members[1]
	had := placed[victim.id]
	// (a start that failed while the server was lost may have reached a nexlet and been
	// undone: count starts from here on)
	startsBefore := map[string]int{}
	for _, m := range members {
		startsBefore[m.id] = m.mem.rt.Starts()
	}
	victim.node.Stop()
	store, err := node.OpenKVStore(ctx, victim.nc, victim.id, 3)
	if err != nil {
		t.Fatal(err)
	}
	back := newNode(t, victim.nc, victim.id, store)
	testutil.Eventually(t, 15*time.Second, "the restarted node to list its workloads", func() bool {
		n := 0
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		l, _ := c.ListWorkloads(cctx, "")
		for _, w := range l {
			if w.NodeID == victim.id {
				n++
			}
		}
		return n >= had
	})
	// Adoption never starts a workload again: no nexlet saw a start since.
	for _, m := range members {
		if got := m.mem.rt.Starts(); got != startsBefore[m.id] {
			t.Fatalf("node %s: %d starts after the restart (%d before)", m.id, got, startsBefore[m.id])
		}
	}
	if len(back.Peers()) < 2 {
		t.Fatalf("the restarted node knows peers %v", back.Peers())
	}
}
