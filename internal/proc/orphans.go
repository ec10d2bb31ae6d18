package proc

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// IsNexlet tells whether process pid is nexlet nexletID of node nodeID as nexd started
// it: its environment carries both tags as whole entries, and, when exe is given, it
// runs that executable. A PID a REGISTER message names is only a claim; nexd signals a
// process only once this says it is its nexlet (a PID reused since, or one a forged
// registration names, is left alone).
func IsNexlet(pid int, nodeID, nexletID, exe string) bool {
	if pid <= 1 || pid == os.Getpid() {
		return false
	}
	p := "/proc/" + strconv.Itoa(pid)
	env, err := os.ReadFile(p + "/environ")
	if err != nil {
		return false
	}
	env = append([]byte{0}, env...)
	if !bytes.Contains(env, []byte("\x00"+v1.EnvNodeID+"="+nodeID+"\x00")) || !bytes.Contains(env, []byte("\x00"+v1.EnvNexletID+"="+nexletID+"\x00")) {
		return false
	}
	if exe == "" {
		return true
	}
	got, err := os.Readlink(p + "/exe")
	if err != nil {
		return false
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return strings.TrimSuffix(got, " (deleted)") == exe // replaced by an upgrade since it started
}
