package node_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// A start with a request ID, made again (a retry, a script run twice), returns the first
// start's workload: from the node that runs it, or, when that node cannot answer the
// auction, from the claim in the shared store; never a second workload.
func TestStartWithRequestIDIsIdempotent(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id1, id2 := nodeID(t), nodeID(t)
	store1 := kvStore(t, nc, id1)
	n1 := newNode(t, nc, id1, store1)
	mem1 := runMemNexlet(t, nc, id1, nil)
	waitNexlet(t, n1)
	c, _ := client.New(testutil.Connect(t, s), "default")
	ctx := context.Background()

	// a claim of this node's whose start a crash cut short (no such workload): taken over
	if _, err := store1.Claim(ctx, "default", "cut-short", "ghost@"+id1); err != nil {
		t.Fatal(err)
	}
	w, before, err := c.StartOnce(ctx, def("once"), "cut-short")
	if err != nil || before || w.ID == "ghost" {
		t.Fatalf("a key whose start was cut short: %+v before=%v %v", w, before, err)
	}
	if again, before, err := c.StartOnce(ctx, def("once"), "cut-short"); err != nil || !before || again.ID != w.ID {
		t.Fatalf("the taken-over key again: %+v before=%v %v", again, before, err)
	}
	if _, err := c.StopWorkload(ctx, w.ID, v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	starts := mem1.rt.Starts()

	first, before, err := c.StartOnce(ctx, def("once"), "deploy-42")
	if err != nil || before {
		t.Fatal(err, before)
	}
	again, before, err := c.StartOnce(ctx, def("once"), "deploy-42")
	if err != nil || again.ID != first.ID || !before {
		t.Fatalf("the same request ID started %v (before %v, %v), want %s", again, before, err, first.ID)
	}
	other, before, err := c.StartOnce(ctx, def("once"), "deploy-43")
	if err != nil || other.ID == first.ID || before {
		t.Fatalf("another request ID: %v %v", other, err)
	}
	if n := mem1.rt.Starts() - starts; n != 2 {
		t.Fatalf("%d starts for two request IDs", n)
	}
	// another namespace has keys of its own
	c2, _ := client.New(testutil.Connect(t, s), "other")
	if w, _, err := c2.StartOnce(ctx, def("once"), "deploy-42"); err != nil || w.ID == first.ID {
		t.Fatalf("the same key in another namespace: %v %v", w, err)
	}

	// the node that runs it stops answering; a second node shares the store
	n2 := newNode(t, nc, id2, kvStore(t, nc, id2))
	mem2 := runMemNexlet(t, nc, id2, nil)
	waitNexlet(t, n2)
	mem1.kill()
	n1.Stop()
	_, _, err = c.StartOnce(ctx, def("once"), "deploy-42")
	if err == nil || !strings.Contains(err.Error(), "request ID was used by workload "+first.ID) {
		t.Fatalf("a retry while its node is gone: %v, want an error naming %s", err, first.ID)
	}
	if n := mem2.rt.Starts(); n != 0 {
		t.Fatalf("the retry started %d workloads on the other node", n)
	}
	if _, _, err := c.StartOnce(ctx, def("once"), strings.Repeat("k", v1.MaxRequestIDBytes+1)); !v1.IsCode(err, v1.CodeBadRequest) {
		t.Fatalf("an over-long request ID: %v", err)
	}
}
