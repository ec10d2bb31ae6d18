package node_test

import (
	"context"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/node"
)

// BenchmarkStartWorkload is auction + deploy + KV-less start on an in-memory nexlet: the
// control plane's own cost, without fork/exec.
func BenchmarkStartWorkload(b *testing.B) {
	t := &testing.T{}
	s := testutil.StartServer(b)
	nc := testutil.Connect(b, s)
	startNode(t, nc, "n1", nil)
	c, _ := client.New(testutil.Connect(b, s), "bench")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.StartWorkload(context.Background(), def("w")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList lists 1,000 workloads of one node.
func BenchmarkList(b *testing.B) {
	t := &testing.T{}
	s := testutil.StartServer(b)
	nc := testutil.Connect(b, s)
	startNode(t, nc, "n1", nil)
	c, _ := client.New(testutil.Connect(b, s), "bench")
	for i := 0; i < 1000; i++ {
		if _, err := c.StartWorkload(context.Background(), def("w")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l, err := c.List(context.Background(), v1.ListRequest{NoMetadata: true})
		if err != nil || len(l) != 1000 {
			b.Fatal(len(l), err)
		}
	}
}

// BenchmarkStartWorkloadIsolated is BenchmarkStartWorkload with credentials minted per
// workload (an account key signs a user JWT) and sealed for the nexlet.
func BenchmarkStartWorkloadIsolated(b *testing.B) {
	t := &testing.T{}
	s := testutil.StartServer(b)
	nc := testutil.Connect(b, s)
	acc, _ := nkeys.CreateAccount()
	pub, _ := acc.PublicKey()
	seed, _ := acc.Seed()
	minter, err := creds.NewAccountKeyMinter(pub, string(seed))
	if err != nil {
		b.Fatal(err)
	}
	n, err := node.New(nc, node.Config{NodeID: nodeID(t), Minter: minter})
	if err != nil {
		b.Fatal(err)
	}
	n.Start()
	defer n.Stop()
	runMemNexlet(t, nc, n.ID(), nil)
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(b, s), "bench")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.StartWorkload(context.Background(), def("w")); err != nil {
			b.Fatal(err)
		}
	}
}
