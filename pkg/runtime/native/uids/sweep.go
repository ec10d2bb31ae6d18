package uids

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nexrun/nex/internal/fdwalk"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// killAndSweep kills every process of uids (a daemon one double-forked out of its process
// group included, and one that keeps forking) and removes the files they own at the top
// of the temporary directories. It reads the machine's processes and directories once for
// all of them. It returns those of uids that still had processes after 5 s (stuck in the
// kernel, or a kill that failed): they must not be handed out again.
func (p *Pool) killAndSweep(uids ...uint32) (stuck []uint32) {
	if len(uids) == 0 {
		return nil
	}
	set := make(map[uint32]bool, len(uids))
	for _, uid := range uids {
		set[uid] = true
	}
	start := time.Now()
	deadline, fuseAborted, warned := start.Add(5*time.Second), false, false
	for kill := uids; ; {
		err := p.killByUID(kill)
		if err != nil && !errors.Is(err, errNoKiller) && !warned {
			warned = true
			p.log.Warn("kill a workload UID's processes by UID; killing them by PID instead, which a process that keeps forking escapes", zap.Error(err))
		}
		pids, left := processesOf(set)
		if len(pids) == 0 {
			break
		}
		kill = slices.Collect(maps.Keys(left)) // again, for the UIDs still there
		if !fuseAborted && time.Since(start) > time.Second {
			fuseAborted = true
			if n := abortFUSE(left); n > 0 {
				p.log.Warn("aborted FUSE connections of released workload UIDs: their processes waited in the kernel for answers no one gave", zap.Int("connections", n))
			}
		}
		if time.Now().After(deadline) {
			stuck = kill
			break
		}
		if err != nil { // killed by UID, they are dying: a kill by PID could hit a PID reused meanwhile
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := removeIPC(set); n > 0 {
		p.log.Info("removed the System V IPC objects released workload UIDs left", zap.Int("objects", n))
	}
	for _, dir := range p.tmpDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			var st syscall.Stat_t
			if syscall.Lstat(path, &st) != nil || !set[st.Uid] {
				continue
			}
			if err := os.RemoveAll(path); err != nil {
				p.log.Warn("remove a file a workload left", zap.String("path", path), zap.Error(err))
			}
		}
	}
	return stuck
}

// removeIPC removes the System V shared memory segments, semaphore sets and message
// queues that one of uids owns or made, in this process's IPC namespace (the one
// unsandboxed workloads share), and says how many: the UID's next holder could otherwise
// attach them, as it could read files left in /tmp. A segment still attached goes once
// its last process detaches (they are killed by then).
func removeIPC(uids map[uint32]bool) int {
	removed := 0
	for _, kind := range []struct {
		file, id string
		ctl      uintptr
	}{{"shm", "shmid", unix.SYS_SHMCTL}, {"sem", "semid", unix.SYS_SEMCTL}, {"msg", "msqid", unix.SYS_MSGCTL}} {
		b, err := os.ReadFile("/proc/sysvipc/" + kind.file)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		header := strings.Fields(lines[0])
		col := func(name string) int { return slices.Index(header, name) }
		idCol, uidCol, cuidCol := col(kind.id), col("uid"), col("cuid")
		if idCol < 0 || uidCol < 0 || cuidCol < 0 {
			continue
		}
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			if len(f) <= max(idCol, uidCol, cuidCol) {
				continue
			}
			uid, _ := strconv.ParseUint(f[uidCol], 10, 32)
			cuid, _ := strconv.ParseUint(f[cuidCol], 10, 32)
			id, err := strconv.Atoi(f[idCol])
			if err != nil || !uids[uint32(uid)] && !uids[uint32(cuid)] {
				continue
			}
			// semctl takes the set's semaphore number before the command; 0 for the others
			args := [3]uintptr{uintptr(id), 0, 0} // IPC_RMID is 0
			if _, _, errno := syscall.Syscall(kind.ctl, args[0], args[1], args[2]); errno == 0 {
				removed++
			}
		}
	}
	return removed
}

// abortFUSE aborts the FUSE connections that one of uids mounted (in a user namespace of
// its own), and says how many: a process waiting in the kernel for an answer from a FUSE
// server that never gives it is not ended by SIGKILL, and would keep its UID out of use.
// A connection's directory in fusectl is its mounter's. fusectl is read where the
// machine mounts it, else mounted here for the purpose (it needs CAP_SYS_ADMIN).
func abortFUSE(uids map[uint32]bool) int {
	dir := "/sys/fs/fuse/connections"
	if entries, _ := os.ReadDir(dir); len(entries) == 0 { // none, or fusectl is not mounted there
		tmp, err := os.MkdirTemp("", "nex-fusectl-")
		if err != nil {
			return 0
		}
		defer os.Remove(tmp)
		if syscall.Mount("fusectl", tmp, "fusectl", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "") != nil {
			return 0
		}
		defer func() { _ = syscall.Unmount(tmp, syscall.MNT_DETACH) }()
		dir = tmp
	}
	entries, _ := os.ReadDir(dir)
	aborted := 0
	for _, e := range entries {
		var st syscall.Stat_t
		conn := filepath.Join(dir, e.Name())
		if syscall.Stat(conn, &st) != nil || !uids[st.Uid] {
			continue
		}
		if os.WriteFile(filepath.Join(conn, "abort"), []byte("1"), 0) == nil {
			aborted++
		}
	}
	return aborted
}

func ownedBy(path string, uid uint32) bool {
	var st syscall.Stat_t
	return syscall.Lstat(path, &st) == nil && st.Uid == uid
}

// processesOf lists the processes whose real or effective UID is one of uids, and which
// of uids they run as. It reads each process's status with plain system calls into one
// buffer: it runs for every batch of releases, over every process of the machine.
func processesOf(uids map[uint32]bool) (pids []int, of map[uint32]bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, nil
	}
	var buf [4096]byte
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		real, effective, ok := statusUIDs("/proc/"+e.Name()+"/status", buf[:])
		if !ok || !uids[real] && !uids[effective] {
			continue
		}
		pids = append(pids, pid)
		if of == nil {
			of = map[uint32]bool{}
		}
		for _, uid := range []uint32{real, effective} {
			if uids[uid] {
				of[uid] = true
			}
		}
	}
	return pids, of
}

// statusUIDs reads the real and effective UIDs from the status file at path (false: the
// process is gone, a zombie, or the file says no UIDs), into buf. A zombie is left
// alone: it runs nothing, a kill does not end it, and its parent reaps it (the nexlet,
// a subreaper, reaps its own). A zombie that still has threads is no zombie: a process
// whose first thread exited (pthread_exit) shows "Z" while its other threads run on, and
// a kill ends them all.
func statusUIDs(path string, buf []byte) (real, effective uint32, ok bool) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, false
	}
	n, err := syscall.Read(fd, buf) // the whole file: about 1.5 KiB
	syscall.Close(fd)
	if err != nil || n <= 0 {
		return 0, 0, false
	}
	zombie, threads, found := false, 0, false
	for line := range strings.Lines(string(buf[:n])) {
		key, value, _ := strings.Cut(line, ":")
		f := strings.Fields(value)
		switch {
		case len(f) == 0:
		case key == "State":
			zombie = f[0] == "Z"
		case key == "Threads":
			threads, _ = strconv.Atoi(f[0])
		case key == "Uid" && len(f) >= 2: // real, effective, saved, filesystem
			r, err1 := strconv.ParseUint(f[0], 10, 32)
			e, err2 := strconv.ParseUint(f[1], 10, 32)
			real, effective, found = uint32(r), uint32(e), err1 == nil && err2 == nil
		}
	}
	if zombie && threads == 1 { // unread (a status longer than buf): killed all the same
		return 0, 0, false
	}
	return real, effective, found
}

// ChownTree gives path and everything under it to uid:gid (links themselves, never what
// they point to). The tree is a workload's, and its processes, or another's of the same
// user, may be changing it meanwhile: it is walked by descriptor (fdwalk), so a directory
// swapped for a symlink leads nowhere outside it, and a file linked more than once is
// left as it is (a hard link the workload made to a file of root's, where
// fs.protected_hardlinks does not forbid it, is root's file).
func ChownTree(path string, uid, gid uint32) error {
	return fdwalk.Walk(path, func(e *fdwalk.Entry) error {
		if !e.IsDir() && e.Stat.Mode&unix.S_IFMT != unix.S_IFLNK && e.Stat.Nlink > 1 {
			return nil
		}
		return e.Chown(uid, gid)
	})
}
