package proc

import (
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// closeRangeCloexec is CLOSE_RANGE_CLOEXEC of <linux/close_range.h> (Linux 5.11).
const closeRangeCloexec = 1 << 2

// NoInheritedFiles marks every descriptor above stderr that this process was started
// with close-on-exec, so none reaches what it starts: a descriptor the shell or service
// manager that started nexd left open (a pipe, a root-owned file open for writing) went on
// to nexlet-native and from it to every tenant's workload (a review's walk found a
// tenant's workload holding the write end of the starting shell's pipe). What the
// process passes on on purpose it passes explicitly (exec.Cmd's ExtraFiles); what it
// opens itself Go opens close-on-exec already.
func NoInheritedFiles() {
	if unix.CloseRange(3, math.MaxUint32, closeRangeCloexec) == nil {
		return
	}
	entries, err := os.ReadDir("/proc/self/fd") // before Linux 5.11
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}
