package node_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/ports"
	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/nexlet/memory"
	"github.com/nexrun/nex/pkg/node"
)

// A node ID of any length the token rules accept runs a node: no input panics nexd.
func TestShortNodeIDs(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	for _, id := range []string{"a", "ab12", "0123456789"} {
		n, err := node.New(nc, node.Config{NodeID: id})
		if err != nil {
			t.Fatalf("node ID %q: %v", id, err)
		}
		if err := n.Start(); err != nil {
			t.Fatalf("node ID %q: start: %v", id, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- nexlet.Serve(ctx, nc, nexlet.Config{NodeID: id, NexletID: "mem", RegisterType: "memory",
				Lifecycles: []string{v1.LifecycleService}, StartRequestSchema: []byte(memory.Schema)}, memory.New("mem", nexlet.NewFeed(nc, id)))
		}()
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := n.WaitForNexlet(wctx, "memory"); err != nil {
			t.Fatal(err)
		}
		wcancel()
		c, _ := client.New(nc, "default")
		w, err := c.StartWorkload(context.Background(), def("short"))
		if err != nil || w.NodeID != id {
			t.Fatalf("node ID %q: start a workload: %+v %v", id, w, err)
		}
		if _, err := c.StopWorkload(context.Background(), w.ID, v1.StopRequest{}); err != nil {
			t.Fatal(err)
		}
		cancel()
		<-done
		n.Stop()
	}
}

// Registrations, heartbeats and lameduck requests arriving while the node stops are
// served or refused, never raced against its shutdown (run with -race).
func TestStopWhileRequestsArrive(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	for round := 0; round < 5; round++ {
		id := nodeID(t)
		n, err := node.New(nc, node.Config{NodeID: id})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		var hits atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reg := v1.RegisterRequest{NexletID: "gone", RegisterType: "memory", StartRequestSchema: []byte(memory.Schema), Lifecycles: []string{v1.LifecycleService}}
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					switch i % 3 {
					case 0:
						_ = svc.Call(ctx, natsconn.Plain(nc), v1.RegisterSubject(id), reg, nil)
					case 1:
						_ = svc.Call(ctx, natsconn.Plain(nc), v1.HeartbeatSubject(id, "gone"), v1.Heartbeat{NexletID: "gone"}, nil)
					default:
						_ = svc.Call(ctx, natsconn.Plain(nc), v1.SystemSubject(v1.VerbLameduck, id), v1.LameduckRequest{Delay: v1.Duration(time.Hour)}, nil)
					}
					cancel()
					hits.Add(1)
				}
			}()
		}
		testutil.Eventually(t, 10*time.Second, "requests to reach the node", func() bool { return hits.Load() > 20 })
		n.Stop()
		close(stop)
		wg.Wait()
	}
}

// Starts, stops, heartbeats marking jobs finished and credential renewals run at once
// on the same records: records are values, so -race stays quiet.
func TestConcurrentRecordUpdates(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	acc, _ := nkeys.CreateAccount()
	pub, _ := acc.PublicKey()
	seed, _ := acc.Seed()
	minter, err := creds.NewAccountKeyMinter(pub, string(seed))
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(nc, node.Config{NodeID: nodeID(t), Minter: minter, HeartbeatInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	mem := runMemNexlet(t, nc, n.ID(), nil)
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(t, s), "default")
	stop := make(chan struct{})
	var renewals sync.WaitGroup
	renewals.Add(1)
	go func() {
		defer renewals.Done()
		for {
			select {
			case <-stop:
				return
			default:
				n.RenewCreds()
			}
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 15; j++ {
				d := def("race")
				if j%2 == 0 {
					d.Lifecycle = v1.LifecycleJob
				}
				w, err := c.StartWorkload(context.Background(), d)
				if err != nil {
					t.Error(err)
					return
				}
				if j%2 == 0 { // the next heartbeat reports it finished
					mem.rt.Finish(w.ID, 0)
				}
				if _, err := c.StopWorkload(context.Background(), w.ID, v1.StopRequest{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	renewals.Wait()
}

// The auction binds a socket to see whether a port is free: never while it holds the
// node's lock, so a slow probe cannot stall other requests.
func TestPortProbeOutsideTheLock(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	n := startNode(t, nc, "n1", nil)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	probe := ports.Probe
	ports.Probe = func(p int) bool {
		entered <- struct{}{}
		<-release
		return true
	}
	t.Cleanup(func() { ports.Probe = probe })
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Call(ctx, natsconn.Plain(nc), v1.ControlSubject("default", v1.VerbAuction), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleService, Ports: []int{18080}}, nil)
	}()
	<-entered
	info := make(chan v1.NodeInfo, 1)
	go func() { info <- n.Info(false) }()
	select {
	case <-info:
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("node info waited for an auction's port probe: the probe runs under the node's lock")
	}
	close(release)
}
