package node_test

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/nexlet/memory"
	"github.com/nexrun/nex/pkg/node"
	"github.com/nexrun/nex/pkg/node/history"
)

// memNexlet is an in-memory nexlet that a test can "crash" and bring back.
type memNexlet struct {
	rt     *memory.Runtime
	cancel context.CancelFunc
	done   chan error
}

func runMemNexlet(t *testing.T, nc *nats.Conn, nodeID string, cfg func(*nexlet.Config)) *memNexlet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &memNexlet{rt: memory.New("mem", nexlet.NewFeed(nc, nodeID)), cancel: cancel, done: make(chan error, 1)}
	c := nexlet.Config{NodeID: nodeID, NexletID: "mem", RegisterType: "memory",
		Lifecycles: []string{v1.LifecycleService, v1.LifecycleJob}, StartRequestSchema: []byte(memory.Schema)}
	if cfg != nil {
		cfg(&c)
	}
	go func() { m.done <- nexlet.Serve(ctx, nc, c, m.rt) }()
	t.Cleanup(m.kill)
	return m
}

func (m *memNexlet) kill() {
	m.cancel()
	<-m.done
	m.done <- nil // later kills return at once
}

func newNode(t *testing.T, nc *nats.Conn, id string, store node.Store) *node.Node {
	t.Helper()
	return newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", Store: store})
}

// newNodeWith starts a node of cfg, with short heartbeat and announce intervals unless
// cfg gives its own.
func newNodeWith(t *testing.T, nc *nats.Conn, cfg node.Config) *node.Node {
	t.Helper()
	cfg.HeartbeatInterval = cmp.Or(cfg.HeartbeatInterval, 100*time.Millisecond)
	cfg.AnnounceInterval = cmp.Or(cfg.AnnounceInterval, 200*time.Millisecond)
	n, err := node.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

func kvStore(t *testing.T, nc *nats.Conn, id string) node.Store {
	t.Helper()
	s, err := node.OpenKVStore(context.Background(), nc, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitNexlet(t *testing.T, n *node.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.WaitForNexlet(ctx, "memory"); err != nil {
		t.Fatal(err)
	}
}

func listIDs(t *testing.T, c *client.Client) []string {
	t.Helper()
	l, err := c.ListWorkloads(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, w := range l {
		ids = append(ids, w.ID)
	}
	return ids
}

func TestKVStore(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	a, b := kvStore(t, nc, nodeID(t)), kvStore(t, nc, nodeID(t))
	rec := &node.Record{WorkloadID: "w1", NexletID: "mem", Desired: node.DesiredRunning, Definition: def("x")}
	if err := a.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	stale := *rec
	rec.Desired = node.DesiredStopping
	if err := a.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, &stale); !errors.Is(err, node.ErrConflict) {
		t.Fatalf("stale update: want ErrConflict, got %v", err)
	}
	if err := a.Put(ctx, &node.Record{WorkloadID: "w1"}); !errors.Is(err, node.ErrConflict) {
		t.Fatalf("second create: want ErrConflict, got %v", err)
	}
	if err := a.Put(ctx, &node.Record{WorkloadID: "bad.id"}); err == nil {
		t.Fatal("a dotted workload ID made a key")
	}
	if recs, _ := b.List(ctx); len(recs) != 0 {
		t.Fatalf("node b sees %d of node a's records", len(recs))
	}
	recs, err := a.List(ctx)
	if err != nil || len(recs) != 1 || recs[0].Desired != node.DesiredStopping || recs[0].Definition.Name != "x" {
		t.Fatalf("list %+v %v", recs, err)
	}
	if err := a.Delete(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if recs, _ := a.List(ctx); len(recs) != 0 {
		t.Fatalf("after delete: %d records", len(recs))
	}
}

func TestKVStoreNeedsJetStream(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer s.Shutdown()
	s.ReadyForConnections(5 * time.Second)
	nc := testutil.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = node.OpenKVStore(ctx, nc, nodeID(t), 1)
	if !errors.Is(err, node.ErrNoJetStream) || !strings.Contains(err.Error(), "enable it") {
		t.Fatalf("want ErrNoJetStream, got %v", err)
	}
	// the history says so at once too (it waited 5 minutes on "no responders", then nexd exited)
	if _, err := history.Open(ctx, nc, history.Config{}); !errors.Is(err, node.ErrNoJetStream) {
		t.Fatalf("history without JetStream: want ErrNoJetStream, got %v", err)
	}
}

// A node that dies and comes back (same ID, KV state) adopts the workloads its nexlet
// still runs: no restart, no duplicate.
func TestNodeRestartAdopts(t *testing.T) {
	for _, state := range []string{"kv", "memory"} {
		t.Run(state, func(t *testing.T) {
			s := testutil.StartServer(t)
			nc := testutil.Connect(t, s)
			id := nodeID(t)
			store := func() node.Store {
				if state == "kv" {
					return kvStore(t, nc, id)
				}
				return node.NewMemoryStore() // a new process: memory is empty
			}
			n1 := newNode(t, testutil.Connect(t, s), id, store())
			mem := runMemNexlet(t, testutil.Connect(t, s), id, nil)
			waitNexlet(t, n1)
			c, _ := client.New(nc, "default")
			w, err := c.StartWorkload(context.Background(), def("svc"))
			if err != nil {
				t.Fatal(err)
			}
			n1.Stop()
			n2 := newNode(t, testutil.Connect(t, s), id, store())
			testutil.Eventually(t, 5*time.Second, "the workload to be adopted", func() bool {
				ids := listIDs(t, c)
				return len(ids) == 1 && ids[0] == w.ID
			})
			if mem.rt.Starts() != 1 {
				t.Fatalf("adoption started the workload again (%d starts)", mem.rt.Starts())
			}
			if _, err := c.StopWorkload(context.Background(), w.ID, v1.StopRequest{}); err != nil {
				t.Fatalf("stop after adoption: %v", err)
			}
			_ = n2
		})
	}
}

// A nexlet that crashes and comes back empty gets its desired workloads again, once
// each; finished and stopped ones stay gone.
func TestNexletCrashRestoresDesired(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	n := newNode(t, testutil.Connect(t, s), id, kvStore(t, nc, id))
	mem := runMemNexlet(t, testutil.Connect(t, s), id, nil)
	waitNexlet(t, n)
	c, _ := client.New(nc, "default")
	ctx := context.Background()
	keep, _ := c.StartWorkload(ctx, def("keep"))
	stopped, _ := c.StartWorkload(ctx, def("stopped"))
	jd := def("job")
	jd.Lifecycle = v1.LifecycleJob
	job, err := c.StartWorkload(ctx, jd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StopWorkload(ctx, stopped.ID, v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	events, _ := nc.SubscribeSync(v1.NodeEventSubject(id))
	mem.rt.Finish(job.ID, 0)
	// the nexlet tells the node at once; wait until the node has recorded it
	testutil.Eventually(t, 5*time.Second, "the finished job to be recorded", func() bool {
		recs, _ := kvStore(t, nc, id).List(ctx)
		for _, r := range recs {
			if r.WorkloadID == job.ID {
				return r.Desired == node.DesiredFinished
			}
		}
		return false
	})
	mem.kill()
	mem2 := runMemNexlet(t, testutil.Connect(t, s), id, nil)
	testutil.Eventually(t, 5*time.Second, "the service to be started again", func() bool {
		return mem2.rt.Starts() == 1
	})
	// the finished job stays listed, as it ended, from its record
	list, err := c.ListWorkloads(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]v1.WorkloadInfo{}
	for _, w := range list {
		byID[w.ID] = w
	}
	if len(list) != 2 || byID[keep.ID].State != v1.StateRunning || byID[job.ID].State != v1.StateStopped ||
		byID[job.ID].ExitCode == nil || *byID[job.ID].ExitCode != 0 {
		t.Fatalf("after the nexlet crash the list is %+v; want the service running and the job stopped with exit 0", list)
	}
	if info, err := c.WorkloadInfo(ctx, job.ID); err != nil || info.State != v1.StateStopped {
		t.Fatalf("info of the finished job after the crash: %+v %v", info, err)
	}
	if mem2.rt.Starts() != 1 {
		t.Fatalf("the new nexlet got %d starts, want exactly 1", mem2.rt.Starts())
	}
	if _, err := events.NextMsg(time.Second); err != nil {
		t.Fatalf("no node event for the re-registration: %v", err)
	}
}

func TestRemoteRegistration(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	n, err := node.New(nc, node.Config{NodeID: id, HostID: "here"})
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	defer n.Stop()
	nl, err := nexlet.Start(nc, nexlet.Config{NodeID: id, NexletID: "far", RegisterType: "memory", Lifecycles: []string{"job"},
		StartRequestSchema: []byte(memory.Schema), HostID: "elsewhere"}, memory.New("far", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	err = nl.Register(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--allow-remote-nexlets") {
		t.Fatalf("remote registration: %v", err)
	}

	n2, _ := node.New(nc, node.Config{NodeID: nodeID(t), HostID: "here", AllowRemoteNexlets: true})
	n2.Start()
	defer n2.Stop()
	nl2, _ := nexlet.Start(nc, nexlet.Config{NodeID: n2.ID(), NexletID: "far", RegisterType: "memory", Lifecycles: []string{"job"},
		StartRequestSchema: []byte(memory.Schema), HostID: "elsewhere"}, memory.New("far", nil))
	defer nl2.Close()
	if err := nl2.Register(context.Background()); err != nil {
		t.Fatalf("allowed remote registration: %v", err)
	}
}

func TestLameduck(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	n := startNode(t, nc, "n1", nil)
	c, _ := client.New(nc, "default")
	ctx := context.Background()
	w, err := c.StartWorkload(ctx, def("svc"))
	if err != nil {
		t.Fatal(err)
	}
	events, _ := nc.SubscribeSync(v1.NodeEventSubject(n.ID()))
	sys, _ := client.New(nc, "system")
	r, err := sys.Lameduck(ctx, n.ID(), 300*time.Millisecond)
	if err != nil || r.Deadline.IsZero() {
		t.Fatalf("lameduck: %+v %v", r, err)
	}
	if _, err := sys.Lameduck(ctx, "NOSUCHNODE", time.Second); !v1.IsNotFound(err) {
		t.Fatalf("lameduck unknown node: %v", err)
	}
	m, err := events.NextMsg(2 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"lameduck"`) {
		t.Fatalf("lameduck event: %v", err)
	}
	nodes, _ := sys.ListNodes(ctx)
	if len(nodes) != 1 || nodes[0].State != v1.NodeLameduck {
		t.Fatalf("nodes %+v", nodes)
	}
	_, err = c.StartWorkload(ctx, def("late"))
	var e *v1.Error
	if !errors.As(err, &e) || e.ErrorCode != v1.CodeNoPlacement || !strings.Contains(e.Details.(client.Declines)[0].Decline, "lameduck") {
		t.Fatalf("start during lameduck: %v", err)
	}
	select {
	case <-n.Drained():
	case <-time.After(5 * time.Second):
		t.Fatal("lameduck did not drain")
	}
	if ids := listIDs(t, c); len(ids) != 0 {
		t.Fatalf("workloads left after lameduck: %v (had %s)", ids, w.ID)
	}
}
