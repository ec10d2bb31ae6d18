// Package registry is the registry room of a node: the nexlets registered with it, when
// each was last heard, what its last heartbeat said, and who waits for a nexlet of a type
// to be ready. Its lock is its own, taken by its methods only, which call nothing while
// they hold it; what it hands out are copies.
package registry

import (
	"context"
	"sort"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Stats is what a nexlet's latest heartbeat said.
type Stats struct {
	States   map[string]int    // workloads by state
	Restarts uint64            // restarts of its workloads, all told
	Counters map[string]uint64 // its own counters (log lines, lines dropped)
}

// Nexlet is what the node knows of a registered nexlet, as it was when read.
type Nexlet struct {
	Reg           v1.RegisterRequest
	Ready         bool      // its workloads are indexed: it may be listed and bid
	LastHeartbeat time.Time // or its registration
	Health        string    // v1.Health*, when read
	Stats         Stats
}

type entry struct {
	Nexlet
	lostReported bool
	gen          uint64 // which registration
}

// Registry holds the nexlets registered with a node.
type Registry struct {
	mu       sync.Mutex
	interval time.Duration // the heartbeat interval the nexlets are given
	nexlets  map[string]*entry
	waiters  []chan struct{}
	gen      uint64 // registrations so far
}

// New returns an empty registry of nexlets that heartbeat every interval.
func New(interval time.Duration) *Registry {
	return &Registry{interval: interval, nexlets: map[string]*entry{}}
}

// Health is a nexlet's health from its last heartbeat: registering until it is ready
// (for at most six intervals), healthy within three intervals, degraded within six,
// lost after.
func Health(ready bool, last, now time.Time, interval time.Duration) string {
	age := now.Sub(last)
	switch {
	case !ready && age <= 6*interval:
		return v1.HealthRegistering
	case age <= 3*interval:
		return v1.HealthHealthy
	case age <= 6*interval:
		return v1.HealthDegraded
	}
	return v1.HealthLost
}

func (r *Registry) copyOf(e *entry, now time.Time) Nexlet {
	n := e.Nexlet
	n.Health = Health(e.Ready, e.LastHeartbeat, now, r.interval)
	return n
}

// Register records req's nexlet, in place of an earlier registration of the same ID; it
// is not ready until Ready is called with the registration this returns.
func (r *Registry) Register(req v1.RegisterRequest, now time.Time) (registration uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.nexlets[req.NexletID] = &entry{Nexlet: Nexlet{Reg: req, LastHeartbeat: now}, gen: r.gen}
	return r.gen
}

// Ready marks nexlet id ready, if its registration is still the one given (a newer one
// is ready once its own workloads are indexed), and wakes whoever waits for a nexlet.
func (r *Registry) Ready(id string, registration uint64) {
	r.mu.Lock()
	if e, ok := r.nexlets[id]; ok && e.gen == registration {
		e.Ready = true
	}
	waiters := r.waiters
	r.waiters = nil
	r.mu.Unlock()
	for _, ch := range waiters {
		close(ch)
	}
}

// Heartbeat records a heartbeat of nexlet id; false: it is not registered.
func (r *Registry) Heartbeat(id string, now time.Time, st Stats) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.nexlets[id]
	if ok {
		e.LastHeartbeat, e.lostReported, e.Stats = now, false, st
	}
	return ok
}

// Get reads nexlet id.
func (r *Registry) Get(id string, now time.Time) (Nexlet, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.nexlets[id]
	if !ok {
		return Nexlet{}, false
	}
	return r.copyOf(e, now), true
}

// Has says whether nexlet id is registered.
func (r *Registry) Has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.nexlets[id]
	return ok
}

// All lists every registered nexlet, by ID.
func (r *Registry) All(now time.Time) []Nexlet {
	r.mu.Lock()
	out := make([]Nexlet, 0, len(r.nexlets))
	for _, e := range r.nexlets {
		out = append(out, r.copyOf(e, now))
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Reg.NexletID < out[j].Reg.NexletID })
	return out
}

// NewlyLost lists the nexlets lost since the last call that found them so (a heartbeat
// after that makes a nexlet count again).
func (r *Registry) NewlyLost(now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lost []string
	for id, e := range r.nexlets {
		if !e.lostReported && Health(e.Ready, e.LastHeartbeat, now, r.interval) == v1.HealthLost {
			e.lostReported = true
			lost = append(lost, id)
		}
	}
	sort.Strings(lost)
	return lost
}

// Wait blocks until a nexlet of type typ is registered and ready, or ctx ends.
func (r *Registry) Wait(ctx context.Context, typ string) error {
	for {
		r.mu.Lock()
		for _, e := range r.nexlets {
			if e.Reg.RegisterType == typ && e.Ready {
				r.mu.Unlock()
				return nil
			}
		}
		ch := make(chan struct{})
		r.waiters = append(r.waiters, ch)
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// CallTimeout bounds a request from the node to a local nexlet.
const CallTimeout = 10 * time.Second

// CallGap is how long the node keeps asking a registered nexlet that has no
// subscription: a nexlet reconnecting (its credentials expired and were renewed, its
// server went away) or being restarted is gone for a moment, and a request in that
// moment should wait for it rather than fail.
const CallGap = 3 * time.Second
