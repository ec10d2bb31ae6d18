// Package placement is the placement room: the decisions an auction makes, as functions
// of what they decide on: no node, no lock, no NATS (placement_test.go tests them with
// tables). The node gathers their inputs under its lock (pkg/node: control.go, capacity.go).
package placement

import (
	"fmt"
	"maps"
	"slices"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Room is a node's room for placement: what it offers its workloads (allocatable: its
// memory and cpus less what is reserved), and what its workloads and its outstanding
// bids hold of it.
type Room struct {
	Memory     v1.ByteSize
	CPU        float64
	UsedMemory v1.ByteSize
	UsedCPU    float64
}

// Fit says why want does not fit in what is left of r ("" when it does), and r's load
// with it placed: the larger of its memory and cpu shares, 0 to 1 (1 when it does not
// fit).
func Fit(r Room, want *v1.Resources) (why string, load float64) {
	var wantMem v1.ByteSize
	var wantCPU float64
	if want != nil {
		wantMem, wantCPU = want.Memory, want.CPU
	}
	if wantMem > 0 && r.UsedMemory+wantMem > r.Memory {
		if r.Memory == 0 {
			return fmt.Sprintf("needs %s memory, and the node does not know its memory (start nexd with --memory)", wantMem), 1
		}
		return fmt.Sprintf("needs %s memory, %s free of %s", wantMem, max(0, r.Memory-r.UsedMemory), r.Memory), 1
	}
	// a thousandth of a core of slack: sums of fractions are not exact
	if wantCPU > 0 && r.UsedCPU+wantCPU > r.CPU+0.001 {
		return fmt.Sprintf("needs %s cpu, %s free of %s", v1.FormatCores(wantCPU), v1.FormatCores(max(0, r.CPU-r.UsedCPU)), v1.FormatCores(r.CPU)), 1
	}
	if r.Memory > 0 {
		load = float64(r.UsedMemory+wantMem) / float64(r.Memory)
	}
	if r.CPU > 0 {
		load = max(load, (r.UsedCPU+wantCPU)/r.CPU)
	}
	return "", min(1, load)
}

// UnmatchedTag says which tag of want the node's tags have does not match ("" when all
// do), the first in key order. have holds nex.isolation and nex.cgroups as a nexlet of
// the asked type offers them.
func UnmatchedTag(have, want map[string]string) string {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		v, ok := have[k]
		if !ok {
			if nv, ok := have["nex."+k]; ok {
				return fmt.Sprintf("tag %s=%s not matched (node has no %s tag; it has nex.%s=%s)", k, want[k], k, k, nv)
			}
			return fmt.Sprintf("tag %s=%s not matched (node has no %s tag)", k, want[k], k)
		}
		if v != want[k] {
			return fmt.Sprintf("tag %s=%s not matched (node has %s=%s)", k, want[k], k, v)
		}
	}
	return ""
}

// PortTaken says which of the ports want is taken ("" when none is): exposed names the
// workload here that exposes a port, inUse the ports something else on the machine holds.
func PortTaken(want []int, exposed map[int]string, inUse map[int]bool) string {
	for _, p := range want {
		if name, ok := exposed[p]; ok {
			return fmt.Sprintf("port %d is exposed by workload %s on this node", p, name)
		}
		if inUse[p] {
			return fmt.Sprintf("port %d is in use on this node", p)
		}
	}
	return ""
}

// LeastBusy picks from ids (not empty) one of those with the fewest workloads and
// outstanding bids (busy), a tie broken by pick (given how many tie, it returns which).
func LeastBusy(ids []string, busy map[string]int, pick func(n int) int) string {
	var least []string
	for _, id := range ids {
		switch {
		case len(least) == 0 || busy[id] < busy[least[0]]:
			least = append(least[:0], id)
		case busy[id] == busy[least[0]]:
			least = append(least, id)
		}
	}
	return least[pick(len(least))]
}
