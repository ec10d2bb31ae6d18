package spawn

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER of prctl(2).
const prSetChildSubreaper = 36

// BecomeSubreaper makes this process the one place that waits for its children, and the
// reaper of its orphaned descendants. From then on every child is reaped on SIGCHLD by
// wait4(-1): the processes the runtime starts get their status delivered to their
// supervisor, and a workload's children that outlive it (`sh -c 'sleep 100 & wait'`), now
// reparented here instead of to PID 1 (PR_SET_CHILD_SUBREAPER), are reaped as soon as they
// exit, so a stop that waits for the workload's process group to be gone waits
// milliseconds, not until PID 1 gets round to it. A process waited for here needs no
// pidfd: a running workload holds two descriptors (its output pipes), not three.
//
// Only a process that starts children through this package alone may call it (nexlet-
// native): wait4(-1) would take the status of anyone else's. It returns a function that
// ends the reaping, and the prctl error, if any (the reaper runs anyway: orphans then go
// to PID 1).
func BecomeSubreaper(log *zap.Logger) (stop func(), err error) {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		err = errno
	}
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	reaping.Store(true)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(reapBackstop) // a signal is lost only when 16 are pending
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-sig:
				drain(sig) // one pass reaps every exit the pending signals stand for
			case <-t.C:
			}
			if n := reapChildren(); n > 0 {
				log.Debug("reaped orphaned workload processes", zap.Int("count", n))
			}
		}
	}()
	return func() { signal.Stop(sig); close(done) }, err
}

// reapBackstop is how often the reaper reaps without a SIGCHLD.
const reapBackstop = 15 * time.Second

func drain(c chan os.Signal) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// With the reaper on, the processes the runtime starts are registered in started from
// their start (under scanMu's read lock, so the reaper cannot reap one before it is
// registered), each with the channel its status goes to; the reaper takes the entry out
// as it reaps. Without it (the runtime used as a library, as in tests), each process is
// waited for with its pidfd.
var (
	scanMu  sync.RWMutex
	started sync.Map // pid -> chan syscall.WaitStatus
	reaping atomic.Bool
)

// reapChildren reaps every child of this process that has ended: it delivers the status
// of each the runtime started, and returns how many others (orphans) it reaped.
func reapChildren() (orphans int) {
	scanMu.Lock()
	defer scanMu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return orphans
		}
		if v, ok := started.LoadAndDelete(pid); ok {
			v.(chan syscall.WaitStatus) <- ws // buffered: never blocks
			continue
		}
		orphans++
	}
}
