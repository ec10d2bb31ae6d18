package native

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"time"
)

// diskCheckEvery is how often a workload with a disk limit has its workdir measured.
const diskCheckEvery = time.Second

// watchDisk measures the workdir of a workload with resources.disk every diskCheckEvery,
// keeps the figure for its metadata, and calls over once when it holds more than the
// limit. It returns the function that stops watching; nothing runs without a limit.
func (h *handle) watchDisk(over func()) (stop func()) {
	if h.sr.Resources == nil || h.sr.Resources.Disk <= 0 {
		return func() {}
	}
	limit := int64(h.sr.Resources.Disk)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(diskCheckEvery)
		defer t.Stop()
		for {
			used := diskUsage(h.workdir)
			h.diskUsed.Store(used)
			if used > limit {
				h.log.Warn("workload over its disk limit: stopping it")
				over()
				return
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done) }
}

// diskUsage is what the tree at dir takes on disk (allocated blocks, links not followed;
// a file linked twice counts twice).
func diskUsage(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile, or unreadable: what can be measured is
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}
