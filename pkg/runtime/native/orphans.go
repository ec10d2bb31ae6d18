package native

import (
	"bytes"
	"os"
	"strconv"
	"syscall"

	"go.uber.org/zap"
)

// The parent-death signal ends a workload's main process when its nexlet dies, but not
// the children it forked. Every workload process carries NEX_NODE_ID and NEX_NEXLET_ID in
// its environment (inherited by its children), so a new nexlet of the same node and ID
// finds what its dead predecessor left behind in /proc and kills it, process group and
// all. This costs nothing per start, unlike a record on disk for every process.

// killOrphans kills the workload processes of a previous instance of this nexlet. It runs
// before this instance starts anything, so every match is an orphan.
func (d *Driver) killOrphans() {
	node := []byte("NEX_NODE_ID=" + d.opts.NodeID + "\x00")
	nexlet := []byte("NEX_NEXLET_ID=" + d.opts.NexletID + "\x00")
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, node) || !bytes.Contains(env, nexlet) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != syscall.Getpgrp() {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		d.log.Warn("killed a process left by a previous nexlet", zap.Int("pid", pid))
	}
}
