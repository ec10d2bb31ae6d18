package auction

import (
	"math"
	"strconv"
	"strings"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/placement"
)

// usage is what the node's running workloads asked for, and how many run.
func (a *Auctioneer) usage() (memory v1.ByteSize, cpu float64, running int) { return a.Index.Usage() }

// Holds is what a workload asking for res holds on this node: res with the node's default
// limits (and its ceiling, where there is no default) for what it does not ask; an error
// when it asks more than the ceiling.
func (a *Auctioneer) Holds(res *v1.Resources) (*v1.Resources, error) {
	if a.DefaultLimits.Empty() && a.MaxLimits.Empty() {
		return res, nil
	}
	return res.WithLimits(a.DefaultLimits, a.MaxLimits, "start_request.resources")
}

// Held is holds for what the node already took in (over the ceiling: as it asks).
func (a *Auctioneer) Held(res *v1.Resources) *v1.Resources {
	if h, err := a.Holds(res); err == nil {
		return h
	}
	return res
}

// allocatable is the room the node offers its workloads.
func (a *Auctioneer) allocatable() (memory v1.ByteSize, cpu float64) {
	return max(0, a.Memory-a.ReserveMemory), max(0, a.CPUs-a.ReserveCPU)
}

// fit says why res does not fit in what is left of the node, its outstanding bids (out)
// counted ("" when it does), the node's load with it placed (placement.Fit) and how many
// workloads it runs.
func (a *Auctioneer) fit(res *v1.Resources, out placement.Promised) (why string, load float64, running int) {
	usedMem, usedCPU, running := a.usage()
	bidMem, bidCPU := out.Memory, out.CPU
	allocMem, allocCPU := a.allocatable()
	why, load = placement.Fit(placement.Room{Memory: allocMem, CPU: allocCPU, UsedMemory: usedMem + bidMem, UsedCPU: usedCPU + bidCPU}, res)
	return why, load, running
}

// Capacity describes the node's room for NodeInfo.
func (a *Auctioneer) Capacity() *v1.NodeCapacity {
	mem, cpu, _ := a.usage()
	return &v1.NodeCapacity{
		Memory: a.Memory, CPU: a.CPUs, ReservedMemory: a.ReserveMemory, ReservedCPU: a.ReserveCPU,
		RequestedMemory: mem, RequestedCPU: math.Round(cpu*1000) / 1000, Placement: a.Placement,
	}
}

// sameResources says whether a and b ask for the same (nil asks for nothing).
func sameResources(a, b *v1.Resources) bool {
	var za, zb v1.Resources
	if a != nil {
		za = *a
	}
	if b != nil {
		zb = *b
	}
	return za == zb
}

// describeResources prints r for messages: "memory 1 GiB, cpu 0.5", or "none".
func describeResources(r *v1.Resources) string {
	if r.Empty() {
		return "none"
	}
	var parts []string
	if r.Memory > 0 {
		parts = append(parts, "memory "+r.Memory.String())
	}
	if r.CPU > 0 {
		parts = append(parts, "cpu "+v1.FormatCores(r.CPU))
	}
	if r.PIDs > 0 {
		parts = append(parts, "pids "+strconv.Itoa(r.PIDs))
	}
	return strings.Join(parts, ", ")
}
