package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/nexlet/memory"
	"github.com/nexrun/nex/pkg/node"
	"github.com/nexrun/nex/pkg/node/cluster"
)

// flakyStop is a memory runtime whose first stops fail, as a nexlet's do while it
// reconnects after a NATS outage.
type flakyStop struct {
	*memory.Runtime
	fails atomic.Int32
}

func (f *flakyStop) Stop(ctx context.Context, wid string, req v1.StopRequest) (v1.WorkloadInfo, error) {
	if f.fails.Add(-1) >= 0 {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeUnavailable, "reconnecting")
	}
	return f.Runtime.Stop(ctx, wid, req)
}

// A node that learns its copy of a workload was taken over elsewhere stops it, and asks
// again when its nexlet does not answer the first time: the stop was tried once, and the
// copy ran on two nodes for good (a chaos run: an adopted nexlet, then a NATS outage).
func TestStaleCopyStopIsAskedAgain(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	store := kvStore(t, nc, id)
	n := newNode(t, nc, id, store)
	rt := &flakyStop{Runtime: memory.New("mem", nexlet.NewFeed(nc, id))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- nexlet.Serve(ctx, nc, nexlet.Config{NodeID: id, NexletID: "mem", RegisterType: "memory",
			Lifecycles: []string{v1.LifecycleService, v1.LifecycleJob}, StartRequestSchema: []byte(memory.Schema)}, rt)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("moved"))
	if err != nil {
		t.Fatal(err)
	}
	rt.fails.Store(2)
	// another node took it over while this one was away: its record here says so
	cs := store.(node.ClusterStore)
	rec, err := cs.RecordOf(ctx, id, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	taken := *rec // the record of the node that took it over
	taken.Revision = 0
	if err := cs.PutOf(ctx, "ELSEWHERE", &taken); err != nil {
		t.Fatal(err)
	}
	rec.Desired, rec.MovedTo = node.DesiredMoved, "ELSEWHERE"
	if err := cs.PutOf(ctx, id, rec); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "this node's stale copy to be stopped after two failed stops", func() bool {
		_, err := rt.Get(ctx, w.ID)
		return v1.IsNotFound(err)
	})
	if left := rt.fails.Load(); left >= 0 {
		t.Fatalf("the stop failed %d times fewer than planned", left+1)
	}
}

// deafStore never hears of changes to its node's records, as a node back from a cut
// whose watch has not caught up yet.
type deafStore struct{ *node.KVStore }

// deafNode is a node whose watch of its records hears nothing (deafStore), with a memory
// nexlet running workload w, started through client c.
type deafNode struct {
	s     *server.Server
	id    string
	store deafStore
	mem   *memNexlet
	c     *client.Client
	w     v1.WorkloadInfo
}

func startDeaf(t *testing.T, name string) deafNode {
	t.Helper()
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	store := deafStore{kvStore(t, nc, id).(*node.KVStore)}
	n := newNode(t, nc, id, store)
	mem := runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(context.Background(), def(name))
	if err != nil {
		t.Fatal(err)
	}
	return deafNode{s: s, id: id, store: store, mem: mem, c: c, w: *w}
}

func (deafStore) WatchOwn(context.Context, func(string, *node.Record)) error { return nil }

// A stop that reaches a node whose workload was taken over while it was away, before it
// has learnt so, goes on to the workload's new node, and the old copy is stopped: the
// node answered "taken over by node X" (409) and its copy ran on (a chaos run).
func TestStopOfATakenOverCopyGoesOn(t *testing.T) {
	d := startDeaf(t, "moved")
	id, store, mem, c, w := d.id, d.store, d.mem, d.c, d.w
	ctx := context.Background()
	rec, err := store.RecordOf(ctx, id, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	gone := nodeID(t) // a node that took it over and is gone since
	taken := *rec
	taken.Revision = 0
	if err := store.PutOf(ctx, gone, &taken); err != nil {
		t.Fatal(err)
	}
	rec.Desired, rec.MovedTo = node.DesiredMoved, gone
	if err := store.PutOf(ctx, id, rec); err != nil {
		t.Fatal(err)
	}
	_, err = c.StopWorkload(ctx, w.ID, v1.StopRequest{})
	if v1.IsCode(err, v1.CodeConflict) {
		t.Fatalf("a stop of a copy taken over elsewhere: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the stale copy to be stopped", func() bool {
		_, err := mem.rt.Get(ctx, w.ID)
		return v1.IsNotFound(err)
	})
}

// A nexlet the supervisor gave up on hands its services to another node: the node went
// on announcing itself, so no one took them over, and they stayed unknown, running
// nowhere, for good.
func TestFailedNexletsServicesMove(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nodes, nexlets := kvPair(t, s, 0)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w := startOn(t, c, nodes[0], "svc")
	nexlets[0].kill()
	nodes[0].NexletFailed("mem")
	testutil.Eventually(t, 15*time.Second, "the failed nexlet's service to run on the other node", func() bool {
		info, err := c.WorkloadInfo(ctx, w.ID)
		return err == nil && info.NodeID == nodes[1].ID() && info.State == v1.StateRunning
	})
}

// A stop of a workload whose node is gone (stopped, its record running) is recorded on
// that node's record, which the node acts on when it is back: the stop answered 503 "try
// again once it is back" (a newcomer's walk: a workload that cannot move could not be
// stopped at all). While the other node still names it alive (a loaded machine) the stop
// waits for it, and says it did not answer.
func TestStopOfAWorkloadWhoseNodeIsGone(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nc1, nc2 := testutil.Connect(t, s), testutil.Connect(t, s)
	id1, id2 := nodeID(t), nodeID(t)
	n1 := newNode(t, nc1, id1, kvStore(t, nc1, id1))
	mem1 := runMemNexlet(t, nc1, id1, nil)
	waitNexlet(t, n1)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("held"))
	if err != nil {
		t.Fatal(err)
	}
	n2 := newNode(t, nc2, id2, kvStore(t, nc2, id2))
	runMemNexlet(t, nc2, id2, nil)
	waitNexlet(t, n2)
	mem1.kill()
	n1.Stop()
	var got *v1.WorkloadInfo
	testutil.Eventually(t, 30*time.Second, "the stop to be recorded", func() bool {
		var err error
		got, err = c.StopWorkload(ctx, w.ID, v1.StopRequest{GracePeriod: v1.Duration(7 * time.Second)})
		if e := v1.AsError(err); err != nil && (e.ErrorCode != v1.CodeUnavailable || !strings.Contains(e.Message, id1)) {
			t.Fatalf("a stop of a workload whose node is gone: %v", err)
		}
		return err == nil // else node 2 still took node 1 for alive, and the stop waited for it
	})
	if got.State != v1.StateStopping || got.NodeID != id1 || !strings.Contains(got.Metadata["note"], "not heard from") {
		t.Fatalf("a stop of a workload whose node is gone: %+v", got)
	}
	rec, err := kvStore(t, nc2, id2).(node.ClusterStore).RecordOf(ctx, id1, w.ID)
	if err != nil || rec.Desired != node.DesiredStopping || rec.StopGrace != v1.Duration(7*time.Second) {
		t.Fatalf("the gone node's record after the stop: %+v %v", rec, err)
	}
	// info says what was done, not "nothing was done"
	_, err = c.WorkloadInfo(ctx, w.ID)
	if e := v1.AsError(err); e.ErrorCode != v1.CodeUnavailable || !strings.Contains(e.Message, "a stop was recorded") {
		t.Fatalf("info of a workload whose stop is recorded on its gone node: %v", err)
	}
	// and a tenant of another namespace cannot stop it so
	other, _ := client.New(testutil.Connect(t, s), "other")
	if _, err := other.StopWorkload(ctx, w.ID, v1.StopRequest{}); !v1.IsNotFound(err) {
		t.Fatalf("a stop from another namespace: %v", err)
	}
}

// blindStore cannot read which node holds a workload, as while JetStream has no quorum.
type blindStore struct{ *node.KVStore }

func (s blindStore) Owners(context.Context, string) ([]string, error) {
	return nil, errors.New("nats: timeout")
}

// A node that does not have a workload, and cannot read the state store to say which node
// does, does not make a stop's answer "not found": the workload may have moved to a node
// that is not answering (a chaos run, seed 13, two servers down: a stop said "not found"
// of a workload that had just moved, and it ran).
func TestStopWhileTheStoreCannotSay(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nc1, nc2 := testutil.Connect(t, s), testutil.Connect(t, s)
	id1, id2 := nodeID(t), nodeID(t)
	n1 := newNode(t, nc1, id1, kvStore(t, nc1, id1))
	mem1 := runMemNexlet(t, nc1, id1, nil)
	waitNexlet(t, n1)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("held"))
	if err != nil {
		t.Fatal(err)
	}
	mem1.kill()
	n1.Stop()
	// a node that never heard of node 1, whose store cannot say who holds the workload
	n2 := newNode(t, nc2, id2, blindStore{kvStore(t, nc2, id2).(*node.KVStore)})
	runMemNexlet(t, nc2, id2, nil)
	waitNexlet(t, n2)
	_, err = c.StopWorkload(ctx, w.ID, v1.StopRequest{})
	if e := v1.AsError(err); e.ErrorCode != v1.CodeUnavailable || !strings.Contains(e.Message, "could not read the state store") {
		t.Fatalf("a stop while the store cannot say who holds the workload: %v", err)
	}
}

// An update cut short (its coordinator lost after it recorded the new version, before it
// replaced every copy) is finished by the coordinator: the group said version 2 and ran
// version 1 for good, and an update to the same definition said "nothing to update".
func TestCutShortUpdateIsFinished(t *testing.T) {
	ctx := context.Background()
	c, st, _ := cutShortGroup(t)
	testutil.Eventually(t, 30*time.Second, "both copies at version 2", func() bool {
		st, err := c.Group(ctx, st.ID, v1.GroupRequest{Op: v1.GroupInfo})
		if err != nil || len(st.Copies) != 2 {
			return false
		}
		for _, w := range st.Copies {
			if w.GroupVersion != 2 {
				return false
			}
		}
		return true
	})
}

// Stopping a group stops also the copy of a node that does not answer: its record is
// marked stopping, so the takeover of that node's workloads does not start it elsewhere
// (a chaos run: the stop stopped the listed copies only, was acknowledged, and the silent
// node's copy was taken over and ran on for good).
func TestGroupStopReachesASilentNodesCopy(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nodes, nexlets := kvPair(t, s, 3*time.Second)
	c, _ := client.New(testutil.Connect(t, s), "default")
	var st *v1.GroupStatus
	testutil.Eventually(t, 10*time.Second, "a coordinator", func() bool {
		var err error
		st, err = c.StartGroup(ctx, def("web"), 2, 1, "")
		return err == nil
	})
	if len(st.Copies) != 2 {
		t.Fatalf("a group of 2, one a node: %+v", st)
	}
	coord, silent := 0, 1
	if nodes[1].IsCoordinator() {
		coord, silent = 1, 0
	}
	nexlets[silent].kill()
	nodes[silent].Stop()
	if _, err := c.Group(ctx, st.ID, v1.GroupRequest{Op: v1.GroupStop}); err != nil {
		t.Fatal(err)
	}
	// past the node-loss window, the silent node's workloads are taken over: none of
	// the group's copies may run anywhere
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if l, _ := nexlets[coord].rt.List(ctx, ""); len(l) > 0 {
			t.Fatalf("a copy of the stopped group runs on the coordinator: %+v", l)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A node whose record of a workload another node marked stopping (a group stopped
// while it was away) stops the workload when it hears of it.
func TestRecordMarkedStoppingIsStopped(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	store := kvStore(t, nc, id)
	n := newNode(t, nc, id, store)
	mem := runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	ctx := context.Background()
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("marked"))
	if err != nil {
		t.Fatal(err)
	}
	cs := store.(node.ClusterStore)
	rec, err := cs.RecordOf(ctx, id, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	rec.Desired = node.DesiredStopping
	if err := cs.PutOf(ctx, id, rec); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the workload marked stopping to be stopped, and its record gone", func() bool {
		_, err := mem.rt.Get(ctx, w.ID)
		_, rerr := cs.RecordOf(ctx, id, w.ID)
		return v1.IsNotFound(err) && errors.Is(rerr, node.ErrNotStored)
	})
}

// unreadyStore cannot list the records while fails is above zero, as while JetStream
// elects a leader.
type unreadyStore struct {
	*node.KVStore
	fails *atomic.Int32
}

func (s unreadyStore) List(ctx context.Context) ([]*node.Record, error) {
	if s.fails.Load() > 0 {
		s.fails.Add(-1)
		return nil, errors.New("list state keys: nats: JetStream system temporarily unavailable")
	}
	return s.KVStore.List(ctx)
}

// A nexlet that restarts while the records cannot be read is reconciled once they can:
// its lost workloads start again. Until then a lookup says the workload is being
// restored, not "not found" (a chaos run: a reconciliation that failed once was never
// tried again; the workloads stayed stopped and an info said "not found").
func TestReconcileIsTriedAgain(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	fails := &atomic.Int32{}
	n := newNode(t, nc, id, unreadyStore{kvStore(t, nc, id).(*node.KVStore), fails})
	mem := runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	ctx := context.Background()
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("lost"))
	if err != nil {
		t.Fatal(err)
	}
	mem.kill()
	fails.Store(1 << 20)
	mem = runMemNexlet(t, nc, id, nil) // it lost the workload
	testutil.Eventually(t, 10*time.Second, "the new nexlet's reconciliation to fail", func() bool {
		return fails.Load() < 1<<20
	})
	if _, err := c.WorkloadInfo(ctx, w.ID); v1.IsNotFound(err) {
		t.Fatalf("info of a workload whose nexlet is not reconciled yet: %v", err)
	}
	fails.Store(0)
	testutil.Eventually(t, 15*time.Second, "the lost workload to start again", func() bool {
		_, err := mem.rt.Get(ctx, w.ID)
		return err == nil
	})
}

// A node's own stop is not taken for a stop another node recorded: each stop wrote the
// stopping record, heard it on its watch before it indexed it, and stopped the workload a
// second time (a newcomer walk: "stopped a workload whose record another node marked
// stopping" after every stop on a one-node setup).
func TestOwnStopIsNotStoppedTwice(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	core, logs := observer.New(zap.InfoLevel)
	n := newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", Store: kvStore(t, nc, id), Logger: zap.New(core)})
	runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	ctx := context.Background()
	c, _ := client.New(testutil.Connect(t, s), "default")
	for range 20 {
		w, err := c.StartWorkload(ctx, def("once"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.StopWorkload(ctx, w.ID, v1.StopRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Second) // a second stop would follow at once
	for time.Now().Before(deadline) {
		if l := logs.FilterMessageSnippet("another node marked stopping").All(); len(l) > 0 {
			t.Fatalf("a node's own stop taken for another's: %v", l[0].ContextMap())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A coordinator's placement is refused unless the coordinator lease is still its at the
// epoch it names: a coordinator paused or cut off past its lease places no copy (a group
// of 3 ran a 4th copy once in ten runs). The real coordinator's placements go on.
func TestStaleCoordinatorPlacesNothing(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nodes, _ := kvPair(t, s, 3*time.Second)
	c, _ := client.New(testutil.Connect(t, s), "default")
	var coord *node.Node
	testutil.Eventually(t, 10*time.Second, "a coordinator", func() bool {
		for _, n := range nodes {
			if n.IsCoordinator() {
				coord = n
			}
		}
		return coord != nil
	})
	other := nodes[0]
	if other == coord {
		other = nodes[1]
	}
	deploy := func(by string, epoch uint64) error {
		bids, _, err := c.Auction(ctx, v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService})
		if err != nil {
			return err
		}
		d := def("copy")
		d.Namespace = "default"
		var info v1.WorkloadInfo
		return svc.Call(ctx, natsconn.Plain(testutil.Connect(t, s)), v1.ControlSubject("default", v1.VerbDeploy, bids[0].BidID), v1.DeployRequest{Workload: d, Coordinator: by, Epoch: epoch}, &info)
	}
	if err := deploy(other.ID(), 1); !v1.IsCode(err, v1.CodeConflict) {
		t.Fatalf("a placement by a node that does not hold the lease: %v", err)
	}
	// the holder's own epoch, as the lease's value says it
	testutil.Eventually(t, 10*time.Second, "the real coordinator's placement to start", func() bool {
		st, err := c.StartGroup(ctx, def("real"), 1, 0, "")
		return err == nil && len(st.Copies) == 1
	})
}

// A copy whose group is gone is stopped: one taken over from a lost node while its group
// was being stopped started again after the stop had passed, and ran on for good (a
// chaos run: a group stopped, acknowledged, and one copy running).
func TestOrphanCopyIsStopped(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	store, err := node.OpenKVStore(ctx, nc, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	n := newNode(t, nc, id, store)
	mem := runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(t, s), "default")
	var st *v1.GroupStatus
	testutil.Eventually(t, 10*time.Second, "a coordinator", func() bool {
		st, err = c.StartGroup(ctx, def("orphan"), 2, 2, "")
		return err == nil
	})
	if err := store.DeleteGroup(ctx, "default", st.ID); err != nil { // as a stop that missed a copy leaves it
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "the copies of the group that is gone to be stopped", func() bool {
		l, _ := mem.rt.List(ctx, "")
		for _, w := range l {
			if w.State == v1.StateRunning {
				return false
			}
		}
		return true
	})
}

// What a drain could not move by its deadline is stopped with the node and stays
// recorded to run, for the cluster to start elsewhere: it was stopped as a user's stop
// is, and gone for good (a chaos run: a drain whose moves failed while JetStream had no
// quorum).
func TestDrainKeepsWhatItCouldNotMove(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	var nodes []*node.Node
	var nexlets []*memNexlet
	for i := range 2 {
		nc := testutil.Connect(t, s)
		id := nodeID(t)
		tags := map[string]string{"zone": "b"}
		if i == 0 {
			tags["zone"] = "a" // only this node may run it: nowhere to move it
		}
		n := newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", Store: kvStore(t, nc, id), Tags: tags})
		nexlets = append(nexlets, runMemNexlet(t, nc, id, nil))
		waitNexlet(t, n)
		nodes = append(nodes, n)
	}
	knowEachOther(t, nodes...)
	c, _ := client.New(testutil.Connect(t, s), "default")
	d := def("kept")
	d.Tags = map[string]string{"zone": "a"}
	w, err := c.StartWorkload(ctx, d)
	if err != nil || w.NodeID != nodes[0].ID() {
		t.Fatalf("start on the zone a node: %+v %v", w, err)
	}
	nodes[0].Lameduck(100 * time.Millisecond)
	select {
	case <-nodes[0].Drained():
	case <-time.After(30 * time.Second):
		t.Fatal("the drain did not end")
	}
	if _, err := nexlets[0].rt.Get(ctx, w.ID); err == nil {
		if info, _ := nexlets[0].rt.Get(ctx, w.ID); info.State == v1.StateRunning {
			t.Fatal("the workload runs on after the drain's deadline")
		}
	}
	reader, err := node.OpenKVStore(ctx, testutil.Connect(t, s), nodeID(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := reader.RecordOf(ctx, nodes[0].ID(), w.ID)
	if err != nil || rec.Desired != node.DesiredRunning {
		t.Fatalf("the record of what the drain could not move: %+v %v", rec, err)
	}
}

// laggingStore lists the records as they were when stale was set (a read served by a
// replica behind the leader), and hears of no change to its node's records.
type laggingStore struct {
	*node.KVStore
	stale *atomic.Pointer[[]*node.Record]
}

func (s laggingStore) List(ctx context.Context) ([]*node.Record, error) {
	if l := s.stale.Load(); l != nil {
		return *l, nil
	}
	return s.KVStore.List(ctx)
}

func (laggingStore) WatchOwn(context.Context, func(string, *node.Record)) error { return nil }

// laggingFrom is a laggingStore of node id, and its records as they are now (empty), for
// it to list later instead of the newest.
func laggingFrom(t *testing.T, nc *nats.Conn, id string) (laggingStore, []*node.Record) {
	t.Helper()
	store := laggingStore{kvStore(t, nc, id).(*node.KVStore), &atomic.Pointer[[]*node.Record]{}}
	before, err := store.KVStore.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return store, before
}

// A nexlet reconciled from a read that lags behind a takeover does not start the
// workload again: the start is recorded by compare-and-set first (a chaos run: a node
// restarted beside the node that had taken its workload over ran it too, for minutes).
func TestReconcileFromALaggingReadStartsNothing(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	stale := &atomic.Pointer[[]*node.Record]{}
	store := laggingStore{kvStore(t, nc, id).(*node.KVStore), stale}
	n := newNode(t, nc, id, store)
	mem := runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	ctx := context.Background()
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("lagging"))
	if err != nil {
		t.Fatal(err)
	}
	before, err := store.KVStore.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store.stale.Store(&before)
	mem.kill()
	rec, err := store.RecordOf(ctx, id, w.ID) // taken over by another node meanwhile
	if err != nil {
		t.Fatal(err)
	}
	rec.Desired, rec.MovedTo = node.DesiredMoved, nodeID(t)
	if err := store.PutOf(ctx, id, rec); err != nil {
		t.Fatal(err)
	}
	mem = runMemNexlet(t, nc, id, nil) // reconciled from the lagging read
	waitNexlet(t, n)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := mem.rt.Get(ctx, w.ID); err == nil {
			t.Fatal("a workload taken over elsewhere started again from a lagging read")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node whose record of a workload another node removed (it moved, and its moved mark
// is gone) stops its copy when it next writes the record, and says so: it updated the
// record every 2 s for minutes, "changed meanwhile", its copy running beside the new one.
func TestRecordRemovedElsewhereStopsTheCopy(t *testing.T) {
	d := startDeaf(t, "unrecorded")
	store, mem, c, w := d.store, d.mem, d.c, d.w
	ctx := context.Background()
	if err := store.KVStore.Delete(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	_, err := c.StopWorkload(ctx, w.ID, v1.StopRequest{})
	if err != nil && !v1.IsCode(err, v1.CodeUnavailable) && !v1.IsNotFound(err) {
		t.Fatalf("a stop of a workload whose record went: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the copy no record holds to be stopped", func() bool {
		_, err := mem.rt.Get(ctx, w.ID)
		return v1.IsNotFound(err)
	})
}

// pruning is a memory runtime that records what it is told to keep.
type pruning struct {
	*memory.Runtime
	keep chan []string
}

func (p *pruning) Prune(_ context.Context, keep []string) ([]string, error) {
	p.keep <- keep
	return nil, nil
}

// A nexlet that registers is told which workloads the records hold, so it removes what
// it keeps of others (a chaos run: workdirs of workloads whose records went while the
// nexlet was down piled up on a node).
func TestRegisteredNexletIsToldWhatToKeep(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	n := newNode(t, nc, id, kvStore(t, nc, id))
	rt := &pruning{Runtime: memory.New("mem", nexlet.NewFeed(nc, id)), keep: make(chan []string, 4)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- nexlet.Serve(ctx, nc, nexlet.Config{NodeID: id, NexletID: "mem", RegisterType: "memory",
			Lifecycles: []string{v1.LifecycleService, v1.LifecycleJob}, StartRequestSchema: []byte(memory.Schema)}, rt)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitNexlet(t, n)
	select {
	case keep := <-rt.keep:
		if len(keep) != 0 {
			t.Fatalf("a node with no records keeps %v", keep)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the registered nexlet was not told what to keep")
	}
}

// Between a node's silence and the takeover of its workloads, a list still shows them
// (unknown, from the records, said by the coordinator): they were left out with no word
// (a chaos run: 502 of 752 listed, exit 0, until the takeover).
func TestListKeepsASilentNodesWorkloads(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nodes, nexlets := kvPair(t, s, 3*time.Second)
	c, _ := client.New(testutil.Connect(t, s), "default")
	testutil.Eventually(t, 10*time.Second, "a coordinator", func() bool {
		_, err := c.StartGroup(ctx, def("probe"), 0, 1, "")
		return err == nil
	})
	w := startOn(t, c, nodes[1], "svc")
	silent := nodes[1]
	if silent.IsCoordinator() {
		silent = nodes[0]
		w = startOn(t, c, nodes[0], "svc")
	}
	for i, n := range nodes {
		if n == silent {
			nexlets[i].kill()
		}
	}
	silent.Stop()
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		l, err := c.ListWorkloads(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, x := range l {
			found = found || x.ID == w.ID
		}
		if !found {
			t.Fatalf("%.1f s after its node went silent, workload %s is not listed: %+v", 6-time.Until(end).Seconds(), w.ID, l)
		}
	}
}

// kvPair runs two nodes on one KV state, each with a memory nexlet on a connection of its
// own, that know each other (window: their node-loss window, 0 for the default).
func kvPair(t *testing.T, s *server.Server, window time.Duration) ([]*node.Node, []*memNexlet) {
	var nodes []*node.Node
	var nexlets []*memNexlet
	for range 2 {
		nc := testutil.Connect(t, s)
		id := nodeID(t)
		n := newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", Store: kvStore(t, nc, id), NodeLossWindow: window})
		nexlets = append(nexlets, runMemNexlet(t, nc, id, nil))
		waitNexlet(t, n)
		nodes = append(nodes, n)
	}
	knowEachOther(t, nodes...)
	return nodes, nexlets
}

// A workload its nexlet still runs that no record holds any longer is stopped, not
// adopted: with a shared store its record was removed because it was stopped or moved
// while the node was away. (A chaos run: a stale copy adopted that way was taken over
// later and ran again, after its user had stopped it on another node.)
func TestUnrecordedWorkloadIsStopped(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	store := kvStore(t, nc, id)
	n := newNode(t, nc, id, store)
	rt := memory.New("mem", nexlet.NewFeed(nc, id))
	serve := func() (stop func()) { return serveNexlet(t, nc, id, rt) }
	stop := serve()
	waitNexlet(t, n)
	ctx := context.Background()
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("stopped-elsewhere"))
	if err != nil {
		t.Fatal(err)
	}
	cs := store.(node.ClusterStore)
	rec, err := cs.RecordOf(ctx, id, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.RemoveOf(ctx, id, w.ID, rec.Revision); err != nil {
		t.Fatal(err)
	}
	stop() // the nexlet registers again: the node reconciles what it runs with the records
	t.Cleanup(serve())
	testutil.Eventually(t, 15*time.Second, "the unrecorded workload to be stopped", func() bool {
		_, err := rt.Get(ctx, w.ID)
		return v1.IsNotFound(err)
	})
	if _, err := cs.RecordOf(ctx, id, w.ID); !errors.Is(err, node.ErrNotStored) {
		t.Fatalf("the unrecorded workload was recorded again: %v", err)
	}
}

// ambiguousStore stores a record and then says it failed, as a write whose reply timed
// out does while JetStream elects a leader.
type ambiguousStore struct{ *node.KVStore }

func (s ambiguousStore) Put(ctx context.Context, rec *node.Record) error {
	if err := s.KVStore.Put(ctx, rec); err != nil || rec.Definition.Name != "ambiguous" {
		return err
	}
	return errors.New("nats: timeout")
}

// A start whose record write failed, but was stored after all, leaves no record behind:
// the client was told the start failed, and the record had another node start the
// workload later (a chaos run, seed 13: "its start failed ... but it runs").
func TestFailedStartLeavesNoRecord(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	kv, err := node.OpenKVStore(context.Background(), nc, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	n := newNode(t, nc, id, ambiguousStore{kv})
	runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	ctx := context.Background()
	c, _ := client.New(testutil.Connect(t, s), "default")
	if _, err := c.StartWorkload(ctx, def("ambiguous")); err == nil {
		t.Fatal("a start whose record write failed succeeded")
	}
	all, err := kv.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, recs := range all {
		for _, r := range recs {
			if r.Definition.Name == "ambiguous" {
				t.Fatalf("the failed start left its record (%s), which a takeover would start again", r.Desired)
			}
		}
	}
}

// The state and lease buckets are read from their streams' leaders: direct gets, which
// any replica answers, are off (a replica that lagged after a restart said a copy's
// record did not exist, and a group stop left the copy running).
func TestStateIsReadFromTheLeader(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	store, err := node.OpenKVStore(ctx, nc, nodeID(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Lease(ctx, "coordinator", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	for _, name := range []string{"KV_" + node.KVBucket, "KV_" + node.LeaseBucket} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().Config.AllowDirect {
			t.Errorf("%s answers direct gets from any replica", name)
		}
	}
}

// A node killed and started again (its peers still know it, so they do not greet it as a
// newcomer) answers a lookup naming the peers it has: the caller waits for those. (A chaos
// run: a restarted node's "not here", naming only itself, arrived first and ended a group
// create as "not found" while the coordinator created the group.)
func TestRestartedNodeNamesItsPeers(t *testing.T) {
	s := testutil.StartServer(t)
	start := func(nc *nats.Conn, id string) *node.Node { // announcing seldom: only a greeting helps
		return newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", AnnounceInterval: 10 * time.Second})
	}
	a := start(testutil.Connect(t, s), nodeID(t))
	id := nodeID(t)
	ncB := testutil.Connect(t, s)
	b := start(ncB, id)
	knowEachOther(t, a, b)
	ncB.Close() // kill -9: no "leaving" announcement
	start(testutil.Connect(t, s), id)

	nc := testutil.Connect(t, s)
	sub, err := nc.SubscribeSync(nc.NewRespInbox())
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest(v1.ControlSubject("default", v1.VerbInfo, v1.NewID()), sub.Subject, nil); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no answer from the restarted node: %v", err)
		}
		if m.Header.Get(v1.HeaderNodeID) != id {
			continue
		}
		if peers := m.Header.Get(v1.HeaderPeers); !strings.Contains(peers, a.ID()) {
			t.Fatalf("the restarted node answered naming peers %q, without %s", peers, a.ID())
		}
		return
	}
}

// A node whose record of a running workload another node removes stops its copy as soon
// as it hears of it, without writing the record first. (A chaos run: the coordinator
// removed the record of a group copy whose node was lost during the group's stop; the
// node came back, nothing told it, and the copy ran on after the stop was acknowledged.)
func TestRemovedRecordStopsTheCopy(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	store := kvStore(t, nc, id).(*node.KVStore)
	n := newNode(t, nc, id, store)
	mem := runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	ctx := context.Background()
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("removed"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.Get(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	other := kvStore(t, testutil.Connect(t, s), nodeID(t)).(*node.KVStore)
	if err := other.RemoveOf(ctx, id, w.ID, rec.Revision); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the copy whose record was removed to be stopped", func() bool {
		_, err := mem.rt.Get(ctx, w.ID)
		return v1.IsNotFound(err)
	})
}

// A moved mark that names a node holding no record of the workload (a takeover that
// failed half-way: its writes' answers lost) is put back, and the copy stays, instead of
// being stopped as moved. (A chaos run: a workload started and acknowledged was stopped
// as "taken over" by a node that never had it, and listed nowhere after.)
func TestHalfFailedTakeoverKeepsTheCopy(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nodes, nexlets := kvPair(t, s, 0)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w := startOn(t, c, nodes[0], "half")
	store, rec := recordOn(t, s, nodes[0], w.ID)
	mark := *rec
	mark.Desired, mark.MovedTo, mark.UpdatedAt = node.DesiredMoved, nodes[1].ID(), time.Now().Add(-time.Hour)
	if err := store.PutOf(ctx, nodes[0].ID(), &mark); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the mark naming a node without the record to be put back", func() bool {
		r, err := store.RecordOf(ctx, nodes[0].ID(), w.ID)
		return err == nil && r.Desired == node.DesiredRunning
	})
	if _, err := nexlets[0].rt.Get(ctx, w.ID); err != nil {
		t.Fatalf("the copy was stopped: %v", err)
	}
	if _, err := c.WorkloadInfo(ctx, w.ID); err != nil {
		t.Fatalf("info of the workload kept: %v", err)
	}
}

// A user's stop of a workload that was taken over removes the moved marks of it that
// other nodes' records keep: a node coming back stops its copy, and nothing puts the
// mark back as one naming a node without the record.
func TestStopRemovesMovedMarks(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nodes, _ := kvPair(t, s, 0)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w := startOn(t, c, nodes[1], "marked")
	store := kvStore(t, testutil.Connect(t, s), nodeID(t)).(*node.KVStore)
	gone := nodeID(t) // a node that was lost, whose copy moved to nodes[1]
	rec, err := store.RecordOf(ctx, nodes[1].ID(), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	mark := *rec
	mark.Revision, mark.Desired, mark.MovedTo = 0, node.DesiredMoved, nodes[1].ID()
	if err := store.PutOf(ctx, gone, &mark); err != nil {
		t.Fatal(err)
	}
	rec.TakenOver = true // as a takeover writes it
	if err := store.PutOf(ctx, nodes[1].ID(), rec); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StopWorkload(ctx, w.ID, v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the lost node's moved mark to be removed", func() bool {
		_, err := store.RecordOf(ctx, gone, w.ID)
		return errors.Is(err, node.ErrNotStored)
	})
}

// A node opening the state and lease buckets another node made leaves their streams as
// they are, and the first node makes them with direct gets off: an update turned direct
// gets on for a moment, and a handle a third node opened then read with direct gets no
// server answered once they were off again ("no responders" from the coordinator lease,
// failing a rolling update, once in a few runs; see records.TestBucketsOpenedAtOnceReadFromTheLeader).
func TestOpeningBucketsChangesNoStream(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	updates, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		other := kvStore(t, testutil.Connect(t, s), nodeID(t)).(*node.KVStore)
		l, err := other.Lease(ctx, "coordinator", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Holder(ctx); err != nil {
			t.Fatalf("read the lease: %v", err)
		}
	}
	js, _ := jetstream.New(nc)
	for _, name := range []string{"KV_" + node.KVBucket, "KV_" + node.LeaseBucket} {
		st, err := js.Stream(ctx, name)
		if err != nil || st.CachedInfo().Config.AllowDirect {
			t.Fatalf("%s: direct gets on, or no stream: %v", name, err)
		}
	}
	if m, err := updates.NextMsg(500 * time.Millisecond); err == nil {
		t.Fatalf("opening the buckets updated a stream: %s", m.Subject)
	}
}

// Node info names the coordinator: exactly one node of a cluster says it holds the lease.
func TestNodeInfoNamesTheCoordinator(t *testing.T) {
	s := testutil.StartServer(t)
	nodes, _ := kvPair(t, s, 0)
	testutil.Eventually(t, 15*time.Second, "exactly one node to say it coordinates", func() bool {
		n := 0
		for _, x := range nodes {
			if x.Info(false).Coordinator {
				n++
			}
		}
		return n == 1
	})
}

// A moved mark that names a node which has lost the workload on in turn (and removed
// its own mark once it stopped its copy) is a move done, not a failed takeover: another
// node holds the record, and the copy here stops. (A chaos run: such marks were put
// back, and 15 services ran twice for minutes.)
func TestMoveOnwardStopsTheCopy(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nodes, nexlets := kvPair(t, s, 0)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w := startOn(t, c, nodes[0], "onward")
	store := kvStore(t, testutil.Connect(t, s), nodeID(t)).(*node.KVStore)
	rec, err := store.RecordOf(ctx, nodes[0].ID(), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	holder := *rec // where the workload went in the end
	holder.Revision, holder.TakenOver = 0, true
	if err := store.PutOf(ctx, nodes[1].ID(), &holder); err != nil {
		t.Fatal(err)
	}
	mark := *rec // names a node in between, whose own mark is gone
	mark.Desired, mark.MovedTo, mark.UpdatedAt = node.DesiredMoved, nodeID(t), time.Now().Add(-time.Hour)
	if err := store.PutOf(ctx, nodes[0].ID(), &mark); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the copy of a workload that moved on to be stopped", func() bool {
		_, err := nexlets[0].rt.Get(ctx, w.ID)
		return v1.IsNotFound(err)
	})
	if r, err := store.RecordOf(ctx, nodes[0].ID(), w.ID); err == nil && r.Desired == node.DesiredRunning {
		t.Fatal("the mark was put back")
	}
}

// A node started again whose listing of its records misses the newest (a read behind the
// leader) does not stop a running workload as unrecorded before its own record, read
// from the leader, says there is none: the workload is adopted. (A chaos run: two
// services started and acknowledged seconds before their nexd was killed were stopped.)
func TestListingThatMissesARecordStopsNothing(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	ctx := context.Background()
	store, before := laggingFrom(t, nc, id)
	first := newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", Store: store})
	mem := runMemNexlet(t, nc, id, nil)
	waitNexlet(t, first)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("newest"))
	if err != nil {
		t.Fatal(err)
	}
	first.Stop() // nexd gone; its nexlet runs on
	store.stale.Store(&before)
	again := newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", Store: store})
	waitNexlet(t, again)
	testutil.Eventually(t, 10*time.Second, "the workload to be listed by the restarted node", func() bool {
		info, err := c.WorkloadInfo(ctx, w.ID)
		return err == nil && info.NodeID == id
	})
	if _, err := mem.rt.Get(ctx, w.ID); err != nil {
		t.Fatalf("the workload whose record the listing missed was stopped: %v", err)
	}
}

// A clone asked for from the system namespace stays in the workload's own namespace:
// started under system, a tenant's definition would run with system's credentials.
func TestCloneFromSystemStaysInItsNamespace(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	startNode(t, nc, "n1", nil)
	ctx := context.Background()
	tenant, _ := client.New(testutil.Connect(t, s), "default")
	w, err := tenant.StartWorkload(ctx, def("orig"))
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := client.New(testutil.Connect(t, s), v1.SystemNamespace)
	c, err := admin.CloneWorkload(ctx, w.ID, client.CloneOptions{Name: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "default" {
		t.Fatalf("the clone runs in namespace %q, want default", c.Namespace)
	}
	if _, err := tenant.WorkloadInfo(ctx, c.ID); err != nil {
		t.Fatalf("the tenant cannot see the clone: %v", err)
	}
}

// A coordinator whose last renewal is older than half a lease period (a node paused past
// its lease, running again before its renewal loop has) stops counting itself the
// coordinator at once: it answered group requests beside the new coordinator for 5 s.
func TestCoordinatorPausedPastItsLeaseStepsDown(t *testing.T) {
	s := testutil.StartServer(t)
	nodes, _ := kvPair(t, s, 0)
	var coord *node.Node
	testutil.Eventually(t, 15*time.Second, "a coordinator", func() bool {
		for _, n := range nodes {
			if n.IsCoordinator() {
				coord = n
				return true
			}
		}
		return false
	})
	coord.LeaseRanOut()
	if coord.IsCoordinator() {
		t.Fatal("a coordinator whose lease ran out by its own clock still counts itself one")
	}
}

// startOn starts workloads named name until one lands on n (the auction picks the node),
// and returns it; the others run on.
func startOn(t *testing.T, c *client.Client, n *node.Node, name string) *v1.WorkloadInfo {
	t.Helper()
	for {
		w, err := c.StartWorkload(context.Background(), def(name))
		if err != nil {
			t.Fatal(err)
		}
		if w.NodeID == n.ID() {
			return w
		}
	}
}

// A node asked to take over a workload whose own copy it still has (it ran the workload
// before it moved away, and was back before it stopped the copy) refuses, and keeps its
// record and its copy: chaos seeds 38 and 41, where a drain asked such a node to take the
// workload back, the failed takeover removed the node's record and dropped the copy from
// its index, and the copy ran on untracked beside the drained node's for minutes.
func TestTakeoverOfACopyStillHereRefused(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nodes, nexlets := kvPair(t, s, 0)
	nc := testutil.Connect(t, s)
	c, _ := client.New(nc, "default")
	w := startOn(t, c, nodes[0], "back")
	store := kvStore(t, testutil.Connect(t, s), nodeID(t)).(*node.KVStore)
	rec, err := store.RecordOf(ctx, nodes[0].ID(), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	// the record another node holds of it, as one that took it over writes it
	other := *rec
	other.Revision, other.TakenOver = 0, true
	if err := store.PutOf(ctx, nodes[1].ID(), &other); err != nil {
		t.Fatal(err)
	}
	bids, _, err := c.Auction(ctx, v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService})
	if err != nil {
		t.Fatal(err)
	}
	var bid string
	for _, b := range bids {
		if b.NodeID == nodes[0].ID() {
			bid = b.BidID
		}
	}
	if bid == "" {
		t.Fatalf("no bid of node %s in %+v", nodes[0].ID(), bids)
	}
	tk := &v1.Takeover{WorkloadID: w.ID, FromNode: nodes[1].ID(), Revision: other.Revision, Reason: v1.TakeoverDrain}
	// another namespace that names the workload (a tenant may send a takeover) is told
	// nothing of this node's copy, and nothing is done with it; nor is it told whether
	// a workload ID exists at all (no record: the same answer)
	co, _ := client.New(nc, "tenant")
	for _, named := range []*v1.Takeover{tk, {WorkloadID: v1.NewID(), FromNode: nodes[1].ID(), Revision: other.Revision}} {
		obids, _, err := co.Auction(ctx, v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range obids {
			if b.NodeID != nodes[0].ID() {
				continue
			}
			// a tenant's own DEPLOY may not carry a takeover at all
			err = svc.Call(ctx, natsconn.Plain(nc), v1.ControlSubject("tenant", v1.VerbDeploy, b.BidID), v1.DeployRequest{Workload: def("back"), Takeover: named}, nil)
			if !v1.IsCode(err, v1.CodeForbidden) || !strings.Contains(err.Error(), "a takeover comes from the cluster's nodes only") {
				t.Fatalf("a tenant's deploy with a takeover of workload %s: %v, want forbidden", named.WorkloadID, err)
			}
			// nor does a node's takeover for another namespace find it
			theirs := def("back")
			theirs.Namespace = "tenant"
			err = svc.Call(ctx, natsconn.Plain(nc), v1.SystemSubject(v1.VerbTakeover, b.BidID), v1.DeployRequest{Workload: theirs, Takeover: named}, nil)
			want := "workload " + named.WorkloadID + " of node " + named.FromNode + " not found in namespace tenant"
			if !v1.IsNotFound(err) || !strings.HasSuffix(err.Error(), want) {
				t.Fatalf("another namespace's takeover of workload %s: %v, want %q", named.WorkloadID, err, want)
			}
		}
	}
	mine := def("back")
	mine.Namespace = "default"
	err = svc.Call(ctx, natsconn.Plain(nc), v1.SystemSubject(v1.VerbTakeover, bid), v1.DeployRequest{Workload: mine, Takeover: tk}, nil)
	if !v1.IsCode(err, v1.CodeConflict) || !strings.Contains(err.Error(), "still has a copy") {
		t.Fatalf("takeover of a workload the node still runs: %v, want a conflict naming its copy", err)
	}
	if r, err := store.RecordOf(ctx, nodes[0].ID(), w.ID); err != nil || r.Desired != node.DesiredRunning {
		t.Fatalf("the node's own record after the refused takeover: %+v, %v", r, err)
	}
	if r, err := store.RecordOf(ctx, nodes[1].ID(), w.ID); err != nil || r.Desired != node.DesiredRunning {
		t.Fatalf("the other node's record after the refused takeover: %+v, %v", r, err)
	}
	if _, err := nexlets[0].rt.Get(ctx, w.ID); err != nil {
		t.Fatalf("the copy was stopped: %v", err)
	}
}

// keeper is a memory runtime that keeps a "workdir" of every workload it started, in
// dirs (shared by the runtimes of one machine's nexlets, one after the other), and
// prunes them as nexlet-native does.
type keeper struct {
	*memory.Runtime
	mu   *sync.Mutex
	dirs map[string]bool
}

func (k *keeper) Start(ctx context.Context, req v1.StartWorkloadRequest) (v1.WorkloadInfo, error) {
	k.mu.Lock()
	k.dirs[req.WorkloadID] = true
	k.mu.Unlock()
	return k.Runtime.Start(ctx, req)
}

func (k *keeper) Prune(ctx context.Context, keep []string) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var removed []string
	for id := range k.dirs {
		if _, err := k.Runtime.Get(ctx, id); err != nil && !slices.Contains(keep, id) {
			delete(k.dirs, id)
			removed = append(removed, id)
		}
	}
	return removed, nil
}

// A workload whose machine was killed is started again when it comes back, also when the
// listing of the records its node reconciles from misses it: its record, read on its own,
// says it runs there (chaos seed 43: the listing missed three starts acknowledged 2 s
// before the machine was killed, the nexlet removed their workdirs as no record's, and
// nothing ever started them again).
func TestRestartsWhatAListingMissed(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	ctx := context.Background()
	store, before := laggingFrom(t, nc, id)
	machine := &keeper{mu: &sync.Mutex{}, dirs: map[string]bool{}}
	serve := func() (*keeper, func()) {
		k := &keeper{Runtime: memory.New("mem", nexlet.NewFeed(nc, id)), mu: machine.mu, dirs: machine.dirs}
		cctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- nexlet.Serve(cctx, nc, nexlet.Config{NodeID: id, NexletID: "mem", RegisterType: "memory",
				Lifecycles: []string{v1.LifecycleService, v1.LifecycleJob}, StartRequestSchema: []byte(memory.Schema)}, k)
		}()
		stop := sync.OnceFunc(func() { cancel(); <-done })
		t.Cleanup(stop)
		return k, stop
	}
	first := newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", Store: store})
	_, killNexlet := serve()
	waitNexlet(t, first)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("acked"))
	if err != nil {
		t.Fatal(err)
	}
	first.Stop() // the machine is killed: nexd, the nexlet and the workload
	killNexlet()
	store.stale.Store(&before)
	again := newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", Store: store})
	rt, _ := serve()
	waitNexlet(t, again)
	testutil.Eventually(t, 10*time.Second, "the workload the listing missed to run again", func() bool {
		info, err := rt.Get(ctx, w.ID)
		return err == nil && info.State == v1.StateRunning
	})
}

// A node back from a reconnect catches up with what changed in its records meanwhile,
// also what its watch of them missed: a copy taken over while it was away stops
// (chaos seed 48: a nexd paused 20 s ran the copies of 26 services taken over meanwhile
// for 60 s more, until its nexlet registered again).
func TestReconnectedNodeCatchesUp(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	ctx := context.Background()
	store := laggingStore{kvStore(t, nc, id).(*node.KVStore), &atomic.Pointer[[]*node.Record]{}} // hears of no change
	n := newNodeWith(t, nc, node.Config{NodeID: id, Name: "n", Store: store})
	mem := runMemNexlet(t, testutil.Connect(t, s), id, nil)
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w, err := c.StartWorkload(ctx, def("away"))
	if err != nil {
		t.Fatal(err)
	}
	// taken over by another node while this one was away, as a takeover writes it
	other := nodeID(t)
	rec, err := store.RecordOf(ctx, id, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	theirs := *rec
	theirs.Revision, theirs.TakenOver = 0, true
	if err := store.PutOf(ctx, other, &theirs); err != nil {
		t.Fatal(err)
	}
	mark := *rec
	mark.Desired, mark.MovedTo, mark.UpdatedAt = node.DesiredMoved, other, time.Now().UTC()
	if err := store.PutOf(ctx, id, &mark); err != nil {
		t.Fatal(err)
	}
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	// within 5 s: its nexlet registering again stops it too, here after about 12 s
	testutil.Eventually(t, 5*time.Second, "the copy taken over meanwhile to stop", func() bool {
		info, err := mem.rt.Get(ctx, w.ID)
		return err != nil || info.State != v1.StateRunning
	})
}

// failsFirst is a memory runtime whose first fails starts fail, the first of them once
// until() holds (or 10 s).
type failsFirst struct {
	*memory.Runtime
	until  func() bool
	fails  int32
	failed atomic.Int32
}

func (f *failsFirst) Start(ctx context.Context, req v1.StartWorkloadRequest) (v1.WorkloadInfo, error) {
	switch n := f.failed.Add(1); {
	case n == 1 && f.fails > 0:
		for end := time.Now().Add(10 * time.Second); !f.until() && time.Now().Before(end); {
			time.Sleep(20 * time.Millisecond) // the fault's timing, not a wait on a result
		}
		fallthrough
	case n <= f.fails:
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeUnavailable, "start timed out")
	}
	return f.Runtime.Start(ctx, req)
}

// A workload taken over whose first start on its new node fails runs all the same: the
// new node keeps its record and starts it again (chaos seed 54: a takeover's start timed
// out after the old node had seen the new record and stopped its copy; the takeover
// removed the new record and put the old one back to running, and the acknowledged
// workload ran nowhere).
func TestTakeoverWhoseStartFailedStartsAgain(t *testing.T) {
	testTakeoverWhoseStartFailed(t, 1)
}

// A workload taken over that its new node cannot start (3 tries) moves on to another.
func TestTakeoverThatCannotStartMovesOn(t *testing.T) {
	testTakeoverWhoseStartFailed(t, 1000)
}

func testTakeoverWhoseStartFailed(t *testing.T, fails int32) {
	testTakeoverFailing(t, fails, "")
}

// lostPut is a node's store whose first write of a record is stored, and then answered
// with a timeout once until() holds (or 10 s): the answer lost, as when the node's server
// stops while it waits. With reread, the write is answered and the read after it of
// another node's record (a takeover's check of its mark) gets the timeout instead.
type lostPut struct {
	*node.KVStore
	until        func() bool
	reread, late bool
	lost, armed  atomic.Bool
}

func (s *lostPut) Put(ctx context.Context, rec *node.Record) error {
	first := !s.lost.Swap(true)
	if first && s.late {
		s.until() // before the write lands, as one held in a reconnect buffer
	}
	if err := s.KVStore.Put(ctx, rec); err != nil || !first {
		return err
	}
	if s.reread {
		s.armed.Store(true)
		return nil
	}
	return s.timeout()
}

func (s *lostPut) RecordOf(ctx context.Context, node, wid string) (*node.Record, error) {
	if s.armed.Swap(false) {
		return nil, s.timeout()
	}
	return s.KVStore.RecordOf(ctx, node, wid)
}

func (s *lostPut) timeout() error {
	for end := time.Now().Add(10 * time.Second); !s.until() && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond) // the fault's timing, not a wait on a result
	}
	return fmt.Errorf("the state store: %w", context.DeadlineExceeded)
}

// A workload taken over whose record write on its new node was stored but answered with
// a timeout runs on the new node, and is stopped there by its ID: the old node saw the
// record, stopped its copy and removed its mark (chaos seed 1: the new node, its server
// stopped, took the write for failed, found the mark changed when it tried to put it
// back, and removed its own record: the acknowledged workload ran nowhere).
func TestTakeoverWhoseRecordAnswerWasLostRuns(t *testing.T) {
	testTakeoverFailing(t, 0, "put")
}

// So does one whose check of the old node's record after its write went unanswered.
func TestTakeoverWhoseMarkCheckWasLostRuns(t *testing.T) {
	testTakeoverFailing(t, 0, "reread")
}

// A takeover's record write that lands late, after the old node's mark was put back
// (it named the new node without its record for cluster.MoveGrace), is removed again by
// the new node, which never starts the workload: it runs on where it was.
func TestTakeoverWhoseRecordLandedLateIsUndone(t *testing.T) {
	testTakeoverFailing(t, 0, "late")
}

// testTakeoverFailing takes a workload over from node a to node b, b's nexlet failing
// its first fails starts, and, with lose, b's record write ("put") or its read of a's
// record after it ("reread") answered with a timeout.
func testTakeoverFailing(t *testing.T, fails int32, lose string) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	ncA, ncB := testutil.Connect(t, s), testutil.Connect(t, s)
	idA, idB := nodeID(t), nodeID(t)
	var storeA node.Store = kvStore(t, ncA, idA)
	if lose == "late" { // a hears nothing of its records: the test puts its mark back
		storeA = laggingStore{storeA.(*node.KVStore), &atomic.Pointer[[]*node.Record]{}}
	}
	a := newNodeWith(t, ncA, node.Config{NodeID: idA, Name: "a", Store: storeA})
	nexA := runMemNexlet(t, ncA, idA, nil)
	waitNexlet(t, a)
	nc := testutil.Connect(t, s)
	c, _ := client.New(nc, "default")
	w := startOn(t, c, a, "moves") // the only node yet
	oldStopped := func() bool {
		_, err := nexA.rt.Get(ctx, w.ID)
		return err != nil // the old node stopped its copy
	}
	var storeB node.Store = kvStore(t, ncB, idB)
	switch lose {
	case "put", "reread":
		storeB = &lostPut{KVStore: storeB.(*node.KVStore), until: oldStopped, reread: lose == "reread"}
	case "late":
		store := kvStore(t, testutil.Connect(t, s), nodeID(t)).(*node.KVStore)
		storeB = &lostPut{KVStore: storeB.(*node.KVStore), late: true, until: func() bool {
			mark, err := store.RecordOf(ctx, idA, w.ID)
			if err != nil {
				t.Error(err)
				return true
			}
			if _, ok := cluster.RestoreMoved(ctx, store, idA, *mark); !ok {
				t.Error("put a's mark back")
			}
			return true
		}}
	}
	b := newNodeWith(t, ncB, node.Config{NodeID: idB, Name: "b", Store: storeB})
	rtB := &failsFirst{Runtime: memory.New("mem", nexlet.NewFeed(ncB, idB)), until: oldStopped, fails: fails}
	serveNexlet(t, ncB, idB, rtB)
	waitNexlet(t, b)
	knowEachOther(t, a, b)
	store := kvStore(t, testutil.Connect(t, s), nodeID(t)).(*node.KVStore)
	subject, take := takeoverTo(t, c, store, idA, idB, w.ID, "moves")
	err := svc.Call(ctx, natsconn.Plain(nc), subject, take, nil)
	if err == nil {
		t.Fatal("the takeover whose start or record write failed answered success")
	}
	runs, other, owner := rtB.Runtime, nexA.rt, idB
	if lose == "late" {
		testutil.Eventually(t, 10*time.Second, "b's record, stored after a's mark was put back, to be removed", func() bool {
			_, err := store.RecordOf(ctx, idB, w.ID)
			return errors.Is(err, node.ErrNotStored)
		})
	}
	if fails > 1 || lose == "late" {
		runs, other, owner = nexA.rt, rtB.Runtime, idA // moved on, back to the only other node
	}
	testutil.Eventually(t, 30*time.Second, "the workload to run on node "+owner, func() bool {
		info, err := runs.Get(ctx, w.ID)
		return err == nil && info.State == v1.StateRunning
	})
	if _, err := other.Get(ctx, w.ID); err == nil {
		t.Fatal("the other node's copy runs too")
	}
	if r, err := store.RecordOf(ctx, owner, w.ID); err != nil || r.Desired != node.DesiredRunning {
		t.Fatalf("the record of node %s: %+v, %v", owner, r, err)
	}
	if lose == "" {
		return
	}
	// indexed where it runs: a stop by its ID finds it (not "recorded on node b ... try again")
	if _, err := c.StopWorkload(ctx, w.ID, v1.StopRequest{}); err != nil {
		t.Fatalf("stop the workload taken over: %v", err)
	}
	if _, err := runs.Get(ctx, w.ID); err == nil {
		t.Fatal("the workload runs on after its stop")
	}
}

// serveNexlet serves runtime rt as nexlet "mem" of node id until stop is called or the
// test ends (a nexlet killed and started again over the same runtime keeps what it ran).
func serveNexlet(t *testing.T, nc *nats.Conn, id string, rt nexlet.Runtime) (stop func()) {
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- nexlet.Serve(cctx, nc, nexlet.Config{NodeID: id, NexletID: "mem", RegisterType: "memory",
			Lifecycles: []string{v1.LifecycleService, v1.LifecycleJob}, StartRequestSchema: []byte(memory.Schema)}, rt)
	}()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return stop
}

// A finished job removed while its nexlet was down stays removed: when the nexlet is
// back and reports the job (what it kept of it), the node, finding no record of it in the
// shared store, has the nexlet remove it (chaos seed 62: a job removed 3 s after its
// machine came back, before its nexlet registered, was adopted as finished from the
// nexlet's report and listed again, for good).
func TestRemovedFinishedJobStaysRemoved(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	store := kvStore(t, nc, id)
	n := newNode(t, nc, id, store)
	rt := memory.New("mem", nexlet.NewFeed(nc, id))
	serve := func() (stop func()) { return serveNexlet(t, nc, id, rt) }
	stop := serve()
	waitNexlet(t, n)
	ctx := context.Background()
	c, _ := client.New(testutil.Connect(t, s), "default")
	job := def("ran")
	job.Lifecycle = v1.LifecycleJob
	w, err := c.StartWorkload(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	rt.Finish(w.ID, 0)
	cs := store.(node.ClusterStore)
	testutil.Eventually(t, 10*time.Second, "the job's record to say it finished", func() bool {
		rec, err := cs.RecordOf(ctx, id, w.ID)
		return err == nil && rec.Desired == node.DesiredFinished
	})
	stop() // the nexlet is down (its machine restarting): it keeps what it knows of the job
	if _, err := c.StopWorkload(ctx, w.ID, v1.StopRequest{}); err != nil {
		t.Fatalf("remove the finished job while its nexlet is down: %v", err)
	}
	t.Cleanup(serve())
	testutil.Eventually(t, 15*time.Second, "the nexlet to remove the job", func() bool {
		_, err := rt.Get(ctx, w.ID)
		return v1.IsNotFound(err)
	})
	if _, err := cs.RecordOf(ctx, id, w.ID); !errors.Is(err, node.ErrNotStored) {
		t.Fatalf("the removed job was recorded again: %v", err)
	}
	l, err := c.ListWorkloads(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range l {
		if x.ID == w.ID {
			t.Fatalf("the removed job is listed again: %+v", x)
		}
	}
}

// lostAnswer removes a group's record and then says it timed out, the first time, as a
// removal whose answer was lost while JetStream elected a leader.
type lostAnswer struct {
	*node.KVStore
	told atomic.Bool
}

func (l *lostAnswer) DeleteGroup(ctx context.Context, ns, id string) error {
	if err := l.KVStore.DeleteGroup(ctx, ns, id); err != nil || l.told.Swap(true) {
		return err
	}
	return context.DeadlineExceeded
}

// A group stop whose removal of the group's record got no answer tries again, and says
// what happened: the group is stopped (chaos seed 65: the removal had taken effect, the
// stop answered storage_unavailable, and the group's copy was stopped as an orphan 30 s
// later).
func TestGroupRemovalWhoseAnswerWasLostIsDone(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	kv := kvStore(t, nc, nodeID(t)).(*node.KVStore)
	ctx := context.Background()
	g := &node.Group{Version: 1, ID: v1.GroupIDPrefix + "lost", Definition: def("copy"), Replicas: 1, GroupVersion: 1}
	g.Definition.Namespace = "default"
	if err := kv.PutGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := cluster.RemoveGroup(ctx, &lostAnswer{KVStore: kv}, "default", g.ID); err != nil {
		t.Fatalf("a removal whose first answer was lost: %v", err)
	}
	if _, err := kv.Group(ctx, "default", g.ID); err == nil {
		t.Fatal("the group's record is still there")
	}
}

// A node that hears a peer again after a silence longer than a node is taken for alive
// checks its workloads against their records: it may have been cut off, and its watch of
// its records may have missed what the cluster did meanwhile (chaos seed 67: a copy taken
// over from a node cut off for 21 s, then stopped by its group's update, ran on at the cut
// node for good; the node's own connection never dropped, so no reconnect told it).
func TestNodeThatHearsAPeerAgainCatchesUp(t *testing.T) {
	d := startDeaf(t, "cut-off")
	s, store, mem, w := d.s, d.store, d.mem, d.w
	ctx := context.Background()
	peer := testutil.Connect(t, s)
	announce := func(p string) {
		b, _ := json.Marshal(v1.Announce{NodeID: p, Name: "peer"})
		if err := peer.Publish(v1.AnnounceSubject(p), b); err != nil {
			t.Fatal(err)
		}
		_ = peer.Flush()
	}
	other := nodeID(t)
	announce(other)
	heard := time.Now()
	// the cluster removes the record while this node hears nothing of it
	if err := store.KVStore.Delete(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	// the peer is silent for longer than it is taken for alive (3 announcements: 600 ms)
	testutil.Eventually(t, 5*time.Second, "the peer to be silent past the time it is taken for alive", func() bool {
		return time.Since(heard) > 800*time.Millisecond
	})
	if _, err := mem.rt.Get(ctx, w.ID); err != nil {
		t.Fatalf("the copy was stopped before the peer came back: %v", err)
	}
	announce(other)
	testutil.Eventually(t, 10*time.Second, "the copy no record holds to be stopped once the peer is heard again", func() bool {
		_, err := mem.rt.Get(ctx, w.ID)
		return v1.IsNotFound(err)
	})
}

// A copy kept because its moved mark named a node without the record (a takeover that
// failed half-way) runs again when its nexlet no longer has it: chaos seed 90, where a
// machine was killed while its mark was pending, its fresh nexlet registered and was
// reconciled while the mark still stood, and the mark put back afterwards only indexed
// the workload again: acknowledged, it ran nowhere.
func TestKeptCopyRunsAgainOnAFreshNexlet(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nodes, nexlets := kvPair(t, s, 0)
	c, _ := client.New(testutil.Connect(t, s), "default")
	w := startOn(t, c, nodes[0], "kept")
	store, rec := recordOn(t, s, nodes[0], w.ID)
	nexlets[0].kill() // its copy goes with it
	mark := *rec
	mark.Desired, mark.MovedTo, mark.UpdatedAt = node.DesiredMoved, nodes[1].ID(), time.Now().Add(-cluster.MoveGrace+3*time.Second)
	if err := store.PutOf(ctx, nodes[0].ID(), &mark); err != nil {
		t.Fatal(err)
	}
	fresh := runMemNexlet(t, testutil.Connect(t, s), nodes[0].ID(), nil)
	testutil.Eventually(t, 20*time.Second, "the kept workload to run on the fresh nexlet", func() bool {
		_, err := fresh.rt.Get(ctx, w.ID)
		return err == nil
	})
}

// recordOn reads n's record of wid, through a store of its own it returns with it.
func recordOn(t *testing.T, s *server.Server, n *node.Node, wid string) (*node.KVStore, *node.Record) {
	t.Helper()
	store := kvStore(t, testutil.Connect(t, s), nodeID(t)).(*node.KVStore)
	rec, err := store.RecordOf(context.Background(), n.ID(), wid)
	if err != nil {
		t.Fatal(err)
	}
	return store, rec
}

// An update cut short mid-batch left a copy of the new version beyond the group's count;
// the update asked again counts it as its batch in progress instead of placing another
// beside it: the group never runs more than its count plus one batch.
func TestCutShortBatchCountsAsPlaced(t *testing.T) {
	ctx := context.Background()
	c, st, g := cutShortGroup(t)
	if _, err := c.StartWorkload(ctx, g.Definition); err != nil { // the batch the cut-short update placed
		t.Fatal(err)
	}
	most, stop, sampled := 0, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if list, err := c.ListWorkloads(ctx, ""); err == nil {
				copies := 0
				for _, w := range list {
					if w.Group == st.ID && w.State == v1.StateRunning {
						copies++
					}
				}
				most = max(most, copies)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	d := g.Definition
	d.Namespace, d.Group, d.GroupVersion = "", "", 0
	if _, err := c.UpdateGroup(ctx, st.ID, d, 1); err != nil { // to the version the group says: finish it
		t.Fatalf("the update asked again: %v", err)
	}
	close(stop)
	<-sampled
	if most > 3 {
		t.Fatalf("at one moment the group of 2, updated one copy at a time, ran %d copies", most)
	}
}

// cutShortGroup is a group of 2 copies on one node, whose record says version 2 while
// its copies run version 1: an update whose coordinator was lost after it recorded the
// new version.
func cutShortGroup(t *testing.T) (*client.Client, *v1.GroupStatus, *node.Group) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	store, err := node.OpenKVStore(ctx, nc, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	n := newNode(t, nc, id, store)
	runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(t, s), "default")
	st, err := c.StartGroup(ctx, def("web"), 2, 3, "")
	if err != nil || len(st.Copies) != 2 {
		t.Fatalf("a group of 2: %+v %v", st, err)
	}
	g, err := store.Group(ctx, "default", st.ID)
	if err != nil {
		t.Fatal(err)
	}
	g.Definition.StartRequest = json.RawMessage(`{"value":"v2"}`)
	g.Definition.GroupVersion, g.GroupVersion = 2, 2
	if err := store.PutGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	return c, st, g
}

// heldStart is a memory runtime whose first start waits for release, telling started.
type heldStart struct {
	*memory.Runtime
	once             sync.Once
	started, release chan struct{}
}

func (h *heldStart) Start(ctx context.Context, req v1.StartWorkloadRequest) (v1.WorkloadInfo, error) {
	first := false
	h.once.Do(func() { first = true; close(h.started) })
	if first {
		<-h.release
	}
	return h.Runtime.Start(ctx, req)
}

// A stop that reaches the node a workload is moving to while its nexlet starts it says
// so and does nothing: it found nothing to stop on the nexlet, removed the new record and
// the moved mark, answered "stopped", and the start then ran the workload with no record
// (a review's walk of the takeover).
func TestStopDuringATakeoverIsRefused(t *testing.T) {
	s := testutil.StartServer(t)
	ctx := context.Background()
	ncA, ncB := testutil.Connect(t, s), testutil.Connect(t, s)
	idA, idB := nodeID(t), nodeID(t)
	a := newNodeWith(t, ncA, node.Config{NodeID: idA, Name: "a", Store: kvStore(t, ncA, idA)})
	runMemNexlet(t, ncA, idA, nil)
	waitNexlet(t, a)
	nc := testutil.Connect(t, s)
	c, _ := client.New(nc, "default")
	w := startOn(t, c, a, "moving") // the only node yet
	b := newNodeWith(t, ncB, node.Config{NodeID: idB, Name: "b", Store: kvStore(t, ncB, idB)})
	rtB := &heldStart{Runtime: memory.New("mem", nexlet.NewFeed(ncB, idB)), started: make(chan struct{}), release: make(chan struct{})}
	serveNexlet(t, ncB, idB, rtB)
	waitNexlet(t, b)
	knowEachOther(t, a, b)
	store := kvStore(t, testutil.Connect(t, s), nodeID(t)).(*node.KVStore)
	subject, take := takeoverTo(t, c, store, idA, idB, w.ID, "moving")
	took := make(chan error, 1)
	go func() { took <- svc.Call(ctx, natsconn.Plain(nc), subject, take, nil) }()
	select {
	case <-rtB.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the takeover did not reach node b's nexlet")
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second) // the client asks again until then
	_, stopErr := c.StopWorkload(sctx, w.ID, v1.StopRequest{})
	cancel()
	close(rtB.release)
	if err := <-took; err != nil {
		t.Fatalf("the takeover: %v", err)
	}
	if stopErr == nil {
		end := time.Now().Add(3 * time.Second)
		for time.Now().Before(end) {
			if info, err := rtB.Get(ctx, w.ID); err == nil && info.State == v1.StateRunning {
				t.Fatal("a stop during the takeover answered stopped, and the workload runs on node b")
			}
			time.Sleep(100 * time.Millisecond)
		}
		return
	}
	if !v1.IsCode(stopErr, v1.CodeUnavailable) || !strings.Contains(stopErr.Error(), "moving here") {
		t.Fatalf("a stop during the takeover: %v", stopErr)
	}
	if _, err := c.StopWorkload(ctx, w.ID, v1.StopRequest{}); err != nil {
		t.Fatalf("the stop once the takeover is done: %v", err)
	}
	if _, err := rtB.Get(ctx, w.ID); err == nil {
		t.Fatal("the workload runs on after its stop")
	}
}

// takeoverTo is the request (and its subject) that has node to take workload wid, named
// name, over from node from, as a drain asks: on a bid of to's, at the revision of from's
// record as it is.
func takeoverTo(t *testing.T, c *client.Client, store *node.KVStore, from, to, wid, name string) (string, v1.DeployRequest) {
	t.Helper()
	ctx := context.Background()
	rec, err := store.RecordOf(ctx, from, wid)
	if err != nil {
		t.Fatal(err)
	}
	bids, _, err := c.Auction(ctx, v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService})
	if err != nil {
		t.Fatal(err)
	}
	bid := ""
	for _, bd := range bids {
		if bd.NodeID == to {
			bid = bd.BidID
		}
	}
	moved := def(name)
	moved.Namespace = "default"
	tk := &v1.Takeover{WorkloadID: wid, FromNode: from, Revision: rec.Revision, Reason: v1.TakeoverDrain}
	return v1.SystemSubject(v1.VerbTakeover, bid), v1.DeployRequest{Workload: moved, Takeover: tk}
}
