package node

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"

	v1 "github.com/nexrun/nex/pkg/api/v1"
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
