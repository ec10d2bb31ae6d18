package usage

import (
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// AddTo puts what the workload whose process is pid uses now into md: cpu_seconds (CPU
// time of its processes, with that of their children that ended), memory_rss (bytes
// resident) and pids (its processes), read from /proc for its process and every process
// below it (in a sandbox, every process of the workload).
func AddTo(md map[string]string, pid int) {
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

// descendants is pid and every process below it (through /proc/<pid>/task/*/children;
// in a sandbox, every process of the workload: orphans go to its init).
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out) && len(out) < 100000; i++ {
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(out[i]) + "/task")
		for _, t := range tasks {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(out[i]) + "/task/" + t.Name() + "/children")
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
				}
			}
		}
	}
	return out
}
