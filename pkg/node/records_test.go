package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/node"
)

// A finished job stays listed until it is removed (workload rm) or its retention runs
// out; a running one cannot be removed; its record goes with it.
func TestFinishedRecordsRemovedByUserOrRetention(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	store := kvStore(t, nc, id)
	n, err := node.New(nc, node.Config{NodeID: id, Store: store, HeartbeatInterval: 100 * time.Millisecond, FinishedRetention: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	mem := runMemNexlet(t, nc, id, nil)
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(t, s), "default")
	ctx := context.Background()
	jd := def("job")
	jd.Lifecycle = v1.LifecycleJob
	job, err := c.StartWorkload(ctx, jd)
	if err != nil {
		t.Fatal(err)
	}
	svcW, err := c.StartWorkload(ctx, def("svc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveWorkload(ctx, svcW.ID); !v1.IsCode(err, v1.CodeConflict) {
		t.Fatalf("rm of a running service: %v, want a conflict", err)
	}
	mem.rt.Finish(job.ID, 3)
	recorded := func() *node.Record {
		recs, _ := store.List(ctx)
		for _, r := range recs {
			if r.WorkloadID == job.ID {
				return r
			}
		}
		return nil
	}
	testutil.Eventually(t, 5*time.Second, "the job to be recorded finished", func() bool {
		r := recorded()
		return r != nil && r.Desired == node.DesiredFinished && r.Final != nil && *r.Final.ExitCode == 3
	})
	// retention: gone within a few seconds, record and all
	testutil.Eventually(t, 10*time.Second, "the finished job to expire", func() bool { return recorded() == nil })
	if l, _ := c.ListWorkloads(ctx, ""); len(l) != 1 || l[0].ID != svcW.ID {
		t.Fatalf("after the retention the list is %+v", l)
	}

	// and by the user, at once
	job2, _ := c.StartWorkload(ctx, jd)
	mem.rt.Finish(job2.ID, 0)
	testutil.Eventually(t, 5*time.Second, "job2 to be listed finished", func() bool {
		w, err := c.WorkloadInfo(ctx, job2.ID)
		return err == nil && w.Finished()
	})
	if _, err := c.RemoveWorkload(ctx, job2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WorkloadInfo(ctx, job2.ID); !v1.IsNotFound(err) && err != nil {
		// a stopped workload answers from its tombstone for a while: either is fine, but not running
		t.Fatalf("info after rm: %v", err)
	}
	if l, _ := c.ListWorkloads(ctx, ""); len(l) != 1 {
		t.Fatalf("after rm the list is %+v", l)
	}
}

// While a nexlet is down (restarting), its workloads stay listed from their records with
// state unknown, instead of vanishing from the list.
func TestRestartingNexletListedFromRecords(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	id := nodeID(t)
	n := newNode(t, nc, id, kvStore(t, nc, id))
	mem := runMemNexlet(t, testutil.Connect(t, s), id, nil)
	waitNexlet(t, n)
	c, _ := client.New(testutil.Connect(t, s), "default")
	ctx := context.Background()
	w, err := c.StartWorkload(ctx, def("svc"))
	if err != nil {
		t.Fatal(err)
	}
	mem.kill()
	list, err := c.ListWorkloads(ctx, "")
	if err != nil || len(list) != 1 || list[0].ID != w.ID || list[0].State != v1.StateUnknown || list[0].Metadata["desired"] != "running" {
		t.Fatalf("while the nexlet is down the list is %+v (%v)", list, err)
	}
	info, err := c.WorkloadInfo(ctx, w.ID)
	if err != nil || info.State != v1.StateUnknown {
		t.Fatalf("info while the nexlet is down: %+v %v", info, err)
	}
}
