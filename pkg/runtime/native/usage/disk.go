// Package usage measures what a workload of the native runtime uses, from the outside:
// the disk its workdir takes (and the files its processes hold open after removing them),
// watched against its disk limit, and the CPU time, resident memory and processes of its
// process tree, from /proc. It holds no state between measurements.
package usage

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nexrun/nex/internal/fdwalk"
)

// diskCheckEvery is how often, at most, a workload with a disk limit has its workdir
// measured; a tree that takes long to walk is walked less often (diskCheckCost).
const diskCheckEvery = time.Second

// diskCheckCost bounds the share of a core the walks of one workdir may take: the next
// walk waits this many times as long as the last one took (at most diskCheckMax).
const (
	diskCheckCost = 20
	diskCheckMax  = 30 * time.Second
)

// minEntryBytes is what each file and directory counts at least: an empty file takes an
// inode and a directory entry, and a million of them must not count as nothing.
const minEntryBytes = 4096

// WatchDisk measures what the workload whose process is pid holds on disk, while it runs
// with a disk limit: its workdir and the files its processes hold open after removing
// them. It hands each figure to record and calls over once it holds more than limit, or
// its workdir is deeper than fdwalk.MaxDepth. It returns the function that stops watching.
func WatchDisk(workdir string, pid int, limit int64, record func(int64), over func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			began := time.Now()
			used, err := Disk(workdir)
			used += OpenRemoved(pid, workdir)
			record(used)
			// a tree deeper than a walk goes would hide what lies below: over its limit
			if used > limit || errors.Is(err, fdwalk.ErrTooDeep) {
				over()
				return
			}
			t := time.NewTimer(min(max(diskCheckEvery, diskCheckCost*time.Since(began)), diskCheckMax))
			select {
			case <-done:
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done) }
}

// Disk is what the tree at dir takes on disk: allocated blocks, each entry at least
// minEntryBytes (links not followed; a file linked twice counts twice). The workload may
// be changing the tree meanwhile: it is walked by descriptor (fdwalk), so a directory it
// swaps for a symlink does not have root measure, for the workload to read in its info,
// a tree it may not look into. A tree that cannot be walked to its end counts what was,
// with the walk's error (fdwalk.ErrTooDeep: deeper than a walk goes).
func Disk(dir string) (int64, error) {
	var total int64
	err := fdwalk.Walk(dir, func(e *fdwalk.Entry) error {
		total += max(e.Stat.Blocks*512, minEntryBytes)
		return nil
	})
	return total, err
}

// OpenRemoved is what the files that pid and its descendants hold open, on the workdir's
// filesystem, after their last link went, take on disk: space no walk of the workdir
// finds, freed only when they close.
func OpenRemoved(pid int, workdir string) int64 {
	var wd syscall.Stat_t
	if pid <= 0 || syscall.Stat(workdir, &wd) != nil {
		return 0
	}
	seen := map[uint64]bool{}
	var total int64
	for _, p := range descendants(pid) {
		dir := "/proc/" + strconv.Itoa(p) + "/fd/"
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if target, err := os.Readlink(dir + fd.Name()); err != nil || !strings.HasSuffix(target, " (deleted)") {
				continue
			}
			var st syscall.Stat_t
			if syscall.Stat(dir+fd.Name(), &st) != nil || st.Nlink != 0 || st.Dev != wd.Dev || seen[st.Ino] {
				continue
			}
			seen[st.Ino] = true
			total += st.Blocks * 512
		}
	}
	return total
}
