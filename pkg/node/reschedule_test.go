package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/node"
)

// clusterNode starts a node with a KV store and a short node-loss window.
func clusterNode(t *testing.T, nc *nats.Conn, id string) *node.Node {
	t.Helper()
	store, err := node.OpenKVStore(context.Background(), nc, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	return newNodeWith(t, nc, node.Config{NodeID: id, Name: id[len(id)-4:], Store: store, NodeLossWindow: 1500 * time.Millisecond})
}

// A lost node's services run again on the other nodes under their IDs, exactly once, with
// a rescheduled event; when the node comes back, the copies its nexlet kept running stop.
func TestLostNodeWorkloadsRescheduled(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	type member struct {
		id   string
		nc   *nats.Conn
		node *node.Node
		mem  *memNexlet
	}
	var members []*member
	for range 3 {
		m := &member{id: nodeID(t), nc: testutil.Connect(t, s)}
		m.node = clusterNode(t, m.nc, m.id)
		m.mem = runMemNexlet(t, m.nc, m.id, nil)
		waitNexlet(t, m.node)
		members = append(members, m)
	}
	knowEachOther(t, members[0].node, members[1].node, members[2].node)
	c, _ := client.New(testutil.Connect(t, s), "default")
	events, _ := testutil.Connect(t, s).SubscribeSync("$NEX.FEED.default.event.>")
	on := map[string]string{}
	for i := range 9 {
		w, err := c.StartWorkload(ctx, def(fmt.Sprintf("w%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		on[w.ID] = w.NodeID
	}
	var victim *member
	for _, m := range members {
		n := 0
		for _, at := range on {
			if at == m.id {
				n++
			}
		}
		if n > 0 && (victim == nil || m.id < victim.id) {
			victim = m
		}
	}
	moving := map[string]bool{}
	for wid, at := range on {
		if at == victim.id {
			moving[wid] = true
		}
	}
	// The node goes (its nexlet keeps its copies, as a machine cut off from NATS would).
	victim.node.Stop()
	list := func() map[string][]string {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		l, _ := c.ListWorkloads(cctx, "")
		where := map[string][]string{}
		for _, w := range l {
			where[w.ID] = append(where[w.ID], w.NodeID)
		}
		return where
	}
	testutil.Eventually(t, 15*time.Second, "the lost node's workloads to run on the others", func() bool {
		where := list()
		for wid := range on {
			if len(where[wid]) != 1 || where[wid][0] == victim.id {
				return false
			}
		}
		return true
	})
	got := map[string]bool{}
	for len(got) < len(moving) {
		m, err := events.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("rescheduled events: %d of %d: %v", len(got), len(moving), err)
		}
		var ev v1.Event
		_ = json.Unmarshal(m.Data, &ev)
		if ev.Type == v1.EventRescheduled {
			if ev.Data["from_node"] != victim.id || !moving[ev.WorkloadID] {
				t.Fatalf("rescheduled event %+v", ev)
			}
			got[ev.WorkloadID] = true
		}
	}
	if n := countRunning(victim.mem); n != len(moving) {
		t.Fatalf("the cut-off nexlet runs %d copies, want %d", n, len(moving))
	}
	// The node comes back: its stale copies stop, the workloads stay where they moved.
	back := clusterNode(t, victim.nc, victim.id)
	testutil.Eventually(t, 10*time.Second, "the returning node's stale copies to stop", func() bool {
		return countRunning(victim.mem) == 0
	})
	where := list()
	for wid := range on {
		if len(where[wid]) != 1 || where[wid][0] == victim.id {
			t.Fatalf("after the node came back, workload %s runs on %v", wid, where[wid])
		}
	}
	_ = back
}

func countRunning(m *memNexlet) int {
	l, _ := m.rt.List(context.Background(), "")
	n := 0
	for _, w := range l {
		if w.State == v1.StateRunning {
			n++
		}
	}
	return n
}

// A node that keeps its records to itself refuses the cluster features with the reason.
func TestClusterFeaturesNeedSharedStore(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	startNode(t, nc, "solo", nil)
	c, _ := client.New(testutil.Connect(t, s), "default")
	d := def("cut")
	d.Disconnect = v1.DisconnectStop
	_, err := c.StartWorkload(context.Background(), d)
	if !v1.IsCode(err, v1.CodeNotImplemented) || !strings.Contains(err.Error(), "--state kv") {
		t.Fatalf("disconnect: stop on a node with memory state: %v", err)
	}
	began := time.Now()
	_, err = c.StartGroup(context.Background(), def("group"), 2, 0, "")
	if !v1.IsCode(err, v1.CodeNotImplemented) || !strings.Contains(err.Error(), "--state kv") || time.Since(began) > 3*time.Second {
		t.Fatalf("a replica group on a node with memory state: %v (after %s)", err, time.Since(began))
	}
}

// A replica group that lost a copy with nowhere to put it (one copy per node, a node
// gone) says so in its info, naming the copy and why.
func TestGroupSaysWhatIsMissing(t *testing.T) {
	nodes, c := threeWithMemNexlets(t)
	st, err := c.StartGroup(context.Background(), def("web"), 3, 1, "")
	if err != nil || len(st.Copies) != 3 {
		t.Fatalf("a group of 3: %+v %v", st, err)
	}
	victim := nodes[0]
	for _, n := range nodes {
		if n.ID() != st.Copies[0].NodeID {
			continue
		}
		victim = n
	}
	victim.Stop()
	testutil.Eventually(t, 15*time.Second, "the group to say which copy is missing and why", func() bool {
		// an error (the coordinator may be the node stopped) leaves st as it was: asked again
		now, err := c.Group(context.Background(), st.ID, v1.GroupRequest{Op: v1.GroupInfo})
		return err == nil && len(now.Copies) == 2 && strings.Contains(now.Pending, "as many copies of its group as max_per_node allows")
	})
}

// The coordinator is one actor that steps a rolling update between its other work: while
// one group's update waits for its new copies to prove themselves (2 s a batch), another
// group is created, and answered, before the update is (a lock held for the whole update
// kept every other group operation waiting for it before).
func TestGroupOperationsGoOnDuringAnUpdate(t *testing.T) {
	_, c := threeWithMemNexlets(t)
	ctx := context.Background()
	st, err := c.StartGroup(ctx, def("web"), 2, 2, "")
	if err != nil || len(st.Copies) != 2 {
		t.Fatalf("a group of 2: %+v %v", st, err)
	}
	updated := make(chan error, 1)
	go func() {
		d := def("web")
		d.Description = "version 2"
		_, err := c.UpdateGroup(ctx, st.ID, d, 1) // two batches of one: 4 s at least
		updated <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the update's first new copy", func() bool {
		list, err := c.ListWorkloads(ctx, "")
		n := 0
		for _, w := range list {
			if w.Group == st.ID {
				n++
			}
		}
		return err == nil && n == 3
	})
	other, err := c.StartGroup(ctx, def("api"), 1, 1, "")
	if err != nil || len(other.Copies) != 1 {
		t.Fatalf("a group created during another's update: %+v %v", other, err)
	}
	select {
	case err := <-updated:
		t.Fatalf("the update was answered (%v) before the group created during it", err)
	default:
	}
	if err := <-updated; err != nil {
		t.Fatalf("the update: %v", err)
	}
}

// A replica group whose start request no nexlet's schema takes is refused at create, as
// a start is: it was recorded, and auctioned and deployed again (each node checking the
// request) every round for as long as it stayed, its info saying "0 of 2 copies placed".
// An update to such a request is refused too, and the group runs on as it was.
func TestGroupOfAnInvalidStartRequestRefused(t *testing.T) {
	_, c := threeWithMemNexlets(t)
	ctx := context.Background()
	bad := def("web")
	bad.StartRequest = json.RawMessage(`{"value":42}`)
	st, err := c.StartGroup(ctx, bad, 2, 1, "")
	if !v1.IsCode(err, v1.CodeSchemaInvalid) || !strings.Contains(err.Error(), "start_request.value") || !strings.Contains(err.Error(), "not created") {
		t.Fatalf("a group whose start request does not match: %+v, %v", st, err)
	}
	list, err := c.ListWorkloads(ctx, "")
	if err != nil || len(list) != 0 {
		t.Fatalf("workloads after a refused group: %v %v", list, err)
	}
	good, err := c.StartGroup(ctx, def("web"), 2, 1, "")
	if err != nil || len(good.Copies) != 2 {
		t.Fatalf("a group of 2: %+v %v", good, err)
	}
	if _, err := c.UpdateGroup(ctx, good.ID, bad, 1); !v1.IsCode(err, v1.CodeStartFailed) || !strings.Contains(err.Error(), "start_request.value") {
		t.Fatalf("an update to a start request that does not match: %v", err)
	}
	now, err := c.Group(ctx, good.ID, v1.GroupRequest{Op: v1.GroupInfo})
	if err != nil || len(now.Copies) != 2 || string(now.Definition.StartRequest) != `{"value":"x"}` {
		t.Fatalf("the group after a refused update: %+v %v", now, err)
	}
}

// threeWithMemNexlets starts three cluster nodes, each with a memory nexlet, that know
// each other, and a client of namespace default.
func threeWithMemNexlets(t *testing.T) ([]*node.Node, *client.Client) {
	s := testutil.StartServer(t)
	var nodes []*node.Node
	for range 3 {
		nc := testutil.Connect(t, s)
		id := nodeID(t)
		n := clusterNode(t, nc, id)
		runMemNexlet(t, nc, id, nil)
		waitNexlet(t, n)
		nodes = append(nodes, n)
	}
	knowEachOther(t, nodes...)
	c, _ := client.New(testutil.Connect(t, s), "default")
	return nodes, c
}

// A lost node's workload that no other node can take is listed with why, not with the
// promise that it moves (a walk: a service whose values were sealed for its node's key
// alone was said to move once the node-loss window had passed, and never could).
func TestLostNodesUnplacedWorkloadSaysWhy(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	var nodes []*node.Node
	var ids []string
	for i := range 2 {
		nc := testutil.Connect(t, s)
		id := nodeID(t)
		store, err := node.OpenKVStore(ctx, nc, id, 1)
		if err != nil {
			t.Fatal(err)
		}
		n := newNodeWith(t, nc, node.Config{NodeID: id, Name: fmt.Sprint("n", i), Store: store, NodeLossWindow: 1500 * time.Millisecond,
			Tags: map[string]string{"zz": fmt.Sprint(i)}})
		runMemNexlet(t, nc, id, nil)
		waitNexlet(t, n)
		nodes, ids = append(nodes, n), append(ids, id)
	}
	knowEachOther(t, nodes...)
	c, _ := client.New(testutil.Connect(t, s), "default")
	pinned := def("pinned")
	pinned.Tags = map[string]string{"zz": "0"} // only the first node takes it
	w, err := c.StartWorkload(ctx, pinned)
	if err != nil || w.NodeID != ids[0] {
		t.Fatalf("the pinned service: %+v %v", w, err)
	}
	nodes[0].Stop()
	note := ""
	testutil.Eventually(t, 15*time.Second, "the list to say why the lost node's workload is not placed", func() bool {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		l, _ := c.ListWorkloads(lctx, "")
		for _, x := range l {
			if x.ID == w.ID {
				note = x.Metadata["note"]
			}
		}
		return strings.Contains(note, "no other node can take it yet (trying again): ")
	})
	if strings.Contains(note, "move to other nodes") || !strings.Contains(note, "not heard from since") {
		t.Fatalf("the note: %s", note)
	}
}
