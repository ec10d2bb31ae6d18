// Package cgroups owns the resource limits of the native runtime's workloads: what this
// nexlet can enforce (found once at its start, Detect) and one cgroup per workload, made
// when it starts and removed when it ends, under the nexlet's own cgroup (so a workload
// never leaves the limits the nexlet itself is under).
//
//   - v2 (unified hierarchy), when the nexlet's cgroup offers the memory, cpu and pids
//     controllers and holds no other process (systemd with Delegate=yes): the nexlet moves
//     itself into a leaf "nexlet", enables the controllers for its subtree and starts each
//     process straight into its workload's cgroup (clone3 with CLONE_INTO_CGROUP).
//   - v1, where the memory, cpu and pids hierarchies are mounted and writable: a
//     directory per workload in each. A new process inherits the cgroups of the thread
//     that forks it, so the forking thread joins the workload's cgroups for the fork and
//     goes back after it; the process is never outside its limits, not even before exec.
package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/cgroupfs"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Setup is what this nexlet can enforce, found once at start.
type Setup struct {
	kind   string   // v1.CgroupsV2, v1.CgroupsV1 or v1.CgroupsNone
	limits []string // the resources it can limit
	why    string   // what is missing, for the log and for declines
	v2     string   // v2: the directory holding the workloads' cgroups
	v1dirs map[string]string
	v1own  map[string]string // v1: the nexlet's own cgroup per controller (threads go back)
}

// Detect finds how this process can limit its workloads, under bases named name
// (cgroupfs.Base).
func Detect(name string, log *zap.Logger) *Setup {
	own, mounts, err := cgroupfs.ReadInfo()
	if err != nil {
		return &Setup{kind: v1.CgroupsNone, why: err.Error()}
	}
	var whyV2 string
	if mnt, ok := mounts[""]; ok {
		s, err := setupV2(filepath.Join(mnt, own[""]), name)
		if err == nil {
			return s
		}
		whyV2 = "cgroup v2: " + err.Error()
	}
	s := setupV1(own, mounts, name)
	if s.kind == v1.CgroupsNone && whyV2 != "" {
		s.why = whyV2 + "; " + s.why
	}
	if s.why != "" && log != nil {
		log.Warn("some resource limits cannot be enforced: workloads that ask for them are declined", zap.String("cgroups", s.kind), zap.Strings("limits", s.limits), zap.String("why", s.why))
	}
	return s
}

// setupV2 makes dir (the nexlet's cgroup) the parent of its workloads' cgroups.
func setupV2(dir, name string) (*Setup, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	have := strings.Fields(string(b))
	for _, c := range cgroupfs.Controllers {
		if !slices.Contains(have, c) {
			return nil, fmt.Errorf("controller %s is not available in %s (it has: %s); give nexlet-native a delegated cgroup (systemd Delegate=yes)", c, dir, strings.Join(have, " "))
		}
	}
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	self := strconv.Itoa(os.Getpid())
	if filepath.Base(dir) != "nexlet" { // not already moved by an earlier start
		for _, p := range strings.Fields(string(procs)) {
			if p != self {
				return nil, fmt.Errorf("%s holds other processes (%s): run nexlet-native as a systemd unit of its own with Delegate=yes (deploy/systemd/nexlet-native@.service)", dir, p)
			}
		}
		leaf := filepath.Join(dir, "nexlet")
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(self), 0); err != nil {
			return nil, fmt.Errorf("move the nexlet into %s: %v", leaf, err)
		}
	} else {
		dir = filepath.Dir(dir)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu +pids"), 0); err != nil {
		return nil, fmt.Errorf("enable controllers in %s: %v", dir, err)
	}
	base := filepath.Join(dir, name)
	if err := os.Mkdir(base, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if err := hide(base); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+memory +cpu +pids"), 0); err != nil {
		return nil, fmt.Errorf("enable controllers in %s: %v", base, err)
	}
	return &Setup{kind: v1.CgroupsV2, limits: []string{v1.ResourceMemory, v1.ResourceCPU, v1.ResourcePIDs}, v2: base}, nil
}

// setupV1 makes a directory for the workloads in each writable v1 hierarchy.
func setupV1(own, mounts map[string]string, name string) *Setup {
	s := &Setup{kind: v1.CgroupsNone, v1dirs: map[string]string{}, v1own: map[string]string{}}
	var why []string
	for _, c := range cgroupfs.Controllers {
		mnt, ok := mounts[c]
		if !ok {
			why = append(why, "no "+c+" cgroup hierarchy is mounted")
			continue
		}
		mine := filepath.Join(mnt, own[c])
		base := filepath.Join(mine, name)
		removeEmptyBases(mine, base)
		if err := os.Mkdir(base, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
			why = append(why, fmt.Sprintf("cannot make %s: %v", base, err))
			continue
		}
		if err := hide(base); err != nil {
			why = append(why, err.Error())
			continue
		}
		s.v1dirs[c], s.v1own[c] = base, mine
		s.limits = append(s.limits, c)
		s.kind = v1.CgroupsV1
	}
	s.why = strings.Join(why, "; ")
	return s
}

// removeEmptyBases removes the empty workload-cgroup bases of other nexlets under mine:
// those of nexlets killed outright, under node IDs that never come back, would pile up.
// rmdir removes only a cgroup with no children: a live nexlet's base with workloads stays,
// and one without any is made again at its next workload (New).
func removeEmptyBases(mine, keep string) {
	entries, _ := os.ReadDir(mine)
	for _, e := range entries {
		if dir := filepath.Join(mine, e.Name()); e.IsDir() && strings.HasPrefix(e.Name(), cgroupfs.Prefix) && dir != keep {
			_ = syscall.Rmdir(dir)
		}
	}
}

// Enforces says why r cannot be enforced here ("" when it can).
func (s *Setup) Enforces(r *v1.Resources) string {
	for _, name := range r.Names() {
		if name == v1.ResourceDisk {
			continue // the nexlet's own check, not a cgroup's
		}
		if !slices.Contains(s.limits, name) {
			why := s.why
			if why == "" {
				why = "no cgroup controller for it"
			}
			return fmt.Sprintf("this nexlet cannot enforce resources.%s (nex.cgroups=%s): %s", name, s.kind, why)
		}
	}
	return ""
}

// Sweep removes the workload cgroups a dead predecessor of this nexlet left behind,
// killing what is still in them (the nexlet killed most of that at its start already).
func (s *Setup) Sweep(log *zap.Logger) {
	for _, b := range s.bases() {
		cgroupfs.ClearBase(b, func(dir string, err error) {
			log.Warn("remove a workload cgroup left by a previous nexlet", zap.String("cgroup", dir), zap.Error(err))
		})
	}
}

// Close removes the directories that held the workloads' cgroups (once they are empty).
func (s *Setup) Close() {
	for _, b := range s.bases() {
		_ = syscall.Rmdir(b)
	}
}

func (s *Setup) bases() []string {
	var out []string
	if s.v2 != "" {
		out = append(out, s.v2)
	}
	for _, c := range cgroupfs.Controllers {
		if b, ok := s.v1dirs[c]; ok {
			out = append(out, b)
		}
	}
	return out
}

// None is a setup that enforces nothing, for why.
func None(why string) *Setup { return &Setup{kind: v1.CgroupsNone, why: why} }

// Kind is how s enforces limits: v1.CgroupsV2, v1.CgroupsV1 or v1.CgroupsNone.
func (s *Setup) Kind() string { return s.kind }

// Limits are the resources s can limit.
func (s *Setup) Limits() []string { return s.limits }

// Probe says which resources a nexlet started as this process is could limit here
// (of memory, cpu and pids), as nexlet-native would find at its start; it leaves nothing
// behind. Tests and tools use it to know what a node of this machine enforces.
func Probe() []string {
	s := Detect(cgroupfs.Prefix+"probe-"+strconv.Itoa(os.Getpid()), nil)
	defer s.Close()
	return slices.Clone(s.limits)
}

// hide makes base, the parent of the workloads' cgroups, one that only root may list:
// its entries are named by workload ID, and a workload (whose sandbox shows the host's
// /sys) listed every namespace's workloads there, and read their memory, CPU and process
// IDs in the world-readable files below. A workload still reaches its own cgroup's files
// by their path.
func hide(base string) error {
	if err := os.Chmod(base, 0o711); err != nil {
		return fmt.Errorf("make %s unlistable: %v", base, err)
	}
	return nil
}
