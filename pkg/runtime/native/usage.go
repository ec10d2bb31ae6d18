package native

import "github.com/nexrun/nex/pkg/runtime/native/usage"

// watchDisk measures what the workload whose process is pid holds on disk, while it runs
// with resources.disk (usage.WatchDisk). It keeps the figure for its metadata and calls
// over once it holds more than the limit. It returns the function that stops watching;
// nothing runs without a limit.
func (h *handle) watchDisk(pid int, over func()) (stop func()) {
	if h.sr.Resources == nil || h.sr.Resources.Disk <= 0 {
		return func() {}
	}
	return usage.WatchDisk(h.wd.Path, pid, int64(h.sr.Resources.Disk), h.diskUsed.Store, func() {
		h.log.Warn("workload over its disk limit: stopping it")
		over()
	})
}

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
	usage.AddTo(md, pid)
}
