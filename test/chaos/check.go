package chaos

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// sampler reads the process table every 250 ms while the run lasts and keeps, for each
// workload, the windows in which it ran more than once.
type sampler struct {
	mu    sync.Mutex
	since map[string]time.Time // marker -> when it was first seen twice, in this window
	dups  []dupWindow
}

type dupWindow struct {
	Marker   string
	From, To time.Time
}

func (s *sampler) sample(now time.Time) {
	seen := markers()
	s.mu.Lock()
	defer s.mu.Unlock()
	for m, n := range seen {
		if strings.HasPrefix(m, markerPrefix+"g-") {
			continue // a group's copies share their name: checkGroups counts them
		}
		if _, open := s.since[m]; n > 1 && !open {
			s.since[m] = now
		}
	}
	for m, from := range s.since {
		if seen[m] <= 1 {
			s.dups = append(s.dups, dupWindow{m, from, now})
			delete(s.since, m)
		}
	}
}

// windows are the windows in which a workload ran twice (open ones up to now).
func (s *sampler) windows(now time.Time) []dupWindow {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := append([]dupWindow(nil), s.dups...)
	for m, from := range s.since {
		all = append(all, dupWindow{m, from, now})
	}
	return all
}

// longest is the longest window in which a workload ran twice, and how many there were.
func (s *sampler) longest(now time.Time) (dupWindow, int) {
	all := s.windows(now)
	var best dupWindow
	for _, d := range all {
		if d.To.Sub(d.From) > best.To.Sub(best.From) {
			best = d
		}
	}
	return best, len(all)
}

// verdict is what the checker found once the faults stopped and the cluster settled.
type verdict struct {
	violations []string
}

func (v *verdict) add(format string, args ...any) {
	v.violations = append(v.violations, fmt.Sprintf(format, args...))
}

// tracked says whether the process table can tell whether a workload runs: the
// harness's services, clones and group copies sleep with their name on the command line.
func tracked(name string) bool {
	for _, k := range []string{"w-", "c-", "g-"} {
		if strings.HasPrefix(name, markerPrefix+k) {
			return true
		}
	}
	return false
}

// check compares the history with the process table and the final list: every
// acknowledged start or clone runs exactly once unless it was stopped; every
// acknowledged stop stays stopped; a start that failed for sure runs nowhere; what runs
// is listed, and what is listed running runs; a stop or info that said "not found" was
// about a workload that was gone; a removed workload is listed no more; a trigger got
// its function's answer; every group runs what its history allows (checkGroups).
func check(ops []op, running map[string]int, listed []v1.WorkloadInfo) *verdict {
	v := &verdict{}
	started := map[string]op{} // marker -> acknowledged start
	failed := map[string]op{}  // marker -> a start that failed for sure
	ambiguous := map[string]bool{}
	stopped := map[string]op{} // marker -> acknowledged stop
	stopTried := map[string]bool{}
	for _, o := range ops {
		starts := o.Kind == "start" || o.Kind == "clone"
		switch {
		case starts && o.OK:
			started[o.Marker] = o
		case starts && o.ambiguous():
			ambiguous[o.Marker] = true
		case starts:
			failed[o.Marker] = o
		case o.Kind == "stop" && o.OK:
			stopped[o.Marker] = o
		case o.Kind == "stop":
			stopTried[o.Marker] = true
		}
	}
	byMarker, ids := map[string]v1.WorkloadInfo{}, map[string]bool{}
	for _, w := range listed {
		ids[w.ID] = true
		if tracked(w.Name) && (w.State == v1.StateRunning || w.State == v1.StateStarting) {
			byMarker[w.Name] = w
		}
	}
	for m, o := range started {
		_, stop := stopped[m]
		switch n := running[m]; {
		case stop && n > 0:
			v.add("%s: stopped (acknowledged at %s) but runs %d time(s)", m, stopped[m].End.Format(time.TimeOnly), n)
		case !stop && !stopTried[m] && n == 0:
			v.add("%s: started (acknowledged at %s, workload %s) but runs nowhere", m, o.End.Format(time.TimeOnly), o.WID)
		case n > 1:
			v.add("%s: runs %d times", m, n)
		}
	}
	for m, o := range failed {
		if _, ok := started[m]; !ok && !ambiguous[m] && running[m] > 0 {
			v.add("%s: its start failed (%s) but it runs", m, o.Err)
		}
	}
	for m, n := range running {
		if _, ok := byMarker[m]; !ok {
			v.add("%s: runs (%d) but is not listed running", m, n)
		}
	}
	for m, w := range byMarker {
		if running[m] == 0 {
			v.add("%s: listed %s on node %s (workload %s) but runs nowhere", m, w.State, w.NodeID, w.ID)
		}
	}
	checkReplies(v, ops, running, ids)
	checkGroups(v, ops, running)
	sort.Strings(v.violations)
	return v
}

// checkReplies finds the replies that were lies. "Not found" is one of a workload whose
// start was acknowledged before the call and that no stop had been asked for by then
// (what the user started is remembered until the user removes it), or that runs at the end.
func checkReplies(v *verdict, ops []op, running map[string]int, listedIDs map[string]bool) {
	acked, stopAsked := map[string]time.Time{}, map[string]time.Time{}
	for _, o := range ops {
		if (o.Kind == "start" || o.Kind == "clone") && o.OK {
			acked[o.Marker] = o.End
		}
		if t, ok := stopAsked[o.Marker]; o.Kind == "stop" && (!ok || o.Start.Before(t)) {
			stopAsked[o.Marker] = o.Start
		}
	}
	remembered := func(o op) bool {
		t, ok := acked[o.Marker]
		s, stopped := stopAsked[o.Marker]
		return ok && t.Before(o.Start) && (!stopped || s.After(o.Start) || (o.Kind == "stop" && s.Equal(o.Start)))
	}
	for _, o := range ops {
		notFound := (o.Kind == "stop" || o.Kind == "info") && o.Code == v1.CodeNotFound
		switch {
		case notFound && running[o.Marker] > 0:
			v.add("%s: %s said not found at %s, and it runs", o.Marker, o.Kind, o.End.Format(time.TimeOnly))
		case notFound && remembered(o):
			v.add("%s: %s said not found at %s of a workload started at %s and not stopped", o.Marker, o.Kind, o.End.Format(time.TimeOnly), acked[o.Marker].Format(time.TimeOnly))
		case o.Kind == "rm" && o.OK && listedIDs[o.WID]:
			v.add("%s: removed (acknowledged at %s) but listed again (workload %s)", o.Marker, o.End.Format(time.TimeOnly), o.WID)
		case o.Kind == "trigger" && o.OK && o.Reply != o.Want:
			v.add("%s: a trigger at %s got %q, want %q", o.Marker, o.End.Format(time.TimeOnly), o.Reply, o.Want)
		}
	}
}
