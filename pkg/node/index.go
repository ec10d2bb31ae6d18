package node

import (
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The index room: the workloads this node holds (a copy of each one's record, with its
// ports and resources parsed once), how many each nexlet runs, the request IDs they were
// started with, and the tombstones of workloads that ended here. Its lock is its own,
// taken by its methods only, which call nothing while they hold it: a caller may hold any
// other lock of the node when it calls one (never the other way round).

// workloadRecord is the node's index entry of a workload: a copy of its stored record
// (replaced whole, never changed in place), the ports it exposes and the resources it
// asked for (nil: none).
type workloadRecord struct {
	rec   Record
	ports []int
	res   *v1.Resources
}

// running says whether a workload holds what it asked for: it runs, or is being stopped.
func (w workloadRecord) running() bool {
	return w.rec.Desired == DesiredRunning || w.rec.Desired == DesiredStopping
}

// tombstone is what a workload that ended here was, kept for TombstoneTTL.
type tombstone struct {
	info v1.WorkloadInfo
	at   time.Time
}

type workloadIndex struct {
	mu         sync.Mutex
	workloads  map[string]workloadRecord
	counts     map[string]int    // workloads per nexlet
	byRequest  map[string]string // namespace + "\x00" + request ID -> workload ID
	tombstones map[string]tombstone
}

func newWorkloadIndex() *workloadIndex {
	return &workloadIndex{workloads: map[string]workloadRecord{}, counts: map[string]int{},
		byRequest: map[string]string{}, tombstones: map[string]tombstone{}}
}

func requestKey(ns, requestID string) string { return ns + "\x00" + requestID }

// put indexes w, in place of an older entry of its workload.
func (x *workloadIndex) put(w workloadRecord) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.workloads[w.rec.WorkloadID]; ok {
		x.counts[old.rec.NexletID]--
	}
	x.workloads[w.rec.WorkloadID] = w
	x.counts[w.rec.NexletID]++
	if w.rec.RequestID != "" {
		x.byRequest[requestKey(w.rec.Definition.Namespace, w.rec.RequestID)] = w.rec.WorkloadID
	}
}

// drop removes wid's entry, and returns it.
func (x *workloadIndex) drop(wid string) (workloadRecord, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.dropLocked(wid)
}

func (x *workloadIndex) dropLocked(wid string) (workloadRecord, bool) {
	old, ok := x.workloads[wid]
	if ok {
		x.counts[old.rec.NexletID]--
		delete(x.workloads, wid)
		if old.rec.RequestID != "" {
			delete(x.byRequest, requestKey(old.rec.Definition.Namespace, old.rec.RequestID))
		}
	}
	return old, ok
}

// bury drops wid's entry and keeps info as its tombstone.
func (x *workloadIndex) bury(wid string, info v1.WorkloadInfo) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropLocked(wid)
	x.tombstones[wid] = tombstone{info: info, at: time.Now()}
}

// get returns wid's entry.
func (x *workloadIndex) get(wid string) (workloadRecord, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	w, ok := x.workloads[wid]
	return w, ok
}

// has tells whether wid is indexed.
func (x *workloadIndex) has(wid string) bool {
	_, ok := x.get(wid)
	return ok
}

// update replaces the record of an entry that is still indexed, unless the index holds a
// newer revision already (two writers finishing out of order).
func (x *workloadIndex) update(rec Record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if w, ok := x.workloads[rec.WorkloadID]; ok && rec.Revision >= w.rec.Revision {
		w.rec = rec
		x.workloads[rec.WorkloadID] = w
	}
}

// byRequestID finds the workload of ns started with requestID.
func (x *workloadIndex) byRequestID(ns, requestID string) (Record, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	w, ok := x.workloads[x.byRequest[requestKey(ns, requestID)]]
	return w.rec, ok
}

// nexletCounts is how many workloads each nexlet holds (a copy).
func (x *workloadIndex) nexletCounts() map[string]int {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string]int, len(x.counts))
	for id, c := range x.counts {
		out[id] = c
	}
	return out
}

// len is how many workloads are indexed.
func (x *workloadIndex) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.workloads)
}

// all returns the entries keep accepts (every one for nil), as they are now.
func (x *workloadIndex) all(keep func(workloadRecord) bool) []workloadRecord {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]workloadRecord, 0, len(x.workloads))
	for _, w := range x.workloads {
		if keep == nil || keep(w) {
			out = append(out, w)
		}
	}
	return out
}

// usage sums what the running workloads asked for, and counts them: every auction asks,
// so it copies nothing.
func (x *workloadIndex) usage() (memory v1.ByteSize, cpu float64, running int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, w := range x.workloads {
		if !w.running() {
			continue
		}
		running++
		if w.res != nil {
			memory += w.res.Memory
			cpu += w.res.CPU
		}
	}
	return memory, cpu, running
}

// records returns the records of the entries keep accepts (every one for nil).
func (x *workloadIndex) records(keep func(Record) bool) []Record {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]Record, 0, len(x.workloads))
	for _, w := range x.workloads {
		if keep == nil || keep(w.rec) {
			out = append(out, w.rec)
		}
	}
	return out
}

// tombstone returns what wid was when it ended here, while its tombstone is kept.
func (x *workloadIndex) tombstone(wid string) (tombstone, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	t, ok := x.tombstones[wid]
	return t, ok
}

// expireTombstones drops the tombstones older than ttl.
func (x *workloadIndex) expireTombstones(now time.Time, ttl time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, t := range x.tombstones {
		if now.Sub(t.at) > ttl {
			delete(x.tombstones, id)
		}
	}
}
