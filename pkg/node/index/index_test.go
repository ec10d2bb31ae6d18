package index

import (
	"testing"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
)

func entry(wid, nexlet, requestID string, rev uint64, res *v1.Resources) Entry {
	return Entry{Rec: records.Record{WorkloadID: wid, NexletID: nexlet, RequestID: requestID, Revision: rev, Desired: records.DesiredRunning,
		Definition: v1.WorkloadDefinition{Namespace: "ns"}}, Res: res}
}

// Counts, request IDs and usage follow puts and drops; an update never puts an older
// revision over a newer one; a buried workload leaves a tombstone until it expires.
func TestIndex(t *testing.T) {
	x := New()
	x.Put(entry("w1", "native", "r1", 1, &v1.Resources{Memory: 100, CPU: 0.5}))
	x.Put(entry("w2", "native", "", 1, nil))
	x.Put(entry("w3", "other", "", 1, &v1.Resources{Memory: 50}))
	if c := x.NexletCounts(); c["native"] != 2 || c["other"] != 1 || x.Len() != 3 {
		t.Fatalf("counts %v, len %d", c, x.Len())
	}
	if mem, cpu, running := x.Usage(); mem != 150 || cpu != 0.5 || running != 3 {
		t.Fatalf("usage %v %v %d", mem, cpu, running)
	}
	if rec, ok := x.ByRequestID("ns", "r1"); !ok || rec.WorkloadID != "w1" {
		t.Fatalf("by request ID: %v %v", rec, ok)
	}
	x.Put(entry("w1", "other", "r1", 2, nil)) // re-indexed on another nexlet
	if c := x.NexletCounts(); c["native"] != 1 || c["other"] != 2 {
		t.Fatalf("counts after a re-index: %v", c)
	}
	newer := entry("w1", "other", "r1", 5, nil).Rec
	x.Update(newer)
	x.Update(entry("w1", "other", "r1", 3, nil).Rec) // late writer: ignored
	if w, _ := x.Get("w1"); w.Rec.Revision != 5 {
		t.Fatalf("revision %d after an older update, want 5", w.Rec.Revision)
	}
	x.Update(entry("gone", "other", "", 9, nil).Rec) // not indexed: not added
	if x.Has("gone") {
		t.Fatal("an update indexed a workload")
	}
	x.Bury("w1", v1.WorkloadInfo{ID: "w1", State: v1.StateStopped})
	if _, ok := x.ByRequestID("ns", "r1"); ok || x.Has("w1") {
		t.Fatal("a buried workload is still indexed")
	}
	if ts, ok := x.Tombstone("w1"); !ok || ts.Info.State != v1.StateStopped {
		t.Fatalf("tombstone %v %v", ts, ok)
	}
	x.ExpireTombstones(time.Now().Add(time.Minute), 30*time.Second)
	if _, ok := x.Tombstone("w1"); ok {
		t.Fatal("an expired tombstone is kept")
	}
	if recs := x.Records(func(r records.Record) bool { return r.NexletID == "other" }); len(recs) != 1 || recs[0].WorkloadID != "w3" {
		t.Fatalf("records of other: %v", recs)
	}
}
