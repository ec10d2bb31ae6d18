package node

import (
	"bufio"
	"fmt"
	"maps"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/placement"
)

// The node's room: what it offers its workloads (Config.Memory and CPUs less the
// reserve), what its running workloads and its outstanding bids asked of it (their start
// requests' "resources"), and whether a nexlet here enforces a request's limits. A
// workload that asks for nothing reserves nothing and always fits.

// checkCapacity validates and completes the capacity settings of c.
func (c *Config) checkCapacity() error {
	for what, v := range map[string]float64{"memory": float64(c.Memory), "reserved memory": float64(c.ReserveMemory), "cpus": c.CPUs, "reserved cpu": c.ReserveCPU} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: %s %v is not a size or number of cores of zero or more", ErrConfig, what, v)
		}
	}
	if c.Memory == 0 {
		c.Memory = machineMemory()
	}
	if c.CPUs == 0 {
		c.CPUs = float64(runtime.NumCPU())
	}
	if c.ReserveMemory > 0 && c.ReserveMemory >= c.Memory {
		return fmt.Errorf("%w: the memory reserved for the node (%s) leaves nothing of its %s for workloads", ErrConfig, c.ReserveMemory, c.Memory)
	}
	if c.ReserveCPU > 0 && c.ReserveCPU >= c.CPUs {
		return fmt.Errorf("%w: the cpu reserved for the node (%s) leaves nothing of its %s for workloads", ErrConfig, v1.FormatCores(c.ReserveCPU), v1.FormatCores(c.CPUs))
	}
	switch c.Placement {
	case "":
		c.Placement = v1.PlacementLeastLoaded
	case v1.PlacementLeastLoaded, v1.PlacementRandom:
	default:
		return fmt.Errorf("%w: placement %q is not %s or %s", ErrConfig, c.Placement, v1.PlacementLeastLoaded, v1.PlacementRandom)
	}
	return nil
}

// machineMemory is the machine's memory (MemTotal of /proc/meminfo), 0 when unknown.
func machineMemory() v1.ByteSize {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// MemTotal:       16318480 kB
		fields := strings.Fields(s.Text())
		if len(fields) == 3 && fields[0] == "MemTotal:" && fields[2] == "kB" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return v1.ByteSize(kb << 10)
		}
	}
	return 0
}

// usage is what the node's running workloads asked for, and how many run.
func (n *Node) usage() (memory v1.ByteSize, cpu float64, running int) { return n.idx.Usage() }

// holds is what a workload asking for res holds on this node: res with the node's default
// limits (and its ceiling, where there is no default) for what it does not ask; an error
// when it asks more than the ceiling.
func (n *Node) holds(res *v1.Resources) (*v1.Resources, error) {
	if n.cfg.DefaultLimits.Empty() && n.cfg.MaxLimits.Empty() {
		return res, nil
	}
	return res.WithLimits(n.cfg.DefaultLimits, n.cfg.MaxLimits, "start_request.resources")
}

// held is holds for what the node already took in (over the ceiling: as it asks).
func (n *Node) held(res *v1.Resources) *v1.Resources {
	if h, err := n.holds(res); err == nil {
		return h
	}
	return res
}

// allocatable is the room the node offers its workloads.
func (n *Node) allocatable() (memory v1.ByteSize, cpu float64) {
	return max(0, n.cfg.Memory-n.cfg.ReserveMemory), max(0, n.cfg.CPUs-n.cfg.ReserveCPU)
}

// fit says why res does not fit in what is left of the node, its outstanding bids (out)
// counted ("" when it does), the node's load with it placed (placement.Fit) and how many
// workloads it runs.
func (n *Node) fit(res *v1.Resources, out placement.Promised) (why string, load float64, running int) {
	usedMem, usedCPU, running := n.usage()
	bidMem, bidCPU := out.Memory, out.CPU
	allocMem, allocCPU := n.allocatable()
	why, load = placement.Fit(placement.Room{Memory: allocMem, CPU: allocCPU, UsedMemory: usedMem + bidMem, UsedCPU: usedCPU + bidCPU}, res)
	return why, load, running
}

// refreshCgroups sets the tag nex.cgroups from the ready nexlets' registrations: the best
// kind any of them enforces limits with (v2, then v1), else none. With nexlets of mixed
// kinds the tag names the best; an auction still places a request with limits only on a
// nexlet that enforces them (nex node info shows each nexlet's). The tags are replaced,
// never changed in place (Info hands them out). Caller holds n.mu.
func (n *Node) refreshCgroups() {
	if best := placement.BestCgroups(n.nexlets.All(time.Now()), ""); n.cfg.Tags[v1.TagCgroups] != best {
		t := maps.Clone(n.cfg.Tags)
		t[v1.TagCgroups] = best
		n.cfg.Tags = t
	}
}

// capacity describes the node's room for NodeInfo. Caller holds n.mu.
func (n *Node) capacity() *v1.NodeCapacity {
	mem, cpu, _ := n.usage()
	return &v1.NodeCapacity{
		Memory: n.cfg.Memory, CPU: n.cfg.CPUs, ReservedMemory: n.cfg.ReserveMemory, ReservedCPU: n.cfg.ReserveCPU,
		RequestedMemory: mem, RequestedCPU: math.Round(cpu*1000) / 1000, Placement: n.cfg.Placement,
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
