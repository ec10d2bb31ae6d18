package node_test

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node"
)

// A file store keeps records and request-ID claims across a reopen (a restarted nexd),
// with compare-and-set as in memory.
func TestFileStoreSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := node.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	code := 3
	rec := &node.Record{WorkloadID: "w1", NexletID: "native", Desired: node.DesiredRunning, Definition: v1.WorkloadDefinition{Namespace: "default", Name: "job"}}
	if err := s.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	stale := *rec
	rec.Desired, rec.Final = node.DesiredFinished, &v1.WorkloadInfo{ID: "w1", State: v1.StateStopped, ExitCode: &code}
	if err := s.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, &stale); !errors.Is(err, node.ErrConflict) {
		t.Fatalf("a write from a stale revision: %v", err)
	}
	gone := &node.Record{WorkloadID: "w2", Desired: node.DesiredRunning}
	_ = s.Put(ctx, gone)
	_ = s.Delete(ctx, "w2")
	if h, err := s.Claim(ctx, "default", "key", "w1"); err != nil || h != "w1" {
		t.Fatal(h, err)
	}

	again, err := node.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := again.List(ctx)
	if len(recs) != 1 || recs[0].Desired != node.DesiredFinished || recs[0].Final == nil || *recs[0].Final.ExitCode != 3 || recs[0].Revision != rec.Revision {
		t.Fatalf("after reopening: %+v", recs)
	}
	if h, _ := again.Claim(ctx, "default", "key", "w9"); h != "w1" {
		t.Fatalf("the claim was lost: held by %q", h)
	}
	if err := again.Put(ctx, &node.Record{WorkloadID: "w3"}); err != nil {
		t.Fatal(err)
	}
	recs, _ = again.List(ctx)
	for _, r := range recs {
		if r.WorkloadID == "w3" && r.Revision <= rec.Revision {
			t.Fatalf("revisions went back after reopening: %d after %d", r.Revision, rec.Revision)
		}
	}
}
