// Package memory is a nexlet runtime whose workloads are records in memory. It shows
// how little a nexlet needs beyond pkg/nexlet, and gives tests a second nexlet type.
package memory

import (
	"context"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/nexlet"
)

// Schema is the start-request schema of the memory nexlet: any object with a "value".
const Schema = `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","required":["value"],"properties":{"value":{"type":"string"}}}`

// Runtime keeps workloads in a map.
type Runtime struct {
	feed     *nexlet.Feed
	nexletID string

	mu        sync.Mutex
	workloads map[string]v1.WorkloadInfo
	lameduck  bool
	starts    int
	onChange  func()
}

// Starts counts Start calls, so tests can tell an adoption from a restart.
func (r *Runtime) Starts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts
}

// OnChange registers f to be told when a workload finishes (nexlet.Notifier).
func (r *Runtime) OnChange(f func()) {
	r.mu.Lock()
	r.onChange = f
	r.mu.Unlock()
}

// Finish marks a workload as ended for good, as a job that ran to completion.
func (r *Runtime) Finish(id string, code int) {
	r.mu.Lock()
	w, ok := r.workloads[id]
	if ok {
		w.State, w.ExitCode = v1.StateStopped, &code
		r.workloads[id] = w
	}
	f := r.onChange
	r.mu.Unlock()
	if ok && f != nil {
		f()
	}
}

// New returns an empty runtime publishing events on feed (which may be nil).
func New(nexletID string, feed *nexlet.Feed) *Runtime {
	return &Runtime{feed: feed, nexletID: nexletID, workloads: map[string]v1.WorkloadInfo{}}
}

// Start records the workload as running.
func (r *Runtime) Start(_ context.Context, req v1.StartWorkloadRequest) (v1.WorkloadInfo, error) {
	info, err := r.add(req)
	if err == nil {
		r.event(v1.EventStarted, info) // published after the lock is let go
	}
	return info, err
}

func (r *Runtime) add(req v1.StartWorkloadRequest) (v1.WorkloadInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lameduck {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeLameduck, "nexlet is in lameduck mode")
	}
	if _, dup := r.workloads[req.WorkloadID]; dup {
		return v1.WorkloadInfo{}, v1.Errorf(v1.CodeConflict, "workload %s already exists", req.WorkloadID)
	}
	r.starts++
	d := req.Definition
	info := v1.WorkloadInfo{
		ID: req.WorkloadID, Namespace: d.Namespace, Name: d.Name, Description: d.Description,
		Type: d.Type, Lifecycle: d.Lifecycle, Tags: d.Tags, State: v1.StateRunning,
		NodeID: req.NodeID, NexletID: r.nexletID, StartedAt: time.Now().UTC(),
		Metadata: map[string]string{"start_request": string(d.StartRequest)}, Definition: &d, Group: d.Group, GroupVersion: d.GroupVersion,
	}
	r.workloads[info.ID] = info
	return info, nil
}

// Stop forgets the workload.
func (r *Runtime) Stop(_ context.Context, id string, _ v1.StopRequest) (v1.WorkloadInfo, error) {
	r.mu.Lock()
	info, ok := r.workloads[id]
	delete(r.workloads, id)
	r.mu.Unlock()
	if !ok {
		return v1.WorkloadInfo{}, v1.NotFound("workload %s not found", id)
	}
	info.State = v1.StateStopped
	r.event(v1.EventStopped, info)
	return info, nil
}

// Get returns one workload.
func (r *Runtime) Get(_ context.Context, id string) (v1.WorkloadInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	info, ok := r.workloads[id]
	if !ok {
		return v1.WorkloadInfo{}, v1.NotFound("workload %s not found", id)
	}
	return info, nil
}

// List returns the workloads of ns, or all of them for "".
func (r *Runtime) List(_ context.Context, ns string) ([]v1.WorkloadInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []v1.WorkloadInfo{}
	for _, w := range r.workloads {
		if ns == "" || w.Namespace == ns {
			out = append(out, w)
		}
	}
	return out, nil
}

// Lameduck refuses further starts.
func (r *Runtime) Lameduck(context.Context) error {
	r.mu.Lock()
	r.lameduck = true
	r.mu.Unlock()
	return nil
}

func (r *Runtime) event(typ string, info v1.WorkloadInfo) {
	if r.feed != nil {
		r.feed.Event(v1.Event{Type: typ, WorkloadID: info.ID, Namespace: info.Namespace})
	}
}
