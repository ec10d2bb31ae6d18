package chaos

import (
	"strings"
	"testing"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The checker finds each kind of lie in a made-up history, and nothing in a clean one.
func TestCheckerFindsViolations(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC) }
	call := func(kind, marker string, from, to int, ok bool, code string) op {
		return op{Kind: kind, Marker: marker, Start: at(from), End: at(to), OK: ok, Code: code}
	}
	listed := func(names ...string) []v1.WorkloadInfo {
		var out []v1.WorkloadInfo
		for _, n := range names {
			out = append(out, v1.WorkloadInfo{ID: "id-" + n, Name: n, State: v1.StateRunning})
		}
		return out
	}
	a, b := markerPrefix+"w-1", markerPrefix+"w-2"
	g := op{Kind: "group-create", Group: "g-1", Marker: markerPrefix + "g-1", Replicas: 2, Version: 1, Start: at(1), End: at(2), OK: true}
	cases := []struct {
		name    string
		ops     []op
		running map[string]int
		listed  []v1.WorkloadInfo
		want    string // a word of the one violation, or "" for none
	}{
		{"clean", []op{call("start", a, 1, 2, true, ""), call("start", b, 1, 2, true, ""), call("stop", b, 3, 4, true, "")},
			map[string]int{a: 1}, listed(a), ""},
		{"started, runs nowhere", []op{call("start", a, 1, 2, true, "")}, nil, nil, "runs nowhere"},
		{"stopped, runs", []op{call("start", a, 1, 2, true, ""), call("stop", a, 3, 4, true, "")}, map[string]int{a: 1}, listed(a), "stopped (acknowledged"},
		{"runs twice", []op{call("start", a, 1, 2, true, "")}, map[string]int{a: 2}, listed(a), "runs 2 times"},
		{"not listed", []op{call("start", a, 1, 2, true, "")}, map[string]int{a: 1}, nil, "not listed"},
		{"info lies", []op{call("start", a, 1, 2, true, ""), call("info", a, 3, 4, false, v1.CodeNotFound), call("stop", a, 5, 6, true, "")},
			nil, nil, "not found at"},
		{"group stopped, runs", []op{g, {Kind: "group-stop", Group: "g-1", Marker: g.Marker, OK: true}},
			map[string]int{g.Marker + "-v1": 1}, listed(g.Marker + "-v1"), "stopped (acknowledged) but runs"},
		{"group short", []op{g}, map[string]int{g.Marker + "-v1": 1}, listed(g.Marker + "-v1"), "want one of [2]"},
		{"group mixed", []op{g, {Kind: "group-update", Group: "g-1", Marker: g.Marker, Version: 2, OK: true}},
			map[string]int{g.Marker + "-v1": 1, g.Marker + "-v2": 1}, listed(g.Marker+"-v1", g.Marker+"-v2"), "mixed versions"},
		{"group refused, none run", []op{{Kind: "group-create", Group: "g-2", Marker: markerPrefix + "g-2", Replicas: 2, Version: 1, Code: v1.CodeStorageUnavailable}}, nil, nil, ""},
		{"scale unanswered", []op{g, {Kind: "group-scale", Group: "g-1", Marker: g.Marker, Replicas: 3, Code: v1.CodeStorageUnavailable}},
			map[string]int{g.Marker + "-v1": 3}, listed(g.Marker + "-v1"), ""},
		{"update whose coordinator was replaced, rolled out", []op{g, {Kind: "group-update", Group: "g-1", Marker: g.Marker, Version: 2, Code: v1.CodeUnavailable,
			Err: "update of g-1: node N stopped coordinating the cluster during it (paused, cut off or restarted): the group's record says version 2, which the coordinator now rolls out"}},
			map[string]int{g.Marker + "-v2": 2}, listed(g.Marker + "-v2"), ""},
		{"update whose coordinator was replaced, not rolled out", []op{g, {Kind: "group-update", Group: "g-1", Marker: g.Marker, Version: 2, Code: v1.CodeUnavailable,
			Err: "update of g-1: node N stopped coordinating the cluster during it (paused, cut off or restarted): the group's record says version 2, which the coordinator now rolls out"}},
			map[string]int{g.Marker + "-v1": 2}, listed(g.Marker + "-v1"), "runs version 1"},
		{"trigger lies", []op{{Kind: "trigger", Marker: markerPrefix + "f-1", OK: true, Want: "hello x", Reply: "hello y"}}, nil, nil, "got \"hello y\""},
		{"removed, listed", []op{{Kind: "rm", Marker: markerPrefix + "j-1", WID: "id-j", OK: true}},
			nil, []v1.WorkloadInfo{{ID: "id-j", Name: markerPrefix + "j-1", State: v1.StateStopped}}, "listed again"},
	}
	for _, c := range cases {
		v := check(c.ops, c.running, c.listed)
		switch {
		case c.want == "" && len(v.violations) > 0:
			t.Errorf("%s: %q", c.name, v.violations)
		case c.want != "" && (len(v.violations) != 1 || !strings.Contains(v.violations[0], c.want)):
			t.Errorf("%s: %q, want one with %q", c.name, v.violations, c.want)
		}
	}
}

// quiet counts the time of a window that no fault covered.
func TestQuiet(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC) }
	f := &injector{faults: []fault{{Start: at(0), End: at(10)}, {Start: at(5), End: at(20)}, {Start: at(40), End: at(50)}}}
	if q := f.quiet(at(0), at(60)); q != 30*time.Second {
		t.Fatalf("quiet %s, want 30s", q)
	}
	if q := f.quiet(at(42), at(48)); q != 0 {
		t.Fatalf("quiet %s inside a fault, want 0", q)
	}
}

// make chaos refuses a DURATION or SEED it cannot read, instead of skipping the run or
// drawing another seed.
func TestRunSettingsRefuseTypos(t *testing.T) {
	if d, s, err := runSettings("10m", "67"); err != nil || d != 10*time.Minute || s != 67 {
		t.Fatalf("10m, 67: %v %v %v", d, s, err)
	}
	if _, s, err := runSettings("2m", ""); err != nil || s == 0 {
		t.Fatalf("no seed: %v %v", s, err)
	}
	for _, c := range [][2]string{{"10", "1"}, {"10x", "1"}, {"-1m", "1"}, {"10m", "abc"}, {"10m", "-3"}} {
		if _, _, err := runSettings(c[0], c[1]); err == nil {
			t.Errorf("DURATION=%q SEED=%q accepted", c[0], c[1])
		}
	}
}
