package native

import (
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// addUsage puts what workload h's processes use now into md: cpu_seconds (CPU time of its
// processes, with that of their children that ended), memory_rss (bytes resident) and
// pids (its processes), read from /proc for its process and every process below it (in a
// sandbox, every process of the workload). Only a workload's info carries them (nex
// workload stats): a list of 10,000 would read 10,000 process trees.
func (h *handle) addUsage(md map[string]string) {
	h.mu.Lock()
	pid := h.pid
	h.mu.Unlock()
	if pid <= 0 {
		return
	}
	var ticks, pages int64
	procs := descendants(pid)
	for i, p := range procs {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 22 {
			continue
		}
		// fields from state on: utime is the 12th, stime 13th, cutime 14th, cstime 15th, rss 22nd
		for _, k := range []int{11, 12} {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			ticks += v
		}
		if i == 0 { // the children its tree reaped are counted in the root's
			for _, k := range []int{13, 14} {
				v, _ := strconv.ParseInt(f[k], 10, 64)
				ticks += v
			}
		}
		v, _ := strconv.ParseInt(f[21], 10, 64)
		pages += v
	}
	md["cpu_seconds"] = strconv.FormatFloat(float64(ticks)/clockTicks, 'f', 2, 64)
	md["memory_rss"] = strconv.FormatInt(pages*int64(os.Getpagesize()), 10)
	md["pids"] = strconv.Itoa(len(procs))
}
