package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/nexlet/memory"
	"github.com/nexrun/nex/pkg/node"
)

func nodeID(t *testing.T) string {
	kp, err := nkeys.CreateServer()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

// startNode runs a node with an in-memory nexlet on its own connection.
func startNode(t *testing.T, nc *nats.Conn, name string, tags map[string]string) *node.Node {
	t.Helper()
	n, err := node.New(nc, node.Config{NodeID: nodeID(t), Name: name, Tags: tags, AnnounceInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	ctx, cancel := context.WithCancel(context.Background())
	rt := memory.New("mem", nexlet.NewFeed(nc, n.ID()))
	done := make(chan error, 1)
	go func() {
		done <- nexlet.Serve(ctx, nc, nexlet.Config{
			NodeID: n.ID(), NexletID: "mem", RegisterType: "memory",
			Lifecycles: []string{v1.LifecycleService, v1.LifecycleJob}, StartRequestSchema: []byte(memory.Schema),
		}, rt)
	}()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := n.WaitForNexlet(wctx, "memory"); err != nil {
		t.Fatal(err)
	}
	return n
}

func def(name string) v1.WorkloadDefinition {
	return v1.WorkloadDefinition{Name: name, Type: "memory", Lifecycle: v1.LifecycleService, StartRequest: json.RawMessage(`{"value":"x"}`)}
}

func TestStartListStopClone(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	n := startNode(t, nc, "n1", map[string]string{"region": "lab"})
	c, err := client.New(testutil.Connect(t, s), "default")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	events, _ := nc.SubscribeSync("$NEX.FEED.default.event.>")
	d := def("hello")
	d.Tags = map[string]string{"region": "lab"}
	w, err := c.StartWorkload(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if w.NodeID != n.ID() || w.State != v1.StateRunning || w.Namespace != "default" {
		t.Fatalf("unexpected workload %+v", w)
	}
	msg, err := events.NextMsg(2 * time.Second)
	if err != nil || !strings.Contains(string(msg.Data), `"started"`) {
		t.Fatalf("no started event: %v", err)
	}

	list, err := c.ListWorkloads(ctx, "")
	if err != nil || len(list) != 1 || list[0].ID != w.ID {
		t.Fatalf("list = %+v, %v", list, err)
	}
	// Other namespaces do not see it; system sees everything.
	other, _ := client.New(nc, "other")
	if l, _ := other.ListWorkloads(ctx, ""); len(l) != 0 {
		t.Fatalf("namespace other sees %d workloads", len(l))
	}
	if _, err := other.StopWorkload(ctx, w.ID, v1.StopRequest{}); !v1.IsNotFound(err) {
		t.Fatalf("stop from another namespace: want not_found, got %v", err)
	}
	sys, _ := client.New(nc, "system")
	if l, _ := sys.ListWorkloads(ctx, ""); len(l) != 1 {
		t.Fatalf("system sees %d workloads", len(l))
	}

	clone, err := c.CloneWorkload(ctx, w.ID, client.CloneOptions{StopOriginal: true})
	if err != nil {
		t.Fatal(err)
	}
	list, _ = c.ListWorkloads(ctx, "")
	if len(list) != 1 || list[0].ID != clone.ID {
		t.Fatalf("after clone --stop, list = %+v", list)
	}
	if _, err := c.StopWorkload(ctx, clone.ID, v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	// idempotent
	if info, err := c.StopWorkload(ctx, clone.ID, v1.StopRequest{}); err != nil || info.State != v1.StateStopped {
		t.Fatalf("second stop: %+v %v", info, err)
	}
	if _, err := c.WorkloadInfo(ctx, "nope"); !v1.IsNotFound(err) {
		t.Fatalf("info on unknown: %v", err)
	}
}

func TestNoPlacementReasons(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	n1 := startNode(t, nc, "n1", map[string]string{"region": "prod"})
	n2 := startNode(t, testutil.Connect(t, s), "n2", nil)
	knowEachOther(t, n1, n2)
	c, _ := client.New(nc, "default")
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name   string
		mutate func(*v1.WorkloadDefinition)
		want   []string
	}{
		{"tag", func(d *v1.WorkloadDefinition) { d.Tags = map[string]string{"region": "lab"} }, []string{"tag region=lab not matched (node has region=prod)", "node has no region tag"}},
		{"tag named like a node tag", func(d *v1.WorkloadDefinition) { d.Tags = map[string]string{"arch": "sparc"} }, []string{"tag arch=sparc not matched (node has no arch tag; it has nex.arch=" + runtime.GOARCH + ")"}},
		{"type", func(d *v1.WorkloadDefinition) { d.Type = "wasm" }, []string{"type wasm not served (node serves: memory)"}},
		{"lifecycle", func(d *v1.WorkloadDefinition) { d.Lifecycle = v1.LifecycleFunction }, []string{"lifecycle function not supported"}},
		{"port", func(d *v1.WorkloadDefinition) {
			d.StartRequest = json.RawMessage(fmt.Sprintf(`{"value":"x","expose_ports":[%d]}`, busy))
		}, []string{fmt.Sprintf("port %d is in use on this node", busy)}},
		{"port, first-class", func(d *v1.WorkloadDefinition) { d.ExposePorts = []int{busy} }, []string{fmt.Sprintf("port %d is in use on this node", busy)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := def("x")
			tt.mutate(&d)
			_, err := c.StartWorkload(context.Background(), d)
			var e *v1.Error
			if !errors.As(err, &e) || e.ErrorCode != v1.CodeNoPlacement {
				t.Fatalf("want no_placement, got %v", err)
			}
			declines := e.Details.(client.Declines)
			if len(declines) != 2 {
				t.Fatalf("want 2 declines, got %+v", declines)
			}
			all := ""
			for _, d := range declines {
				all += d.Decline + "\n"
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("declines %q lack %q", all, w)
				}
			}
		})
	}
}

func TestDeployRevalidatesSchema(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	startNode(t, nc, "n1", nil)
	c, _ := client.New(nc, "default")
	bids, _, err := c.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: "service"})
	if err != nil || len(bids) != 1 {
		t.Fatalf("bids %v %v", bids, err)
	}
	d := def("bad")
	d.Namespace = "default"
	d.StartRequest = json.RawMessage(`{"value": 3}`)
	msg, err := nc.Request(v1.ControlSubject("default", v1.VerbDeploy, bids[0].BidID), mustJSON(v1.DeployRequest{Workload: d}), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Nats-Service-Error-Code") != "400" || !strings.Contains(string(msg.Data), "start_request.value") {
		t.Fatalf("deploy reply %v %s", msg.Header, msg.Data)
	}
	// the bid was single-use
	msg, _ = nc.Request(v1.ControlSubject("default", v1.VerbDeploy, bids[0].BidID), mustJSON(v1.DeployRequest{Workload: def("ok")}), 2*time.Second)
	if msg.Header.Get("Nats-Service-Error-Code") != "410" {
		t.Fatalf("reused bid: %v %s", msg.Header, msg.Data)
	}
}

func TestBadTokensRejected(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	startNode(t, nc, "n1", nil)
	c, _ := client.New(nc, "default")
	for _, name := range []string{"a.b", "a b", "*", ">", ""} {
		d := def(name)
		if _, err := c.StartWorkload(context.Background(), d); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	if _, err := client.New(nc, "bad.ns"); err == nil {
		t.Error("namespace bad.ns accepted")
	}
	// The node checks too: a raw auction with a bad tag key is refused.
	msg, err := nc.Request(v1.ControlSubject("default", v1.VerbAuction), []byte(`{"type":"memory","lifecycle":"service","tags":{"a*b":"c"}}`), 2*time.Second)
	if err != nil || msg.Header.Get("Nats-Service-Error-Code") != "400" {
		t.Fatalf("node accepted bad tag: %v %v", msg, err)
	}
}

func TestNodesListAndInfo(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	a := startNode(t, nc, "a", nil)
	b := startNode(t, testutil.Connect(t, s), "b", nil)
	knowEachOther(t, a, b)
	c, _ := client.New(nc, "system")
	if nodes, err := c.ListNodes(context.Background()); err != nil || len(nodes) != 2 {
		t.Fatalf("ListNodes: %d nodes, %v", len(nodes), err)
	}
	info, err := c.NodeInfo(context.Background(), a.ID())
	if err != nil || info.Name != "a" || len(info.Nexlets) != 1 || len(info.Nexlets[0].StartRequestSchema) == 0 {
		t.Fatalf("info %+v %v", info, err)
	}
	if info.Tags["nex.node"] != "a" || info.Tags["nex.os"] == "" || info.Tags["nex.isolation"] != "none" {
		t.Fatalf("reserved tags missing: %v", info.Tags)
	}
	// a workload that needs workloads isolated from each other is declined, saying why
	ac, _ := client.New(nc, "default")
	_, declines, err := ac.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService, Tags: map[string]string{"nex.isolation": "uid"}})
	if err != nil || len(declines) != 2 || !strings.Contains(declines[0].Decline, "tag nex.isolation=uid not matched (node has nex.isolation=none)") {
		t.Fatalf("a workload requiring isolation: %+v %v", declines, err)
	}
	if _, err := c.NodeInfo(context.Background(), "NOPE"); !v1.IsNotFound(err) {
		t.Fatalf("unknown node: %v", err)
	}
}

func TestReservedTagRejected(t *testing.T) {
	_, err := node.New(nil, node.Config{NodeID: nodeID(t), Tags: map[string]string{"nex.os": "x"}})
	if !errors.Is(err, node.ErrReservedTag) {
		t.Fatalf("want ErrReservedTag, got %v", err)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// knowEachOther waits until every node has heard every other's announcement, which is
// what lets a fan-out end as soon as all of them answered.
func knowEachOther(t *testing.T, nodes ...*node.Node) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "nodes to know each other", func() bool {
		for _, n := range nodes {
			if len(n.Peers()) != len(nodes) {
				return false
			}
		}
		return true
	})
}

func TestMetrics(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	n := startNode(t, nc, "n1", nil)
	c, _ := client.New(nc, "default")
	if _, err := c.StartWorkload(context.Background(), def("m")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n.MetricsHandler())
	defer srv.Close()
	var body string
	testutil.Eventually(t, 5*time.Second, "a heartbeat with workload states", func() bool {
		resp, err := http.Get(srv.URL)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return strings.Contains(body, `state="running"} 1`)
	})
	// the official parser reads it; the node's families are there, of their types, with
	// the node's labels, beside the process's and the Go runtime's
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, body)
	}
	want := map[string]dto.MetricType{
		"nex_workload_starts_total": dto.MetricType_COUNTER, "nex_workload_stops_total": dto.MetricType_COUNTER,
		"nex_log_lines_total": dto.MetricType_COUNTER, "nex_workloads": dto.MetricType_GAUGE, "nex_nexlet_up": dto.MetricType_GAUGE,
		"nex_node_lameduck": dto.MetricType_GAUGE, "nex_auction_duration_seconds": dto.MetricType_HISTOGRAM,
		"process_cpu_seconds_total": dto.MetricType_COUNTER, "go_goroutines": dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		f, ok := families[name]
		if !ok || f.GetType() != typ {
			t.Errorf("metric %s: %v, want a %v", name, f.GetType(), typ)
			continue
		}
		if strings.HasPrefix(name, "nex_") && labelOf(f.GetMetric()[0], "node_id") != n.ID() {
			t.Errorf("metric %s has no node_id label", name)
		}
	}
	if h := families["nex_auction_duration_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 1 {
		t.Errorf("auctions counted: %d, want 1", h.GetSampleCount())
	}
	for name, f := range families {
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s is not named _total", name)
		}
	}
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// A nexlet whose workloads are still being reconciled is listed as registering, does not
// bid (the decline says why), and does not count as ready: a client that waits for a
// healthy nexlet, or for WaitForNexlet, can start a workload at once.
func TestRegisteringNexletDoesNotBid(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	n, err := node.New(nc, node.Config{NodeID: nodeID(t), Name: "n1", AllowRemoteNexlets: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)

	// a nexlet that takes its time to list its workloads
	fake := testutil.Connect(t, s)
	release := make(chan struct{})
	sub, err := fake.Subscribe(v1.NexletSubject(n.ID(), "slow", v1.NexletList), func(m *nats.Msg) {
		<-release
		_ = m.Respond([]byte("[]"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	reg, _ := json.Marshal(v1.RegisterRequest{NexletID: "slow", RegisterType: "memory", Lifecycles: []string{v1.LifecycleJob},
		StartRequestSchema: []byte(memory.Schema)})
	registered := make(chan error, 1)
	go func() {
		_, err := fake.Request(v1.RegisterSubject(n.ID()), reg, 30*time.Second)
		registered <- err
	}()
	defer func() { // released however the test ends
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	health := func() string {
		for _, x := range n.Info(false).Nexlets {
			if x.NexletID == "slow" {
				return x.Health
			}
		}
		return ""
	}
	testutil.Eventually(t, 30*time.Second, "the nexlet to be known", func() bool { return health() != "" })
	if h := health(); h != v1.HealthRegistering {
		t.Fatalf("health while reconciling: %q", h)
	}
	c, _ := client.New(testutil.Connect(t, s), "default")
	bids, declines, err := c.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleJob})
	if err != nil || len(bids) != 0 || len(declines) != 1 || !strings.Contains(declines[0].Decline, "nexlet slow is still registering") {
		t.Fatalf("auction while reconciling: %v bids, declines %+v, %v", len(bids), declines, err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := n.WaitForNexlet(wctx, "memory"); err == nil {
		t.Fatal("WaitForNexlet returned before the nexlet was reconciled")
	}

	close(release)
	if err := <-registered; err != nil {
		t.Fatal(err)
	}
	if h := health(); h != v1.HealthHealthy {
		t.Fatalf("health after registering: %q", h)
	}
	if bids, _, err := c.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleJob}); err != nil || len(bids) != 1 {
		t.Fatalf("auction after registering: %d bids, %v", len(bids), err)
	}
}

// A decline for a port another workload exposes names that workload to its own
// namespace only; an auction may name at most 64 ports (every node that answers binds
// each to see whether it is free).
func TestPortDeclinesNameOwnNamespaceOnly(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	startNode(t, nc, "n1", nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c, _ := client.New(nc, "default")
	d := def("web")
	d.ExposePorts = []int{port}
	if _, err := c.StartWorkload(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]string{"default": "workload web", "other": "workload of another namespace"} {
		cl, _ := client.New(nc, ns)
		_, declines, err := cl.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService, Ports: []int{port}})
		if err != nil || len(declines) != 1 || !strings.Contains(declines[0].Decline, fmt.Sprintf("port %d is exposed by %s on this node", port, want)) {
			t.Errorf("namespace %s: declines %+v, %v; want one saying %q", ns, declines, err, want)
		}
	}
	many := make([]int, 65)
	for i := range many {
		many[i] = 20000 + i
	}
	if _, _, err := c.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService, Ports: many}); err == nil || !strings.Contains(err.Error(), "ports: 65, at most 64") {
		t.Fatalf("an auction of 65 ports: %v", err)
	}
}
