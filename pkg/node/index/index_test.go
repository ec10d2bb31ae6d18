package index

import (
	"fmt"
	"math"
	"math/rand/v2"
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

// Usage, kept as entries come and go, is always what summing the running entries gives,
// through puts, re-puts, updates that start and stop workloads, drops and burials in any
// order; and it comes back to exactly nothing.
func TestUsageFollowsEveryChange(t *testing.T) {
	x := New()
	rng := rand.New(rand.NewPCG(1, 2))
	desired := []string{records.DesiredRunning, records.DesiredStopping, records.DesiredFinished, records.DesiredMoved}
	rev := uint64(0)
	for i := range 5000 {
		wid := fmt.Sprint("w", rng.IntN(40))
		rev++
		e := entry(wid, "native", "", rev, nil)
		e.Rec.Desired = desired[rng.IntN(len(desired))]
		if rng.IntN(3) > 0 {
			e.Res = &v1.Resources{Memory: v1.ByteSize(rng.IntN(1 << 30)), CPU: float64(rng.IntN(4000)+10) / 1000}
		}
		switch rng.IntN(4) {
		case 0, 1:
			x.Put(e)
		case 2:
			x.Update(e.Rec)
		case 3:
			if rng.IntN(2) == 0 {
				x.Drop(wid)
			} else {
				x.Bury(wid, v1.WorkloadInfo{ID: wid})
			}
		}
		var mem v1.ByteSize
		var cpu float64
		running := 0
		for _, w := range x.All(nil) {
			if w.Running() {
				running++
				if w.Res != nil {
					mem, cpu = mem+w.Res.Memory, cpu+w.Res.CPU
				}
			}
		}
		if gm, gc, gr := x.Usage(); gm != mem || math.Abs(gc-cpu) > 1e-6 || gr != running {
			t.Fatalf("after change %d: usage %v %v %d, the entries sum to %v %v %d", i, gm, gc, gr, mem, cpu, running)
		}
	}
	for _, w := range x.All(nil) {
		x.Drop(w.Rec.WorkloadID)
	}
	if m, c, r := x.Usage(); m != 0 || c != 0 || r != 0 {
		t.Fatalf("usage of an empty index: %v %v %d", m, c, r)
	}
}

// BenchmarkUsage10k is what every auction asks the index of a node that holds 10,000
// workloads (half of them finished).
func BenchmarkUsage10k(b *testing.B) {
	x := New()
	for i := range 10000 {
		e := entry(fmt.Sprint("w", i), "native", "", 1, &v1.Resources{Memory: 1 << 20, CPU: 0.01})
		if i%2 == 0 {
			e.Rec.Desired = records.DesiredFinished
		}
		x.Put(e)
	}
	for b.Loop() {
		x.Usage()
	}
}
