package proc

import (
	"bytes"
	"os"
	"strconv"
	"syscall"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// KillTagged kills, with their process groups, the processes whose environment carries
// NEX_NODE_ID=nodeID and NEX_NEXLET_ID=nexletID: every workload process of that nexlet
// inherits both, children included. It spares this process and its own group, and
// returns the PIDs it killed. A nexlet calls it before it starts anything (what its dead
// predecessor left behind), nexd after its nexlet is gone for good (a shutdown that ran
// out of time).
func KillTagged(nodeID, nexletID string) []int {
	node := []byte(v1.EnvNodeID + "=" + nodeID + "\x00")
	nexlet := []byte(v1.EnvNexletID + "=" + nexletID + "\x00")
	self, own := os.Getpid(), syscall.Getpgrp()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var killed []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, node) || !bytes.Contains(env, nexlet) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != own {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		killed = append(killed, pid)
	}
	return killed
}
