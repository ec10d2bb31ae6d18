package uids

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// killAndSweep kills every process of uid (a daemon it double-forked out of its process
// group included) and removes the files uid owns at the top of the temporary directories.
func (p *Pool) killAndSweep(uid uint32) {
	deadline := time.Now().Add(5 * time.Second)
	for pids := processesOf(uid); len(pids) > 0 && time.Now().Before(deadline); pids = processesOf(uid) {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, dir := range p.tmpDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			if ownedBy(path, uid) {
				if err := os.RemoveAll(path); err != nil {
					p.log.Warn("remove a file a workload left", zap.String("path", path), zap.Error(err))
				}
			}
		}
	}
}

func ownedBy(path string, uid uint32) bool {
	var st syscall.Stat_t
	return syscall.Lstat(path, &st) == nil && st.Uid == uid
}

// processesOf lists the processes whose real or effective UID is uid.
func processesOf(uid uint32) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := strconv.FormatUint(uint64(uid), 10)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
				f := strings.Fields(rest) // real, effective, saved, filesystem
				if len(f) >= 2 && (f[0] == want || f[1] == want) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

// ChownTree gives path and everything under it to uid:gid (links themselves, never what
// they point to).
func ChownTree(path string, uid, gid uint32) error {
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(uid), int(gid))
	})
}
