package native

import (
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/proc"
)

// The parent-death signal ends a workload's main process when its nexlet dies, but not
// the children it forked. Every workload process carries NEX_NODE_ID and NEX_NEXLET_ID in
// its environment (inherited by its children), so a new nexlet of the same node and ID
// finds what its dead predecessor left behind in /proc and kills it, process group and
// all. This costs nothing per start, unlike a record on disk for every process.

// killOrphans kills the workload processes of a previous instance of this nexlet. It runs
// before this instance starts anything, so every match is an orphan.
func (d *Driver) killOrphans() {
	for _, pid := range proc.KillTagged(d.opts.NodeID, d.opts.NexletID) {
		d.log.Warn("killed a process left by a previous nexlet", zap.Int("pid", pid))
	}
}

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER of prctl(2).
const prSetChildSubreaper = 36

// BecomeSubreaper makes this process the reaper of its orphaned descendants: a workload's
// children that outlive it (`sh -c 'sleep 100 & wait'`) are reparented here instead of to
// PID 1, and reaped here as soon as they exit, so a stop that waits for the workload's
// process group to be gone waits milliseconds, not until PID 1 gets round to it. Only
// orphans are reaped: the runtime waits for the processes it starts itself (spawn). It
// returns a function that ends the reaping.
func BecomeSubreaper(log *zap.Logger) (stop func(), err error) {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return func() {}, errno
	}
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(reapBackstop) // signals coalesce; a scan reads every thread's children
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-sig:
				// many exits at once (a burst of jobs) are reaped in one scan: the scan
				// reads every child's /proc entry
				time.Sleep(reapCoalesce)
				drain(sig)
			case <-t.C:
			}
			if n := reapOrphans(); n > 0 {
				log.Debug("reaped orphaned workload processes", zap.Int("count", n))
			}
		}
	}()
	return func() { signal.Stop(sig); close(done) }, nil
}

// reapBackstop is how often the reaper scans without a SIGCHLD (signals coalesce, so one
// may stand for several exits). A scan reads /proc/self/task/*/children, one file per
// thread of the nexlet, and the stat of each child the runtime did not start itself.
const reapBackstop = 15 * time.Second

// reapCoalesce is how long the reaper lets SIGCHLDs gather before it scans.
const reapCoalesce = 20 * time.Millisecond

func drain(c chan os.Signal) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// The processes the runtime starts are waited for by spawn's child.wait; every other
// child of the nexlet is a workload's descendant reparented here (a daemon that left with
// setsid included), for the reaper. scanMu keeps the reaper from scanning between a start
// and its registration.
var (
	scanMu  sync.RWMutex
	started sync.Map // pid -> struct{}
)

// reapOrphans reaps this process's zombie children that the runtime did not start itself
// (descendants of a workload, reparented here), and returns how many.
func reapOrphans() int {
	scanMu.Lock()
	defer scanMu.Unlock()
	self := strconv.Itoa(os.Getpid())
	reaped := 0
	for _, pid := range childPIDs(self) {
		if _, ours := started.Load(pid); ours {
			continue // started by the runtime: child.wait reaps it
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		// after the command: state ppid ...
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] != "Z" || f[1] != self {
			continue
		}
		var ws syscall.WaitStatus
		if got, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); got == pid {
			reaped++
		}
	}
	return reaped
}

// childPIDs lists the children of process self: from /proc/self/task/*/children where the
// kernel has it, else from every process's stat.
func childPIDs(self string) []int {
	var pids []int
	tasks, err := os.ReadDir("/proc/self/task")
	if err == nil {
		found := false
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
			if err != nil {
				continue
			}
			found = true
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		if found {
			return pids
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid) // reapOrphans checks the parent
		}
	}
	return pids
}
