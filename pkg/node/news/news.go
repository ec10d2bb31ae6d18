// Package news is the room of what nexlets' heartbeats told that the node's records do
// not say yet: workloads that finished, and restart counts. A heartbeat queues its news
// and is answered at once; one worker writes the queue to the records, so a slow or full
// store does not make heartbeats time out, and what one heartbeat told is not lost
// because the worker was busy with the last. The queue has its own lock.
package news

import (
	"context"
	"sync"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Recorder writes news to the records.
type Recorder interface {
	// Finished records that workload wid of nexletID ended for good (told: as the
	// heartbeat described it, or nil).
	Finished(ctx context.Context, nexletID, wid string, told *v1.WorkloadInfo)
	// Restarts records a workload's restart count.
	Restarts(ctx context.Context, wid string, count uint64)
}

// item is one workload's news.
type item struct {
	nexletID string
	ended    *v1.WorkloadInfo // a finished workload, as the heartbeat described it (or nil)
	restarts uint64           // a restart count (when not finished)
	finished bool
}

// Queue is the room.
type Queue struct {
	ctx context.Context // ends when the node stops
	wg  *sync.WaitGroup // the node's: it waits for the worker
	rec Recorder

	mu        sync.Mutex
	pending   map[string]item // by workload ID
	recording bool            // a worker records the news
}

// New returns an empty queue whose worker runs on wg until ctx ends.
func New(ctx context.Context, wg *sync.WaitGroup, rec Recorder) *Queue {
	return &Queue{ctx: ctx, wg: wg, rec: rec, pending: map[string]item{}}
}

// Add queues a heartbeat's news of nexletID (finished: workloads that ended; recounted:
// workloads whose restart count changed, as req counts them) and makes sure a worker
// records it.
func (q *Queue) Add(nexletID string, finished, recounted []string, req *v1.Heartbeat) {
	ended := make(map[string]*v1.WorkloadInfo, len(req.Ended))
	for i := range req.Ended {
		ended[req.Ended[i].ID] = &req.Ended[i]
	}
	q.mu.Lock()
	for _, wid := range finished {
		if old, ok := q.pending[wid]; !ok || (old.ended == nil && ended[wid] != nil) || !old.finished {
			q.pending[wid] = item{nexletID: nexletID, ended: ended[wid], finished: true}
		}
	}
	for _, wid := range recounted {
		if _, ok := q.pending[wid]; !ok {
			q.pending[wid] = item{nexletID: nexletID, restarts: req.RestartCounts[wid]}
		}
	}
	start := !q.recording
	q.recording = true
	q.mu.Unlock()
	if !start {
		return
	}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		for {
			q.mu.Lock()
			batch := q.pending
			q.pending = map[string]item{}
			if len(batch) == 0 {
				q.recording = false
				q.mu.Unlock()
				return
			}
			q.mu.Unlock()
			q.record(batch)
		}
	}()
}

func (q *Queue) record(batch map[string]item) {
	for wid, nw := range batch {
		if q.ctx.Err() != nil {
			return
		}
		if nw.finished {
			q.rec.Finished(q.ctx, nw.nexletID, wid, nw.ended)
			continue
		}
		q.rec.Restarts(q.ctx, wid, nw.restarts)
	}
}
