package node_test

import (
	"context"
	"testing"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
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
