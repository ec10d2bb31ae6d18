package uids

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The pool kills a UID's processes by UID, not by the PIDs a look through /proc found: a
// process that keeps forking, each copy ending once it has started the next, is never at
// a PID that look read (a sweep by PID let it outlive its UID's release, and share the
// UID with the next holder). kill(2) with pid -1 signals every process the sender may
// signal, in one pass under a lock that fork takes too: a copy is either there to be
// signalled, or is not made, its parent dying first.
//
// A thread of this process sends it, for each UID in turn, with credentials made for it:
//   - effective UID: the UID, so it may signal the UID's processes (whose real or saved
//     UID is the UID);
//   - real UID: the pool's own (killer), a UID of the range that no process runs as and
//     no workload is given, since kill(-1) also reaches the processes whose real or saved
//     UID is the sender's real one;
//   - saved UID 0, to come back to root afterwards;
//   - no effective capability: with CAP_KILL, kill(-1) would reach every process of the
//     machine. A change of the effective UID from 0 drops them, and the thread drops them
//     itself as well, in case the process runs with SECBIT_NO_SETUID_FIXUP.
//
// The UID's processes can neither signal nor trace that thread: signalling needs their
// UID to be its real or saved one, tracing all three. Credentials are a thread's own in
// the kernel (setresuid through syscall.Setresuid would change every thread of the
// process; the raw system call changes the calling one). A thread whose credentials
// cannot be put back is never used again: it stays parked (killAs).

// takeKiller takes the pool's own UID: one of the range whose lock file says nobody had
// it, or that a dead nexlet had as its own (a dead workload's is left to reclaimDead), and
// that no process runs as. It is held for the pool's life.
func (p *Pool) takeKiller() error {
	size := uint64(p.r.Last-p.r.First) + 1
	for range size {
		uid, f, err := p.lockNext()
		if err != nil {
			return err
		}
		if f == nil {
			continue
		}
		if b := lockContent(f); (len(b) == 0 || isKiller(b)) && noProcessOf(uid) {
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+killerMark+"\n"), 0)
			p.mu.Lock()
			p.held[uid], p.killer = f, uid
			p.mu.Unlock()
			return nil
		}
		f.Close()
		p.unreserve(uid)
	}
	return fmt.Errorf("no UID of %s is free for the nexlet's own, which ends workloads' processes: widen --workload-uids", p.r)
}

// killerMark is the second line of the lock file of a pool's own UID (the first is the
// nexlet's PID): no workload ever ran as it.
const killerMark = "killer"

func isKiller(lock []byte) bool {
	_, rest, _ := strings.Cut(string(lock), "\n")
	return strings.TrimSpace(rest) == killerMark
}

func noProcessOf(uid uint32) bool {
	pids, _ := processesOf(map[uint32]bool{uid: true})
	return len(pids) == 0
}

// errNoKiller: the pool has no UID of its own (it does not run as root).
var errNoKiller = errors.New("no UID to kill with")

// killByUID sends SIGKILL to every process of each of uids (see above).
func (p *Pool) killByUID(uids []uint32) error {
	killer := p.own()
	if killer == 0 {
		return errNoKiller
	}
	errc := make(chan error, 1)
	go func() {
		parked, err := killAs(killer, uids)
		errc <- err
		if parked {
			select {} // see killAs
		}
	}()
	return <-errc
}

// killAs runs on a thread of its own, which it gives back only with root's credentials
// and its capabilities as they were. Should they not come back, the thread stays parked
// for good (parked: the caller blocks on it, still locked), as asuser.Do's does: it is
// never ended, since a workload's parent-death signal is tied to the thread that forked
// it, and this may be that thread.
func killAs(killer uint32, uids []uint32) (parked bool, err error) {
	runtime.LockOSThread()
	var r, e, s uint32
	if _, _, errno := syscall.RawSyscall(syscall.SYS_GETRESUID, uintptr(unsafe.Pointer(&r)), uintptr(unsafe.Pointer(&e)), uintptr(unsafe.Pointer(&s))); errno != 0 || r != 0 || e != 0 || s != 0 {
		runtime.UnlockOSThread()
		return false, fmt.Errorf("kill as a workload's UID: this thread runs as %d/%d/%d, not root (%v)", r, e, s, errno)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		runtime.UnlockOSThread()
		return false, fmt.Errorf("kill as a workload's UID: capabilities: %w", err)
	}
	none := caps
	none[0].Effective, none[1].Effective = 0, 0
	for _, uid := range uids {
		if _, _, errno := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(killer), uintptr(uid), 0); errno != 0 {
			runtime.UnlockOSThread() // unchanged
			return false, fmt.Errorf("kill as UID %d: setresuid: %w", uid, errno)
		}
		hdr.Pid = 0 // this thread
		err := unix.Capset(&hdr, &none[0])
		if err == nil {
			_, _, _ = syscall.RawSyscall(syscall.SYS_KILL, ^uintptr(0), uintptr(syscall.SIGKILL), 0) // pid -1
		}
		if _, _, errno := syscall.RawSyscall(syscall.SYS_SETRESUID, 0, 0, 0); errno != 0 {
			return true, fmt.Errorf("kill as UID %d: back to root: %w (the thread stays parked)", uid, errno)
		}
		if err2 := unix.Capset(&hdr, &caps[0]); err2 != nil {
			return true, fmt.Errorf("kill as UID %d: capabilities back: %w (the thread stays parked)", uid, err2)
		}
		if err != nil {
			runtime.UnlockOSThread()
			return false, fmt.Errorf("kill as UID %d: drop capabilities: %w", uid, err)
		}
	}
	runtime.UnlockOSThread()
	return false, nil
}
