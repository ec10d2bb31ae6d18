package placement

import (
	"strings"
	"testing"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The auction's decisions as tables: no node, no NATS.

func TestFitIn(t *testing.T) {
	const gib = v1.ByteSize(1 << 30)
	node := Room{Memory: 4 * gib, CPU: 2}
	cases := []struct {
		name string
		r    Room
		want *v1.Resources
		why  string // "" fits; else a part of the reason
		load float64
	}{
		{"nothing asked, empty node", node, nil, "", 0},
		{"nothing asked, node without memory or cpu known", Room{}, nil, "", 0},
		{"half the memory", node, &v1.Resources{Memory: 2 * gib}, "", 0.5},
		{"cpu the larger share", node, &v1.Resources{Memory: gib, CPU: 1.5}, "", 0.75},
		{"what is held counts", Room{Memory: 4 * gib, CPU: 2, UsedMemory: 3 * gib}, &v1.Resources{Memory: gib}, "", 1},
		{"one byte over", Room{Memory: 4 * gib, CPU: 2, UsedMemory: 3 * gib}, &v1.Resources{Memory: gib + 1}, "needs 1 GiB", 1},
		{"free memory named", Room{Memory: 4 * gib, CPU: 2, UsedMemory: 3 * gib}, &v1.Resources{Memory: 2 * gib}, "1 GiB free of 4 GiB", 1},
		{"memory unknown", Room{CPU: 2}, &v1.Resources{Memory: gib}, "does not know its memory (start nexd with --memory)", 1},
		{"cpu over", Room{Memory: 4 * gib, CPU: 2, UsedCPU: 1.5}, &v1.Resources{CPU: 1}, "needs 1 cpu, 0.5 free of 2", 1},
		{"sums of fractions within slack", Room{Memory: 4 * gib, CPU: 1, UsedCPU: 0.7}, &v1.Resources{CPU: 0.3}, "", 1},
		{"pids alone take no room", Room{}, &v1.Resources{PIDs: 64}, "", 0},
	}
	for _, c := range cases {
		why, load := Fit(c.r, c.want)
		switch {
		case c.why == "" && why != "":
			t.Errorf("%s: declined: %s", c.name, why)
		case c.why != "" && !strings.Contains(why, c.why):
			t.Errorf("%s: reason %q, want it to say %q", c.name, why, c.why)
		case c.why == "" && (load < c.load-1e-9 || load > c.load+1e-9):
			t.Errorf("%s: load %v, want %v", c.name, load, c.load)
		}
	}
}

func TestUnmatchedTag(t *testing.T) {
	have := map[string]string{"region": "lab", v1.TagIsolation: v1.IsolationUID, v1.TagCgroups: v1.CgroupsV2}
	cases := []struct {
		name string
		want map[string]string
		why  string
	}{
		{"none asked", nil, ""},
		{"matched", map[string]string{"region": "lab", v1.TagIsolation: v1.IsolationUID}, ""},
		{"other value", map[string]string{"region": "edge"}, "tag region=edge not matched (node has region=lab)"},
		{"no such tag", map[string]string{"gpu": "yes"}, "tag gpu=yes not matched (node has no gpu tag)"},
		{"the nex. tag hinted", map[string]string{"cgroups": "v2"}, "node has no cgroups tag; it has nex.cgroups=v2"},
		{"first in key order", map[string]string{"zone": "a", "arch": "x"}, "tag arch=x"},
	}
	for _, c := range cases {
		if why := UnmatchedTag(have, c.want); why != c.why && (c.why == "" || !strings.Contains(why, c.why)) {
			t.Errorf("%s: %q, want %q", c.name, why, c.why)
		}
	}
}

func TestPortTaken(t *testing.T) {
	exposed := map[int]string{8080: "web"}
	inUse := map[int]bool{22: true}
	cases := []struct {
		name string
		want []int
		why  string
	}{
		{"none asked", nil, ""},
		{"free", []int{9000}, ""},
		{"exposed here", []int{9000, 8080}, "port 8080 is exposed by workload web on this node"},
		{"held by another program", []int{22}, "port 22 is in use on this node"},
	}
	for _, c := range cases {
		if why := PortTaken(c.want, exposed, inUse); why != c.why {
			t.Errorf("%s: %q, want %q", c.name, why, c.why)
		}
	}
}

func TestLeastBusy(t *testing.T) {
	first := func(int) int { return 0 }
	last := func(n int) int { return n - 1 }
	cases := []struct {
		name string
		ids  []string
		busy map[string]int
		pick func(int) int
		want string
	}{
		{"one", []string{"a"}, nil, first, "a"},
		{"fewest", []string{"a", "b", "c"}, map[string]int{"a": 3, "b": 1, "c": 2}, first, "b"},
		{"ties go to pick, first", []string{"a", "b", "c"}, map[string]int{"a": 1, "b": 1, "c": 2}, first, "a"},
		{"ties go to pick, last", []string{"a", "b", "c"}, map[string]int{"a": 1, "b": 1, "c": 2}, last, "b"},
		{"unknown counts as idle", []string{"a", "b"}, map[string]int{"a": 1}, first, "b"},
	}
	for _, c := range cases {
		if got := LeastBusy(c.ids, c.busy, c.pick); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
