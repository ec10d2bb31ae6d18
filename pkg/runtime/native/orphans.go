package native

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
)

// The parent-death signal ends a workload's main process when its nexlet dies, but not
// the children it forked. So each running process group is recorded in
// <data dir>/groups/<pgid> with the boot ID; a new nexlet on the same data dir kills the
// groups its dead predecessor left behind (on the same boot only: after a reboot the
// numbers mean other processes).

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (d *Driver) groupsDir() string { return filepath.Join(d.opts.DataDir, "groups") }

func (d *Driver) recordGroup(pgid int) {
	_ = os.WriteFile(filepath.Join(d.groupsDir(), strconv.Itoa(pgid)), []byte(d.boot), 0o600)
}

func (d *Driver) forgetGroup(pgid int) {
	_ = os.Remove(filepath.Join(d.groupsDir(), strconv.Itoa(pgid)))
}

// killOrphans kills the process groups a previous nexlet on this data dir left behind.
func (d *Driver) killOrphans() {
	entries, err := os.ReadDir(d.groupsDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(d.groupsDir(), e.Name())
		pgid, err := strconv.Atoi(e.Name())
		b, _ := os.ReadFile(path)
		_ = os.Remove(path)
		if err != nil || pgid <= 1 || d.boot == "" || strings.TrimSpace(string(b)) != d.boot {
			continue
		}
		if syscall.Kill(-pgid, syscall.SIGKILL) == nil {
			d.log.Warn("killed processes left by a previous nexlet", zap.Int("pgid", pgid))
		}
	}
}
