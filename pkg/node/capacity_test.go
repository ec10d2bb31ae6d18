package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/nexlet/memory"
	"github.com/nexrun/nex/pkg/node"
)

// startSizedNode runs a node configured by cfg with a memory nexlet on a connection of
// its own. With limits, the nexlet registers saying it enforces them with cgroups v2 (the
// memory nexlet enforces nothing, but a node knows only what registrations say).
func startSizedNode(t *testing.T, s *server.Server, name string, cfg node.Config, limits ...string) *node.Node {
	t.Helper()
	nc := testutil.Connect(t, s)
	cfg.Name = name
	if cfg.NodeID == "" { // else the one its store was opened for
		cfg.NodeID = nodeID(t)
	}
	n := newNodeWith(t, nc, cfg)
	cgroups := v1.CgroupsNone
	if len(limits) > 0 {
		cgroups = v1.CgroupsV2
	}
	serveMemoryNexlet(t, nc, n, "mem", cgroups, limits)
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := n.WaitForNexlet(wctx, "memory"); err != nil {
		t.Fatal(err)
	}
	return n
}

// serveMemoryNexlet serves a memory nexlet with ID id for node n until the test ends or
// the returned function is called.
func serveMemoryNexlet(t *testing.T, nc *nats.Conn, n *node.Node, id, cgroups string, limits []string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt := memory.New(id, nexlet.NewFeed(nc, n.ID()))
	done := make(chan error, 1)
	go func() {
		done <- nexlet.Serve(ctx, nc, nexlet.Config{
			NodeID: n.ID(), NexletID: id, RegisterType: "memory",
			Lifecycles: []string{v1.LifecycleService, v1.LifecycleJob}, StartRequestSchema: []byte(memory.Schema),
			Cgroups: cgroups, Limits: limits,
		}, rt)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// sized starts a memory workload asking for res (JSON).
func sized(name, res string) v1.WorkloadDefinition {
	d := def(name)
	d.StartRequest = json.RawMessage(`{"value":"x","resources":` + res + `}`)
	return d
}

// declines collects the reasons of a start no node took.
func declineReasons(t *testing.T, err error) map[string]string {
	t.Helper()
	var e *v1.Error
	if !errors.As(err, &e) || e.ErrorCode != v1.CodeNoPlacement {
		t.Fatalf("want no_placement, got %v", err)
	}
	out := map[string]string{}
	for _, d := range e.Details.(client.Declines) {
		out[d.NodeName] = d.Decline
	}
	return out
}

func TestCapacityDeclinesWhatDoesNotFit(t *testing.T) {
	s := testutil.StartServer(t)
	small := startSizedNode(t, s, "small", node.Config{Memory: 1 << 30, CPUs: 2}, v1.ResourceMemory, v1.ResourceCPU)
	big := startSizedNode(t, s, "big", node.Config{Memory: 4 << 30, CPUs: 8, ReserveMemory: 512 << 20}, v1.ResourceMemory, v1.ResourceCPU)
	knowEachOther(t, small, big)
	nc := testutil.Connect(t, s)
	c, _ := client.New(nc, "default")
	ctx := context.Background()

	// the one node with room takes it, every time
	for i := range 3 {
		w, err := c.StartWorkload(ctx, sized(fmt.Sprint("w", i), `{"memory":"1GiB"}`))
		if err != nil {
			t.Fatal(err)
		}
		if w.NodeID != big.ID() {
			t.Fatalf("a 1 GiB workload landed on the node of 1 GiB (%s), not the one with room", w.NodeID)
		}
	}
	tests := []struct {
		name, res string
		want      map[string]string
	}{
		{"memory", `{"memory":"2GiB"}`, map[string]string{
			"small": "needs 2 GiB memory, 1 GiB free of 1 GiB", "big": "needs 2 GiB memory, 512 MiB free of 3.5 GiB"}},
		{"cpu", `{"cpu":10}`, map[string]string{"small": "needs 10 cpu, 2 free of 2", "big": "needs 10 cpu, 8 free of 8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.StartWorkload(ctx, sized("x", tt.res))
			got := declineReasons(t, err)
			for node, want := range tt.want {
				if got[node] != want {
					t.Errorf("node %s declined with %q, want %q", node, got[node], want)
				}
			}
		})
	}
	// a workload that asks for nothing reserves nothing: it always fits
	if _, err := c.StartWorkload(ctx, def("free")); err != nil {
		t.Fatal(err)
	}
	sys, _ := client.New(nc, v1.SystemNamespace)
	info, err := sys.NodeInfo(ctx, big.ID())
	if err != nil {
		t.Fatal(err)
	}
	want := v1.NodeCapacity{Memory: 4 << 30, CPU: 8, ReservedMemory: 512 << 20, RequestedMemory: 3 << 30, Placement: v1.PlacementLeastLoaded}
	if info.Capacity == nil || *info.Capacity != want {
		t.Fatalf("capacity %+v, want %+v", info.Capacity, want)
	}
}

func TestLimitsDeclinedByANodeThatCannotEnforceThem(t *testing.T) {
	s := testutil.StartServer(t)
	plain := startSizedNode(t, s, "plain", node.Config{Memory: 8 << 30})
	limited := startSizedNode(t, s, "limited", node.Config{Memory: 8 << 30}, v1.ResourceMemory)
	knowEachOther(t, plain, limited)
	nc := testutil.Connect(t, s)
	c, _ := client.New(nc, "default")
	ctx := context.Background()
	if plain.Info(false).Tags[v1.TagCgroups] != v1.CgroupsNone || limited.Info(false).Tags[v1.TagCgroups] != v1.CgroupsV2 {
		t.Fatalf("nex.cgroups: plain %q, limited %q", plain.Info(false).Tags[v1.TagCgroups], limited.Info(false).Tags[v1.TagCgroups])
	}
	for i := range 4 {
		w, err := c.StartWorkload(ctx, sized(fmt.Sprint("w", i), `{"memory":"64MiB"}`))
		if err != nil {
			t.Fatal(err)
		}
		if w.NodeID != limited.ID() {
			t.Fatalf("a workload with a memory limit landed on a node that cannot enforce it")
		}
	}
	_, err := c.StartWorkload(ctx, sized("pids", `{"memory":"64MiB","pids":10}`))
	got := declineReasons(t, err)
	for node, want := range map[string]string{
		"plain":   "cannot enforce resources.memory: no nexlet of type memory here limits memory (nex.cgroups=none)",
		"limited": "cannot enforce resources.pids: no nexlet of type memory here limits pids (nex.cgroups=v2)",
	} {
		if got[node] != want {
			t.Errorf("node %s declined with %q, want %q", node, got[node], want)
		}
	}
	// a tag asks for the kind: matched by what the type's nexlets offer
	_, declines, err := c.Auction(ctx, v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService, Tags: map[string]string{v1.TagCgroups: v1.CgroupsV2}})
	if err != nil || len(declines) != 1 || declines[0].Decline != "tag nex.cgroups=v2 not matched (node has nex.cgroups=none)" {
		t.Fatalf("declines %+v, %v", declines, err)
	}
}

func TestLeastLoadedSpreads(t *testing.T) {
	s := testutil.StartServer(t)
	a := startSizedNode(t, s, "a", node.Config{Memory: 4 << 30, CPUs: 2}, v1.ResourceMemory, v1.ResourceCPU)
	b := startSizedNode(t, s, "b", node.Config{Memory: 4 << 30, CPUs: 2}, v1.ResourceMemory, v1.ResourceCPU)
	knowEachOther(t, a, b)
	nc := testutil.Connect(t, s)
	c, _ := client.New(nc, "default")
	ctx := context.Background()

	// the load is the larger share, with the workload placed
	bids, _, err := c.Auction(ctx, v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService, Resources: &v1.Resources{Memory: 1 << 30, CPU: 1}})
	if err != nil || len(bids) != 2 {
		t.Fatalf("bids %+v, %v", bids, err)
	}
	for _, bid := range bids {
		if bid.Load == nil || *bid.Load != 0.5 || bid.Workloads != 0 {
			t.Fatalf("bid of %s: load %v, workloads %d; want 0.5 and 0", bid.NodeID, bid.Load, bid.Workloads)
		}
	}
	c.ReleaseBids(ctx, bids, "", &v1.Resources{Memory: 1 << 30, CPU: 1})
	// equal loads: the node running fewer workloads wins, so starts alternate
	count := func(n int, res string) map[string]int {
		t.Helper()
		per := map[string]int{}
		for range n {
			w, err := c.StartWorkload(ctx, sized("w", res))
			if err != nil {
				t.Fatal(err, declineReasons(t, err))
			}
			per[w.NodeID]++
		}
		return per
	}
	if per := count(6, `{"memory":"256MiB"}`); per[a.ID()] != 3 || per[b.ID()] != 3 {
		t.Fatalf("6 starts of 256 MiB on two empty nodes: %d and %d; want 3 and 3", per[a.ID()], per[b.ID()])
	}
	// a node holding more is not picked while another has less
	per := count(1, `{"memory":"2GiB"}`)
	full, other := a.ID(), b.ID()
	if per[b.ID()] == 1 {
		full, other = other, full
	}
	if per = count(6, `{"memory":"256MiB"}`); per[other] != 6 {
		t.Fatalf("starts of 256 MiB after one of 2 GiB: %d on the node running it, %d on the other; want 0 and 6", per[full], per[other])
	}
}

func TestRandomPlacementBidsWithoutLoad(t *testing.T) {
	s := testutil.StartServer(t)
	startSizedNode(t, s, "r", node.Config{Memory: 4 << 30, Placement: v1.PlacementRandom}, v1.ResourceMemory)
	c, _ := client.New(testutil.Connect(t, s), "default")
	bids, _, err := c.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService, Resources: &v1.Resources{Memory: 1 << 30}})
	if err != nil || len(bids) != 1 {
		t.Fatalf("bids %+v, %v", bids, err)
	}
	if bids[0].Load != nil {
		t.Fatalf("a node placing at random bid with load %v", *bids[0].Load)
	}
}

func TestOutstandingBidsHoldTheirRoom(t *testing.T) {
	s := testutil.StartServer(t)
	n := startSizedNode(t, s, "n", node.Config{Memory: 1 << 30, BidTTL: 2 * time.Second}, v1.ResourceMemory)
	nc := testutil.Connect(t, s)
	c, _ := client.New(nc, "default")
	ctx := context.Background()
	req := v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService, Resources: &v1.Resources{Memory: 600 << 20}}
	auction := func() ([]v1.Bid, client.Declines) {
		t.Helper()
		bids, declines, err := c.Auction(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return bids, declines
	}
	const full = "needs 600 MiB memory, 424 MiB free of 1 GiB"
	// two auctions back to back for the last room: one bid, and the second declines
	first, _ := auction()
	if len(first) != 1 {
		t.Fatal("no bid for 600 MiB of 1 GiB")
	}
	if bids, declines := auction(); len(bids) != 0 || len(declines) != 1 || declines[0].Decline != full {
		t.Fatalf("second auction: %d bids, declines %+v; want the decline %q", len(bids), declines, full)
	}
	// the bid used, its workload holds the room
	d := sized("w", `{"memory":"600MiB"}`)
	d.Namespace = "default"
	var info v1.WorkloadInfo
	if err := svc.Call(ctx, natsconn.Plain(nc), v1.ControlSubject("default", v1.VerbDeploy, first[0].BidID), v1.DeployRequest{Workload: d}, &info); err != nil {
		t.Fatal(err)
	}
	if bids, _ := auction(); len(bids) != 0 {
		t.Fatal("a bid for room a workload holds")
	}
	if _, err := c.StopWorkload(ctx, info.ID, v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	// a bid never used holds its room until it expires
	unused, _ := auction()
	if len(unused) != 1 {
		t.Fatal("no bid once the workload stopped")
	}
	if bids, _ := auction(); len(bids) != 0 {
		t.Fatal("a bid for room an outstanding bid holds")
	}
	testutil.Eventually(t, 5*time.Second, "the unused bid to expire and free its room", func() bool {
		if time.Now().Before(unused[0].ExpiresAt) {
			return false
		}
		bids, _ := auction()
		return len(bids) == 1
	})
	if got := n.Info(false).Capacity.RequestedMemory; got != 0 {
		t.Fatalf("requested memory %s after the stop", got)
	}
}

// A deploy must carry the resources its bid was made for: else a client could take a
// bid for nothing and deploy a workload asking for the whole node.
func TestDeployChecksTheBidsResources(t *testing.T) {
	s := testutil.StartServer(t)
	startSizedNode(t, s, "n", node.Config{Memory: 1 << 30}, v1.ResourceMemory)
	nc := testutil.Connect(t, s)
	c, _ := client.New(nc, "default")
	bids, _, err := c.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService})
	if err != nil || len(bids) != 1 {
		t.Fatalf("bids %+v %v", bids, err)
	}
	d := sized("big", `{"memory":"900MiB"}`)
	d.Namespace = "default"
	msg, err := nc.Request(v1.ControlSubject("default", v1.VerbDeploy, bids[0].BidID), mustJSON(v1.DeployRequest{Workload: d}), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Nats-Service-Error-Code") != "400" || !strings.Contains(string(msg.Data), "was for resources none, not memory 900 MiB") {
		t.Fatalf("deploy reply %v %s", msg.Header, msg.Data)
	}
}

// TestNexletsOfATypeShareANode: a node running two nexlets of a type (as when one
// process cannot hold the descriptors of all its workloads) fills them evenly.
func TestNexletsOfATypeShareANode(t *testing.T) {
	s := testutil.StartServer(t)
	n := startSizedNode(t, s, "two", node.Config{})
	serveMemoryNexlet(t, testutil.Connect(t, s), n, "mem-2", v1.CgroupsNone, nil)
	deadline := time.Now().Add(5 * time.Second)
	for len(n.Info(false).Nexlets) < 2 || n.Info(false).Nexlets[1].Health != v1.HealthHealthy {
		if time.Now().After(deadline) {
			t.Fatalf("the second nexlet did not register: %+v", n.Info(false).Nexlets)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, _ := client.New(testutil.Connect(t, s), "default")
	for i := range 10 {
		if _, err := c.StartWorkload(context.Background(), def(fmt.Sprint("w", i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range n.Info(false).Nexlets {
		if x.Workloads != 5 {
			t.Fatalf("10 starts on a node with two nexlets: %s runs %d, want 5 each", x.NexletID, x.Workloads)
		}
	}
}

// A node whose nexlet has vanished (killed, not yet restarted) lists that nexlet's
// workloads from their records, as unknown, at once: it does not keep the client waiting
// for the nexlet to come back, which the client, hearing the other nodes, would not do.
func TestListDoesNotWaitForAVanishedNexlet(t *testing.T) {
	s := testutil.StartServer(t)
	a := startSizedNode(t, s, "a", node.Config{})
	b := newNodeWith(t, testutil.Connect(t, s), node.Config{NodeID: nodeID(t), Name: "b"})
	stop := serveMemoryNexlet(t, testutil.Connect(t, s), b, "mem", v1.CgroupsNone, nil)
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.WaitForNexlet(wctx, "memory"); err != nil {
		t.Fatal(err)
	}
	knowEachOther(t, a, b)
	c, _ := client.New(testutil.Connect(t, s), "default")
	var onB string
	for i := range 4 {
		w, err := c.StartWorkload(context.Background(), def(fmt.Sprint("w", i)))
		if err != nil {
			t.Fatal(err)
		}
		if w.NodeID == b.ID() {
			onB = w.ID
		}
	}
	if onB == "" {
		t.Fatal("no workload landed on b")
	}
	stop() // b's nexlet is gone; b still counts it registered
	list, missing, err := c.ListReport(context.Background(), v1.ListRequest{})
	if err != nil || len(missing) != 0 {
		t.Fatalf("list: missing %v, err %v", missing, err)
	}
	for _, w := range list {
		if w.ID == onB {
			if w.State != v1.StateUnknown {
				t.Fatalf("b's workload listed %s, want unknown", w.State)
			}
			return
		}
	}
	t.Fatalf("b's workload %s is not listed: %+v", onB, list)
}

// A workload that asks for no memory holds the node's default limit all the same (the
// nexlet gives it that): placement reserves it, and a request above the node's ceiling is
// declined at the auction, naming it.
func TestDefaultLimitsHoldTheirRoom(t *testing.T) {
	s := testutil.StartServer(t)
	n := startSizedNode(t, s, "n", node.Config{Memory: 1 << 30, CPUs: 2,
		DefaultLimits: v1.Resources{Memory: 512 << 20}, MaxLimits: v1.Resources{Memory: 768 << 20}}, v1.ResourceMemory)
	nc := testutil.Connect(t, s)
	c, _ := client.New(nc, "default")
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		if _, err := c.StartWorkload(ctx, def(name)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.StartWorkload(ctx, def("c"))
	if got := declineReasons(t, err)["n"]; got != "needs 512 MiB memory, 0 B free of 1 GiB" {
		t.Fatalf("a third workload of the default 512 MiB on a node of 1 GiB: declined with %q", got)
	}
	_, err = c.StartWorkload(ctx, sized("big", `{"memory":"1GiB"}`))
	if got := declineReasons(t, err)["n"]; !strings.Contains(got, "start_request.resources.memory: 1 GiB is above this node's ceiling of 768 MiB") {
		t.Fatalf("a request above the ceiling: declined with %q", got)
	}
	sys, _ := client.New(nc, v1.SystemNamespace)
	info, err := sys.NodeInfo(ctx, n.ID())
	if err != nil {
		t.Fatal(err)
	}
	if info.Capacity == nil || info.Capacity.RequestedMemory != 1<<30 {
		t.Fatalf("capacity %+v, want 1 GiB requested by two workloads of the default", info.Capacity)
	}
}
