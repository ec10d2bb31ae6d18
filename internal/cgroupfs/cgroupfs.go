// Package cgroupfs holds what nexlet-native and nexd both do with cgroup directories:
// the names of a nexlet's workload cgroups, reading this process's cgroups and mounts,
// and killing what is in a cgroup and removing it. nexd uses it to remove, after a
// nexlet it gave up on, the cgroups that nexlet left (nexlets share nexd's cgroups under
// v1), without linking the nexlet's runtime.
package cgroupfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Controllers are the v1 controllers a nexlet limits workloads with.
var Controllers = []string{"memory", "cpu", "pids"}

// Prefix begins the name of every nexlet's base of workload cgroups.
const Prefix = "nex-"

// Base is the name of the base of nexlet nexletID of node nodeID: two nexlets in one
// cgroup (nexd starts them all in its own) keep apart.
func Base(nodeID, nexletID string) string { return Prefix + nodeID + "-" + nexletID }

// ReadInfo reads this process's cgroups (controller -> path; "" for v2) and where
// the hierarchies are mounted (controller -> mount point; "" for v2).
func ReadInfo() (own, mounts map[string]string, err error) {
	own, mounts = map[string]string{}, map[string]string{}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, nil, fmt.Errorf("no cgroups: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "" {
			own[""] = f[2]
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			own[c] = f[2]
		}
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, nil, fmt.Errorf("no mount table: %v", err)
	}
	defer mi.Close()
	sc := bufio.NewScanner(mi)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		f := strings.Fields(sc.Text())
		i := slices.Index(f, "-")
		if i < 0 || i+3 >= len(f) || len(f) < 5 {
			continue
		}
		switch f[i+1] {
		case "cgroup2":
			mounts[""] = f[4]
		case "cgroup":
			for _, o := range strings.Split(f[i+3], ",") {
				if slices.Contains(Controllers, o) {
					mounts[o] = f[4]
				}
			}
		}
	}
	return own, mounts, nil
}

// ClearBase kills what is in each workload cgroup under base and removes it; failed is
// told of one it could not remove (nil: nobody).
func ClearBase(base string, failed func(dir string, err error)) {
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(base, e.Name())
		Kill(dir)
		if err := Remove(dir); err != nil && failed != nil {
			failed(dir, err)
		}
	}
}

// RemoveOf removes the v1 workload cgroups nexlet nexletID of node nodeID left
// under this process's own cgroups, killing what is still in them: for nexd, whose
// nexlets share its cgroups, once one of them is gone for good (it was given up on, or
// killed for lack of time at shutdown) and so cannot remove its own.
func RemoveOf(nodeID, nexletID string) {
	own, mounts, err := ReadInfo()
	if err != nil {
		return
	}
	for _, c := range Controllers {
		mnt, ok := mounts[c]
		if !ok {
			continue
		}
		base := filepath.Join(mnt, own[c], Base(nodeID, nexletID))
		ClearBase(base, nil)
		_ = syscall.Rmdir(base)
	}
}

// Kill sends SIGKILL to every process in cgroup dir.
func Kill(dir string) {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Remove removes an empty cgroup, waiting briefly for killed processes to be reaped.
func Remove(dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}
