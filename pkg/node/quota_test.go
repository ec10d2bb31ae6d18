package node_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/node"
	"github.com/nexrun/nex/pkg/node/auction"
)

// A namespace's quota bounds what it runs across the cluster: two nodes on one KV state,
// a quota of 3 workloads for a, 1 GiB of memory for every other namespace but system. A
// start past it is refused with quota_exceeded naming what is in use (on whichever node
// it lands), a stopped workload frees its place, a retried start with its request ID still
// finds the workload it made, and USAGE sums the nodes' shares.
func TestNamespaceQuota(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	quotas := map[string]v1.Quota{"a": {Workloads: 3}, "*": {Memory: 1 << 30}}
	var nodes []*node.Node
	for i := range 2 {
		id := nodeID(t)
		store := kvStore(t, testutil.Connect(t, s), id)
		nodes = append(nodes, startSizedNode(t, s, fmt.Sprint("q", i), node.Config{NodeID: id, Store: store, Quotas: quotas}, "memory"))
	}
	knowEachOther(t, nodes...)
	ca, _ := client.New(testutil.Connect(t, s), "a")
	var ids []string
	placed := map[string]bool{}
	for i := range 3 {
		w, _, err := ca.StartOnce(ctx, def(fmt.Sprint("w", i)), fmt.Sprint("r", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, w.ID)
		placed[w.NodeID] = true
	}
	if len(placed) != 2 {
		t.Fatalf("3 starts on 2 least-loaded nodes landed on %d", len(placed))
	}
	for range 4 { // wherever it lands, the other node's copies count
		_, err := ca.StartWorkload(ctx, def("fourth"))
		if e := v1.AsError(err); e.ErrorCode != v1.CodeQuotaExceeded || e.Code != 403 || !strings.Contains(e.Message, "namespace a has 3 workloads, its quota is 3") {
			t.Fatalf("a 4th start of a (copies on %d nodes): %v", len(placed), err)
		}
	}
	// the retry of a start that was made answers with that workload, not with the quota
	w, before, err := ca.StartOnce(ctx, def("w0"), "r0")
	if err != nil || !before || w.ID != ids[0] {
		t.Fatalf("a retried start at the quota: %+v %v", w, err)
	}
	rep, _, err := ca.Usage(ctx)
	if err != nil || len(rep) != 1 || rep[0].Usage.Workloads != 3 || rep[0].Quota == nil || rep[0].Quota.Workloads != 3 || rep[0].Nodes != 2 {
		t.Fatalf("usage of a: %+v %v", rep, err)
	}
	if _, err := ca.StopWorkload(ctx, ids[1], v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.StartWorkload(ctx, def("after-stop")); err != nil {
		t.Fatalf("a start after a stop freed a place: %v", err)
	}

	// "*": memory must be asked for, and its sum fits
	cb, _ := client.New(testutil.Connect(t, s), "b")
	if _, err := cb.StartWorkload(ctx, def("no-memory")); !strings.Contains(fmt.Sprint(err), "a start must ask for start_request.resources.memory") {
		t.Fatalf("b's start without memory: %v", err)
	}
	for i := range 2 {
		if _, err := cb.StartWorkload(ctx, sized(fmt.Sprint("m", i), `{"memory":"512MiB"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cb.StartWorkload(ctx, sized("m2", `{"memory":"8MiB"}`)); !strings.Contains(fmt.Sprint(err), "namespace b asks for 8 MiB memory, 1 GiB of its quota of 1 GiB is in use") {
		t.Fatalf("b's start past its memory quota: %v", err)
	}
	// system has no quota unless named
	cs, _ := client.New(testutil.Connect(t, s), v1.SystemNamespace)
	if _, err := cs.StartWorkload(ctx, def("admin")); err != nil {
		t.Fatal(err)
	}
	all, _, err := cs.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range all {
		got[r.Namespace] = fmt.Sprintf("%d %s %v", r.Usage.Workloads, r.Usage.Memory, r.Quota)
	}
	want := map[string]string{"a": "3 0 B workloads=3", "b": "2 1 GiB memory=1GiB", "system": "1 0 B <nil>", "*": "0 0 B memory=1GiB"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("usage from system: %v, want %v", got, want)
	}
}

// Under a memory quota a start that asks for no memory is taken when the node gives it a
// default limit (nexd --default-limits), and counts that default.
func TestQuotaCountsDefaultLimits(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	startSizedNode(t, s, "d", node.Config{Quotas: map[string]v1.Quota{"*": {Memory: 1 << 30}}, DefaultLimits: v1.Resources{Memory: 512 << 20}}, "memory")
	c, _ := client.New(testutil.Connect(t, s), "b")
	for i := range 2 {
		if _, err := c.StartWorkload(ctx, def(fmt.Sprint("d", i))); err != nil {
			t.Fatalf("a start of the default 512 MiB under a quota of 1 GiB: %v", err)
		}
	}
	if _, err := c.StartWorkload(ctx, def("d2")); !strings.Contains(fmt.Sprint(err), "namespace b asks for 512 MiB memory, 1 GiB of its quota of 1 GiB is in use") {
		t.Fatalf("a third start of the default: %v", err)
	}
}

// A namespace's bids not yet deployed hold room only up to its quota, and at most
// MaxRoomBidsPerNamespace of them: a tenant that auctioned again and again without
// deploying held a node's whole memory, its quota a seventh of it, and every other
// namespace's starts were declined. A released bid frees its place; another namespace
// still gets its bids.
func TestUnusedBidsBounded(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	startSizedNode(t, s, "q", node.Config{Memory: 4 << 30, Quotas: map[string]v1.Quota{"a": {Memory: 512 << 20}}}, "memory")
	ca, _ := client.New(testutil.Connect(t, s), "a")
	bid := func(c *client.Client, res string) ([]v1.Bid, client.Declines) { return bidFor(t, c, res) }
	if _, declines := bid(ca, "memory=1GiB"); len(declines) != 1 || !strings.Contains(declines[0].Decline, "namespace a asks for 1 GiB memory, 0 B of its quota of 512 MiB is in use (nexd --namespace-quota a=memory=512MiB)") {
		t.Fatalf("a's bid larger than its whole quota: %+v", declines)
	}
	var held []v1.Bid
	for range 2 {
		bids, declines := bid(ca, "memory=256MiB")
		if len(bids) != 1 {
			t.Fatalf("a's bid within its quota: %v", declines)
		}
		held = append(held, bids...)
	}
	if _, declines := bid(ca, "memory=256MiB"); len(declines) != 1 || !strings.Contains(declines[0].Decline, "namespace a asks for 256 MiB memory, 512 MiB of its quota of 512 MiB is in use, in 2 bids of this node not yet deployed") {
		t.Fatalf("a's bid past its quota in unused bids: %+v", declines)
	}
	ca.ReleaseBids(ctx, held[:1], "", &v1.Resources{Memory: 256 << 20})
	if bids, declines := bid(ca, "memory=256MiB"); len(bids) != 1 {
		t.Fatalf("a's bid after it released one: %v", declines)
	}
	// b has no quota: its bids are bounded in number
	cb, _ := client.New(testutil.Connect(t, s), "b")
	for i := range auction.MaxRoomBidsPerNamespace {
		if bids, declines := bid(cb, "memory=4MiB"); len(bids) != 1 {
			t.Fatalf("b's bid %d: %v", i, declines)
		}
	}
	if _, declines := bid(cb, "memory=4MiB"); len(declines) != 1 || !strings.Contains(declines[0].Decline, "namespace b holds 64 bids of this node that hold room and are not yet deployed") {
		t.Fatalf("b's bid past the bound: %+v", declines)
	}
	if _, err := cb.StartWorkload(ctx, def("no-room-asked")); err != nil { // a bid for no room is no room held
		t.Fatalf("b's start asking for nothing: %v", err)
	}
	cc, _ := client.New(testutil.Connect(t, s), "c")
	if _, err := cc.StartWorkload(ctx, sized("c", `{"memory":"1GiB"}`)); err != nil {
		t.Fatalf("c's start while a and b hold their bids: %v", err)
	}
}

// A namespace without a quota holds at most half of a node's memory and CPU in bids it
// has not deployed (its first bid may ask for more): a newcomer's walk held a node's CPU
// with three bids it never used, and another namespace's starts were declined.
func TestUnusedBidsHoldHalfWithoutAQuota(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	startSizedNode(t, s, "h", node.Config{Memory: 4 << 30, CPUs: 2}, "memory", "cpu")
	bid := func(c *client.Client, res string) ([]v1.Bid, client.Declines) { return bidFor(t, c, res) }
	ca, _ := client.New(testutil.Connect(t, s), "a")
	for _, res := range []string{"memory=2560MiB", "cpu=0.5"} { // the first: more than half
		if bids, declines := bid(ca, res); len(bids) != 1 {
			t.Fatalf("a's bid for %s: %v", res, declines)
		}
	}
	if _, declines := bid(ca, "memory=512MiB"); len(declines) != 1 || !strings.Contains(declines[0].Decline, "namespace a holds 2.5 GiB of this node's 4 GiB of memory in 2 bids not yet deployed; with 512 MiB more it would hold over half") {
		t.Fatalf("a's bid past half the memory: %+v", declines)
	}
	if bids, declines := bid(ca, "cpu=0.5"); len(bids) != 1 {
		t.Fatalf("a's bid for half the CPUs: %v", declines)
	}
	if _, declines := bid(ca, "cpu=0.1"); len(declines) != 1 || !strings.Contains(declines[0].Decline, "namespace a holds 1 of this node's 2 CPUs in 3 bids not yet deployed; with 0.1 more it would hold over half") {
		t.Fatalf("a's bid past half the CPUs: %+v", declines)
	}
	cb, _ := client.New(testutil.Connect(t, s), "b")
	if _, err := cb.StartWorkload(ctx, sized("b", `{"memory":"1GiB","cpu":0.9}`)); err != nil {
		t.Fatalf("b's start while a holds its bids: %v", err)
	}
}

// bidFor auctions a service of the memory nexlet asking for res (memory=..., cpu=...).
func bidFor(t *testing.T, c *client.Client, res string) ([]v1.Bid, client.Declines) {
	t.Helper()
	r, err := v1.ParseResources(res)
	if err != nil {
		t.Fatal(err)
	}
	bids, declines, err := c.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService, Resources: &r})
	if err != nil {
		t.Fatal(err)
	}
	return bids, declines
}

// A replica group's count counts against its namespace's quota of workloads, its copies
// placed or not: a group none of whose copies could be placed held nothing, and a tenant
// made 300 of them, each auctioned by the coordinator every round (a tenant's attack).
func TestGroupsCountAgainstTheQuota(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	id := nodeID(t)
	startSizedNode(t, s, "gq", node.Config{NodeID: id, Store: kvStore(t, testutil.Connect(t, s), id), Quotas: map[string]v1.Quota{"a": {Workloads: 4}, "c": {Workloads: 2}}}, "memory")
	ca, _ := client.New(testutil.Connect(t, s), "a")
	if _, err := ca.StartWorkload(ctx, def("loose")); err != nil {
		t.Fatal(err)
	}
	nowhere := def("nowhere")
	nowhere.Tags = map[string]string{"zz": "none"} // no node has it: no copy is placed
	g, err := ca.StartGroup(ctx, nowhere, 2, 0, "")
	if err != nil || len(g.Copies) != 0 {
		t.Fatalf("a group of 2 within the quota: %+v %v", g, err)
	}
	refused := func(what string, err error, want string) {
		t.Helper()
		if e := v1.AsError(err); e.ErrorCode != v1.CodeQuotaExceeded || !strings.Contains(e.Message, want) {
			t.Fatalf("%s past the quota: %v", what, err)
		}
	}
	_, err = ca.StartGroup(ctx, nowhere, 2, 0, "")
	refused("a second group of 2", err, "namespace a has a quota of 4 workloads: its other replica groups hold 2 places and its other workloads 1, so a group of 2 copies would pass it")
	_, err = ca.Group(ctx, g.ID, v1.GroupRequest{Op: v1.GroupScale, Replicas: 4})
	refused("a scale to 4", err, "its other replica groups hold 0 places and its other workloads 1, so a group of 4 copies would pass it")
	if _, err := ca.StartGroup(ctx, nowhere, 1, 0, ""); err != nil {
		t.Fatalf("a group of 1 that fits: %v", err)
	}
	// a start counts what the records keep (the groups' copies placed), as it did
	if _, err := ca.StartWorkload(ctx, def("fifth")); err != nil {
		t.Fatalf("a start while the groups hold every place, none of their copies placed: %v", err)
	}
	if _, err := ca.Group(ctx, g.ID, v1.GroupRequest{Op: v1.GroupScale, Replicas: 0}); err != nil {
		t.Fatalf("a scale down is never refused: %v", err)
	}
	// a group of no copy holds a place all the same (a tenant made 1,204 of them)
	for range 4 {
		_, _ = ca.StartGroup(ctx, nowhere, 0, 0, "")
	}
	_, err = ca.StartGroup(ctx, nowhere, 0, 0, "")
	refused("a group of none", err, "so a group of 1 copy would pass it (a group holds its count of places, at least one")
	// at its quota, a namespace's update cannot start a new copy before an old one stops
	cc, _ := client.New(testutil.Connect(t, s), "c")
	full, err := cc.StartGroup(ctx, def("full"), 2, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Copies) != 2 {
		t.Fatalf("a group of 2 at the quota of 2: %+v", full)
	}
	if _, err := cc.RestartGroup(ctx, full.ID, 1); err == nil || !strings.Contains(err.Error(), "an update starts each new copy before it stops an old one, so the namespace needs room for --max-parallel more workloads") {
		t.Fatalf("a restart at the quota: %v", err)
	}
	cb, _ := client.New(testutil.Connect(t, s), "b") // no quota
	for range 3 {
		if _, err := cb.StartGroup(ctx, nowhere, 5, 0, ""); err != nil {
			t.Fatalf("b, without a quota: %v", err)
		}
	}
}

// countingGroups is a state store that counts its listings of namespace b's groups.
type countingGroups struct {
	*node.KVStore
	ofB atomic.Int32
}

func (s *countingGroups) Groups(ctx context.Context, ns string) ([]*node.Group, error) {
	if ns == "b" {
		s.ofB.Add(1)
	}
	return s.KVStore.Groups(ctx, ns)
}

// A tenant's GROUPS lists its own groups' records alone, and again only when one of them
// was written: another tenant's writes, each a new revision of the groups, had every
// GROUPS list every group again (a newcomer's walk: a tenant scaling its 1,204 groups
// four times a second made another's list take 0.35 s).
func TestGroupsListsTheNamespacesOwn(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	id := nodeID(t)
	store := &countingGroups{KVStore: kvStore(t, testutil.Connect(t, s), id).(*node.KVStore)}
	startSizedNode(t, s, "gl", node.Config{NodeID: id, Store: store}, "memory")
	ca, _ := client.New(testutil.Connect(t, s), "a")
	cb, _ := client.New(testutil.Connect(t, s), "b")
	nowhere := def("nowhere")
	nowhere.Tags = map[string]string{"zz": "none"} // no copy placed: nothing but the group's record
	ga, err := ca.StartGroup(ctx, nowhere, 1, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	gb, err := cb.StartGroup(ctx, nowhere, 1, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	listsB := func(want int) {
		t.Helper()
		l, err := cb.Groups(ctx)
		if err != nil || len(l) != 1 || l[0].ID != gb.ID || l[0].Replicas != want {
			t.Fatalf("b's groups: %+v %v, want %s of %d", l, err, gb.ID, want)
		}
	}
	listsB(1)
	if n := store.ofB.Load(); n != 1 {
		t.Fatalf("b's GROUPS listed b's groups %d times, want once", n)
	}
	for i := range 6 {
		if _, err := ca.Group(ctx, ga.ID, v1.GroupRequest{Op: v1.GroupScale, Replicas: i % 2}); err != nil {
			t.Fatal(err)
		}
		listsB(1)
	}
	if n := store.ofB.Load(); n != 1 {
		t.Fatalf("a's writes had b's GROUPS list again: %d listings, want 1", n)
	}
	if _, err := cb.Group(ctx, gb.ID, v1.GroupRequest{Op: v1.GroupScale, Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	listsB(2) // b's own write is seen at once
}
