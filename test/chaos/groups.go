package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// groupWait is how long a group call may take: an update replaces copies one at a time,
// each running for a moment first.
const groupWait = 90 * time.Second

// groupOp creates the worker's replica group, or scales, updates or stops it. Each
// version's copies are named <base>-v<version>, so the process table says which
// version runs.
func (w *worker) groupOp(ctx context.Context) {
	g := w.grp
	if g == nil {
		g = &group{id: v1.GroupIDPrefix + v1.NewID(), base: w.name("g-"), version: 1, replicas: 1 + w.rng.IntN(3)}
		def := service(fmt.Sprintf("%s-v1", g.base))
		o := &op{Kind: "group-create", Group: g.id, Marker: g.base, Replicas: g.replicas, Version: 1}
		w.groupCall(ctx, o, v1.GroupRequest{Op: v1.GroupCreate, Definition: &def, Replicas: g.replicas})
		if o.OK || o.ambiguous() {
			w.grp = g
		}
		return
	}
	switch r := w.rng.IntN(10); {
	case r < 4:
		g.replicas = 1 + w.rng.IntN(3)
		w.groupCall(ctx, &op{Kind: "group-scale", Group: g.id, Marker: g.base, Replicas: g.replicas},
			v1.GroupRequest{Op: v1.GroupScale, Replicas: g.replicas})
	case r < 8:
		g.version++
		def := service(fmt.Sprintf("%s-v%d", g.base, g.version))
		w.groupCall(ctx, &op{Kind: "group-update", Group: g.id, Marker: g.base, Version: g.version},
			v1.GroupRequest{Op: v1.GroupUpdate, Definition: &def, MaxParallel: 1})
	default:
		for range 3 { // a stop is asked again when its answer was lost
			o := &op{Kind: "group-stop", Group: g.id, Marker: g.base}
			w.groupCall(ctx, o, v1.GroupRequest{Op: v1.GroupStop})
			if !o.ambiguous() || ctx.Err() != nil {
				break
			}
		}
		w.grp = nil
	}
}

func (w *worker) groupCall(ctx context.Context, o *op, req v1.GroupRequest) {
	w.call(ctx, o, groupWait, func(ctx context.Context) error {
		_, err := w.cl.Group(ctx, o.Group, req)
		return err
	})
}

// groupWant is what a group's history allows at the end: the counts and versions it may
// run (more than one where an answer was lost), or nothing once a stop was acknowledged.
type groupWant struct {
	base     string
	replicas []int
	versions []int
	stopped  bool // acknowledged
	mayStop  bool // a stop whose answer was lost
}

// groupWants reads what each group of the history must run.
func groupWants(ops []op) map[string]*groupWant {
	wants := map[string]*groupWant{}
	for _, o := range ops {
		if !strings.HasPrefix(o.Kind, "group-") {
			continue
		}
		g := wants[o.Group]
		if g == nil {
			g = &groupWant{base: o.Marker}
			wants[o.Group] = g
		}
		if o.Kind == "group-update" && strings.Contains(o.Err, "which the coordinator now rolls out") {
			o.OK = true // its coordinator was replaced during it: the reply says the new version stands
		}
		lost := o.ambiguous() || ((o.Kind == "group-scale" || o.Kind == "group-update") && o.Code == v1.CodeStorageUnavailable)
		if !o.OK && !lost {
			continue // refused: nothing changed
		}
		if !o.OK {
			o.Code = "" // its answer was lost (the group's record may have been written): either outcome
		}
		switch o.Kind {
		case "group-create":
			g.replicas, g.versions = resolve(nil, o.Replicas, o), resolve(nil, o.Version, o)
			if o.ambiguous() {
				g.replicas = append(g.replicas, 0) // it may never have been made
			}
		case "group-scale":
			g.replicas = resolve(g.replicas, o.Replicas, o)
		case "group-update":
			g.versions = resolve(g.versions, o.Version, o)
		case "group-stop":
			g.stopped = g.stopped || o.OK
			g.mayStop = true
		}
	}
	return wants
}

// resolve is what may hold after o asked for v: only v once acknowledged, v or what
// held before when its answer was lost.
func resolve(before []int, v int, o op) []int {
	if o.OK {
		return []int{v}
	}
	if !slices.Contains(before, v) {
		before = append(before, v)
	}
	return before
}

// checkGroups checks that every group runs one of the counts its history allows, all of
// one allowed version, and nothing once its stop was acknowledged.
func checkGroups(v *verdict, ops []op, running map[string]int) {
	for id, g := range groupWants(ops) {
		if len(g.replicas) == 0 { // its create was refused: nothing may run
			g.replicas = []int{0}
		}
		total, byVersion := 0, map[int]int{}
		for name, n := range running {
			if rest, ok := strings.CutPrefix(name, g.base+"-v"); ok {
				var ver int
				fmt.Sscan(rest, &ver)
				byVersion[ver] += n
				total += n
			}
		}
		switch {
		case g.stopped && total > 0:
			v.add("group %s (%s): stopped (acknowledged) but runs %d copies %v%s", id, g.base, total, byVersion, whoRuns(g.base))
		case g.stopped, g.mayStop && total == 0:
		case !slices.Contains(g.replicas, total):
			v.add("group %s (%s): runs %d copies %v, want one of %v%s", id, g.base, total, byVersion, g.replicas, whoRuns(g.base))
		case len(byVersion) > 1:
			v.add("group %s (%s): runs mixed versions %v, want all of one of %v", id, g.base, byVersion, g.versions)
		default:
			for ver := range byVersion {
				if !slices.Contains(g.versions, ver) {
					v.add("group %s (%s): runs version %d, want one of %v", id, g.base, ver, g.versions)
				}
			}
		}
	}
}
