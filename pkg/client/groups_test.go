package client_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// A group create asked again, because its first try had no answer, and told the group
// exists, has created it: the new ID was made for it. The client says what runs, not
// "conflict". (A chaos run: the first try ended as "not found" while the coordinator
// created the group.)
func TestRetriedGroupCreateIsNotAConflict(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	var tries atomic.Int32
	fail := func(m *nats.Msg, e *v1.Error) {
		body, _ := json.Marshal(e)
		r := nats.NewMsg(m.Reply)
		r.Data = body
		r.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(e.Code))
		r.Header.Set(micro.ErrorHeader, e.Message)
		r.Header.Set(v1.HeaderNodeID, "N1")
		r.Header.Set(v1.HeaderPeers, "N1")
		_ = m.RespondMsg(r)
	}
	_, err := nc.Subscribe(v1.ControlSubject("default", v1.VerbGroup, "*"), func(m *nats.Msg) {
		var req v1.GroupRequest
		_ = json.Unmarshal(m.Data, &req)
		try := tries.Add(1)
		switch {
		case req.Op == v1.GroupInfo:
			b, _ := json.Marshal(v1.GroupStatus{ID: "created", Replicas: 2})
			_ = m.Respond(b)
		case try == 1: // the coordinator's answer lost; another node's "not here" came first
			fail(m, v1.NotFound("node N1 is not the coordinator"))
		default:
			fail(m, v1.Errorf(v1.CodeConflict, "group exists"))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server has the subscription before the client asks
		t.Fatal(err)
	}
	c, _ := client.New(testutil.Connect(t, s), "default")
	st, err := c.StartGroup(context.Background(), v1.WorkloadDefinition{Name: "g", Type: "memory", Lifecycle: v1.LifecycleService, StartRequest: json.RawMessage(`{"value":"x"}`)}, 2, 1, "")
	if err != nil {
		t.Fatalf("a create whose retry met its own group: %v", err)
	}
	if st.ID != "created" || tries.Load() != 3 {
		t.Fatalf("got %+v after %d tries, want the group's status after 3", st, tries.Load())
	}
}

// A node that answers a list with an error (one shutting down answers what it had queued
// 503) is named among the missing, as one that did not answer is: its workloads are not
// in the list, and the list must not look whole. Before, they were left out in silence.
func TestListNamesNodesThatFailed(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	answer := func(node string, reply func(m *nats.Msg, r *nats.Msg)) {
		if _, err := nc.Subscribe(v1.ControlSubject("default", v1.VerbList), func(m *nats.Msg) {
			r := nats.NewMsg(m.Reply)
			r.Header.Set(v1.HeaderNodeID, node)
			r.Header.Set(v1.HeaderPeers, "N1,N2")
			reply(m, r)
			_ = m.RespondMsg(r)
		}); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil { // the server has the subscription before the client asks (a CI dry run: "no node answered")
			t.Fatal(err)
		}
	}
	answer("N1", func(_ *nats.Msg, r *nats.Msg) {
		r.Data, _ = json.Marshal(v1.ListReply{NodeID: "N1", Workloads: []v1.WorkloadInfo{{ID: "w1", NodeID: "N1", State: v1.StateRunning}}})
	})
	answer("N2", func(_ *nats.Msg, r *nats.Msg) {
		e := v1.Errorf(v1.CodeUnavailable, "the service is shutting down")
		r.Data, _ = json.Marshal(e)
		r.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(e.Code))
		r.Header.Set(micro.ErrorHeader, e.Message)
	})
	c, _ := client.New(testutil.Connect(t, s), "default")
	list, missing, err := c.ListReport(context.Background(), v1.ListRequest{})
	if err != nil || len(list) != 1 || len(missing) != 1 || missing[0] != "N2" {
		t.Fatalf("a list where N2 failed: %v, missing %v, %v; want w1, and N2 missing", list, missing, err)
	}
}

// An auction no node answers is asked again for a moment before the start says no agents
// are available: a node whose server went reconnects to another within a quarter of a
// second (a fault test: three starts failed so while the only node moved off the KV
// leader's server). Here the node comes 200 ms after the first ask.
func TestAuctionWaitsForANodeBetweenServers(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	c, _ := client.New(testutil.Connect(t, s), "default")
	got := make(chan error, 1)
	var bids []v1.Bid
	go func() {
		var err error
		bids, _, err = c.Auction(context.Background(), v1.AuctionRequest{Type: "memory", Lifecycle: v1.LifecycleJob})
		got <- err
	}()
	time.Sleep(200 * time.Millisecond) // the node reconnecting: a fault, not a wait for the test
	if _, err := nc.Subscribe(v1.ControlSubject("default", v1.VerbAuction), func(m *nats.Msg) {
		r := nats.NewMsg(m.Reply)
		r.Header.Set(v1.HeaderNodeID, "N1")
		r.Header.Set(v1.HeaderPeers, "N1")
		r.Data, _ = json.Marshal(v1.AuctionReply{NodeID: "N1", Bid: &v1.Bid{BidID: "b1", NodeID: "N1"}})
		_ = m.RespondMsg(r)
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil || len(bids) != 1 {
		t.Fatalf("an auction while the only node reconnects: %v %v", bids, err)
	}
}

// A start whose only bidder is still registering (its node reconnected, and reconciles
// its nexlet) asks again for a moment instead of failing "no agents" (a fault test: four
// starts failed so, 0.1 s after the node moved off the KV leader's server). Here the
// nexlet registers after two asks; a decline that will not pass is answered at once.
func TestStartWaitsForANexletRegistering(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	c, _ := client.New(testutil.Connect(t, s), "default")
	var mu sync.Mutex
	asks, soon := 0, true
	if _, err := nc.Subscribe(v1.ControlSubject("default", v1.VerbAuction), func(m *nats.Msg) {
		mu.Lock()
		asks++
		reply := v1.AuctionReply{NodeID: "N1", Decline: "nexlet native is still registering", Soon: soon}
		if asks > 2 && soon {
			reply = v1.AuctionReply{NodeID: "N1", Bid: &v1.Bid{BidID: "b1", NodeID: "N1", ExpiresAt: time.Now().Add(time.Minute), StartRequestSchema: json.RawMessage(`{"type":"object"}`)}}
		}
		mu.Unlock()
		r := nats.NewMsg(m.Reply)
		r.Header.Set(v1.HeaderNodeID, "N1")
		r.Header.Set(v1.HeaderPeers, "N1")
		r.Data, _ = json.Marshal(reply)
		_ = m.RespondMsg(r)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(v1.ControlSubject("default", v1.VerbDeploy, "b1"), func(m *nats.Msg) {
		b, _ := json.Marshal(v1.WorkloadInfo{ID: "w1", NodeID: "N1"})
		_ = m.Respond(b)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	def := v1.WorkloadDefinition{Name: "j", Type: "native", Lifecycle: v1.LifecycleJob, StartRequest: json.RawMessage(`{}`)}
	if w, err := c.StartWorkload(context.Background(), def); err != nil || w.ID != "w1" {
		t.Fatalf("a start while the only nexlet registers: %+v %v", w, err)
	}
	mu.Lock()
	asks, soon = 0, false // a decline for good
	mu.Unlock()
	if _, err := c.StartWorkload(context.Background(), def); !v1.IsCode(err, v1.CodeNoPlacement) {
		t.Fatalf("a start no nexlet can take: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if asks != 1 {
		t.Fatalf("a decline for good was asked %d times", asks)
	}
}
