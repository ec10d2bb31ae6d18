// Package index is the index room of a node: the workloads it holds (a copy of each
// one's record, with its ports and resources parsed once), how many each nexlet runs, the
// request IDs they were started with, and the tombstones of workloads that ended here.
package index

import (
	"math"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
)

// The index room: the workloads this node holds (a copy of each one's record, with its
// ports and resources parsed once), how many each nexlet runs, the request IDs they were
// started with, and the tombstones of workloads that ended here. Its lock is its own,
// taken by its methods only, which call nothing while they hold it: a caller may hold any
// other lock of the node when it calls one (never the other way round).

// Entry is the node's index entry of a workload: a copy of its stored record
// (replaced whole, never changed in place), the ports it exposes and the resources it
// asked for (nil: none).
type Entry struct {
	Rec   records.Record
	Ports []int
	Res   *v1.Resources
}

// Running says whether a workload holds what it asked for: it runs, or is being stopped.
func (w Entry) Running() bool {
	return w.Rec.Desired == records.DesiredRunning || w.Rec.Desired == records.DesiredStopping
}

// Tombstone is what a workload that ended here was, kept for the node's TombstoneTTL.
type Tombstone struct {
	Info v1.WorkloadInfo
	At   time.Time
}

// Index is the room. Its lock is its own, taken by its methods only, which call nothing
// while they hold it: a caller may hold any other lock of the node when it calls one
// (never the other way round).
type Index struct {
	mu         sync.Mutex
	workloads  map[string]Entry
	counts     map[string]int    // workloads per nexlet
	byRequest  map[string]string // namespace + "\x00" + request ID -> workload ID
	tombstones map[string]Tombstone
	used       used // of the running entries, kept as entries come and go: every auction asks
}

// used sums what running workloads asked for: CPU in nanocores, so that adding and
// taking away the same workloads gives back exactly what was there (floats drift).
type used struct {
	memory  v1.ByteSize
	nanoCPU int64
	running int
}

// count adds w to the sums (sign 1) or takes it away (-1), when it runs.
func (u *used) count(w Entry, sign int) {
	if !w.Running() {
		return
	}
	u.running += sign
	if w.Res != nil {
		u.memory += v1.ByteSize(sign) * w.Res.Memory
		u.nanoCPU += int64(sign) * int64(math.Round(w.Res.CPU*1e9))
	}
}

// New returns an empty index.
func New() *Index {
	return &Index{workloads: map[string]Entry{}, counts: map[string]int{},
		byRequest: map[string]string{}, tombstones: map[string]Tombstone{}}
}

func requestKey(ns, requestID string) string { return ns + "\x00" + requestID }

// Put indexes w, in place of an older entry of its workload.
func (x *Index) Put(w Entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.workloads[w.Rec.WorkloadID]; ok {
		x.counts[old.Rec.NexletID]--
		x.used.count(old, -1)
	}
	x.workloads[w.Rec.WorkloadID] = w
	x.counts[w.Rec.NexletID]++
	x.used.count(w, 1)
	if w.Rec.RequestID != "" {
		x.byRequest[requestKey(w.Rec.Definition.Namespace, w.Rec.RequestID)] = w.Rec.WorkloadID
	}
}

// Drop removes wid's entry, and returns it.
func (x *Index) Drop(wid string) (Entry, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.dropLocked(wid)
}

func (x *Index) dropLocked(wid string) (Entry, bool) {
	old, ok := x.workloads[wid]
	if ok {
		x.counts[old.Rec.NexletID]--
		x.used.count(old, -1)
		delete(x.workloads, wid)
		if old.Rec.RequestID != "" {
			delete(x.byRequest, requestKey(old.Rec.Definition.Namespace, old.Rec.RequestID))
		}
	}
	return old, ok
}

// Bury drops wid's entry and keeps info as its tombstone.
func (x *Index) Bury(wid string, info v1.WorkloadInfo) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropLocked(wid)
	x.tombstones[wid] = Tombstone{Info: info, At: time.Now()}
}

// Get returns wid's entry.
func (x *Index) Get(wid string) (Entry, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	w, ok := x.workloads[wid]
	return w, ok
}

// Has tells whether wid is indexed.
func (x *Index) Has(wid string) bool {
	_, ok := x.Get(wid)
	return ok
}

// Update replaces the record of an entry that is still indexed, unless the index holds a
// newer revision already (two writers finishing out of order).
func (x *Index) Update(rec records.Record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if w, ok := x.workloads[rec.WorkloadID]; ok && rec.Revision >= w.Rec.Revision {
		x.used.count(w, -1)
		w.Rec = rec
		x.workloads[rec.WorkloadID] = w
		x.used.count(w, 1)
	}
}

// ByRequestID finds the workload of ns started with requestID.
func (x *Index) ByRequestID(ns, requestID string) (records.Record, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	id, ok := x.byRequest[requestKey(ns, requestID)]
	if !ok {
		return records.Record{}, false
	}
	w, ok := x.workloads[id]
	return w.Rec, ok
}

// NexletCounts is how many workloads each nexlet holds (a copy).
func (x *Index) NexletCounts() map[string]int {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string]int, len(x.counts))
	for id, c := range x.counts {
		out[id] = c
	}
	return out
}

// Len is how many workloads are indexed.
func (x *Index) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.workloads)
}

// All returns the entries keep accepts (every one for nil), as they are now.
func (x *Index) All(keep func(Entry) bool) []Entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]Entry, 0, len(x.workloads))
	for _, w := range x.workloads {
		if keep == nil || keep(w) {
			out = append(out, w)
		}
	}
	return out
}

// Usage is what the running workloads asked for, and how many they are: every auction
// asks, so it is kept as entries come and go, not summed over every workload held
// (finished ones included: 3 % of a node's CPU at 150 starts a second with 1,500 held).
func (x *Index) Usage() (memory v1.ByteSize, cpu float64, running int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.used.memory, float64(x.used.nanoCPU) / 1e9, x.used.running
}

// Records returns the records of the entries keep accepts (every one for nil).
func (x *Index) Records(keep func(records.Record) bool) []records.Record {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]records.Record, 0, len(x.workloads))
	for _, w := range x.workloads {
		if keep == nil || keep(w.Rec) {
			out = append(out, w.Rec)
		}
	}
	return out
}

// Tombstone returns what wid was when it ended here, while its tombstone is kept.
func (x *Index) Tombstone(wid string) (Tombstone, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	t, ok := x.tombstones[wid]
	return t, ok
}

// ExpireTombstones drops the tombstones older than ttl.
func (x *Index) ExpireTombstones(now time.Time, ttl time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, t := range x.tombstones {
		if now.Sub(t.At) > ttl {
			delete(x.tombstones, id)
		}
	}
}
