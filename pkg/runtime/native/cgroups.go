package native

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/cgroupfs"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Resource limits are enforced with cgroups: one cgroup per workload, made when it
// starts and removed when it ends, under the nexlet's own cgroup (so a workload never
// leaves the limits the nexlet itself is under).
//
//   - v2 (unified hierarchy), when the nexlet's cgroup offers the memory, cpu and pids
//     controllers and holds no other process (systemd with Delegate=yes): the nexlet moves
//     itself into a leaf "nexlet", enables the controllers for its subtree and starts each
//     process straight into its workload's cgroup (clone3 with CLONE_INTO_CGROUP).
//   - v1, where the memory, cpu and pids hierarchies are mounted and writable: a
//     directory per workload in each. A new process inherits the cgroups of the thread
//     that forks it, so the forking thread joins the workload's cgroups for the fork and
//     goes back after it; the process is never outside its limits, not even before exec.

// cgroupSetup is what this nexlet can enforce, found once at start.
type cgroupSetup struct {
	kind   string   // v1.CgroupsV2, v1.CgroupsV1 or v1.CgroupsNone
	limits []string // the resources it can limit
	why    string   // what is missing, for the log and for declines
	v2     string   // v2: the directory holding the workloads' cgroups
	v1dirs map[string]string
	v1own  map[string]string // v1: the nexlet's own cgroup per controller (threads go back)
}

// detectCgroups finds how this process can limit its workloads, under bases named name
// (cgroupBase).
func detectCgroups(name string, log *zap.Logger) *cgroupSetup {
	own, mounts, err := cgroupfs.ReadInfo()
	if err != nil {
		return &cgroupSetup{kind: v1.CgroupsNone, why: err.Error()}
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
func setupV2(dir, name string) (*cgroupSetup, error) {
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
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+memory +cpu +pids"), 0); err != nil {
		return nil, fmt.Errorf("enable controllers in %s: %v", base, err)
	}
	return &cgroupSetup{kind: v1.CgroupsV2, limits: []string{v1.ResourceMemory, v1.ResourceCPU, v1.ResourcePIDs}, v2: base}, nil
}

// setupV1 makes a directory for the workloads in each writable v1 hierarchy.
func setupV1(own, mounts map[string]string, name string) *cgroupSetup {
	s := &cgroupSetup{kind: v1.CgroupsNone, v1dirs: map[string]string{}, v1own: map[string]string{}}
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
		if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			why = append(why, fmt.Sprintf("cannot make %s: %v", base, err))
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
// and one without any is made again at its next workload (newCgroup).
func removeEmptyBases(mine, keep string) {
	entries, _ := os.ReadDir(mine)
	for _, e := range entries {
		if dir := filepath.Join(mine, e.Name()); e.IsDir() && strings.HasPrefix(e.Name(), cgroupfs.Prefix) && dir != keep {
			_ = syscall.Rmdir(dir)
		}
	}
}

// enforces says why r cannot be enforced here ("" when it can).
func (s *cgroupSetup) enforces(r *v1.Resources) string {
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

// sweep removes the workload cgroups a dead predecessor of this nexlet left behind,
// killing what is still in them (killOrphans has done most of that already).
func (s *cgroupSetup) sweep(log *zap.Logger) {
	for _, b := range s.bases() {
		cgroupfs.ClearBase(b, func(dir string, err error) {
			log.Warn("remove a workload cgroup left by a previous nexlet", zap.String("cgroup", dir), zap.Error(err))
		})
	}
}

// close removes the directories that held the workloads' cgroups (once they are empty).
func (s *cgroupSetup) close() {
	for _, b := range s.bases() {
		_ = syscall.Rmdir(b)
	}
}

func (s *cgroupSetup) bases() []string {
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

// workloadCgroup is one workload's cgroup (a directory per hierarchy on v1).
type workloadCgroup struct {
	setup *cgroupSetup
	dirs  []string // v2: one; v1: one per controller limited
	own   []string // v1: the nexlet's cgroup in the same hierarchies
	mem   string   // the directory with the memory controller ("" when not limited)
	fd    int      // v2: an open descriptor of the directory, for CLONE_INTO_CGROUP
}

// newCgroup makes the cgroup of workload id and writes its limits, which s enforces
// (Start has checked).
func (s *cgroupSetup) newCgroup(id string, r *v1.Resources) (*workloadCgroup, error) {
	if s.kind == v1.CgroupsNone {
		return nil, fmt.Errorf("no cgroups here (nex.cgroups=none)") // never paths relative to the working directory
	}
	g := &workloadCgroup{setup: s, fd: -1}
	fail := func(err error) (*workloadCgroup, error) {
		g.remove()
		return nil, err
	}
	write := func(dir, file, value string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
			return fmt.Errorf("set %s to %s: %v", file, value, err)
		}
		return nil
	}
	if s.kind == v1.CgroupsV2 {
		dir := filepath.Join(s.v2, id)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		g.dirs, g.mem = []string{dir}, dir
		if r.Memory > 0 {
			if err := write(dir, "memory.max", strconv.FormatInt(int64(r.Memory), 10)); err != nil {
				return fail(err)
			}
			_ = write(dir, "memory.swap.max", "0") // absent without swap accounting
			_ = write(dir, "memory.oom.group", "1")
		}
		if r.CPU > 0 {
			if err := write(dir, "cpu.max", strconv.Itoa(cpuQuota(r.CPU))+" 100000"); err != nil {
				return fail(err)
			}
		}
		if r.PIDs > 0 {
			if err := write(dir, "pids.max", strconv.Itoa(r.PIDs)); err != nil {
				return fail(err)
			}
		}
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fail(err)
		}
		g.fd = fd
		return g, nil
	}
	for _, c := range r.Names() {
		dir := filepath.Join(s.v1dirs[c], id)
		// MkdirAll: another nexlet may have removed the base while it was empty (setupV1)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
		g.dirs, g.own = append(g.dirs, dir), append(g.own, s.v1own[c])
		var err error
		switch c {
		case v1.ResourceMemory:
			g.mem = dir
			err = write(dir, "memory.limit_in_bytes", strconv.FormatInt(int64(r.Memory), 10))
			if err == nil {
				_ = write(dir, "memory.memsw.limit_in_bytes", strconv.FormatInt(int64(r.Memory), 10)) // no swapping past it either
			}
		case v1.ResourceCPU:
			if err = write(dir, "cpu.cfs_period_us", "100000"); err == nil {
				err = write(dir, "cpu.cfs_quota_us", strconv.Itoa(cpuQuota(r.CPU)))
			}
		case v1.ResourcePIDs:
			err = write(dir, "pids.max", strconv.Itoa(r.PIDs))
		}
		if err != nil {
			return fail(err)
		}
	}
	return g, nil
}

// cpuQuota is cores as microseconds of CPU time per 100 ms period.
func cpuQuota(cores float64) int {
	return max(1000, int(cores*100000))
}

// enter runs start (which forks the process) so that the new process begins inside g.
func (g *workloadCgroup) enter(attr *syscall.SysProcAttr, start func() error) error {
	if g.setup.kind == v1.CgroupsV2 {
		attr.UseCgroupFD, attr.CgroupFD = true, g.fd
		return start()
	}
	errc := make(chan error, 1)
	go func() {
		// The thread forks the process, so it must live on: the parent-death signal is
		// tied to the forking thread, not to the nexlet.
		runtime.LockOSThread()
		tid := []byte(strconv.Itoa(syscall.Gettid()))
		var err error
		moved := 0
		for _, dir := range g.dirs {
			if err = os.WriteFile(filepath.Join(dir, "tasks"), tid, 0); err != nil {
				err = fmt.Errorf("join cgroup %s: %v", dir, err)
				break
			}
			moved++
		}
		if err == nil {
			err = start()
		}
		var back error
		for _, dir := range g.own[:moved] {
			if e := os.WriteFile(filepath.Join(dir, "tasks"), tid, 0); e != nil {
				back = e
			}
		}
		errc <- err
		if back != nil {
			select {} // never run nexlet code under a workload's limits; the thread stays parked
		}
		runtime.UnlockOSThread()
	}()
	return <-errc
}

// ooms is how many times the kernel killed a process of g for memory.
func (g *workloadCgroup) ooms() int {
	if g == nil || g.mem == "" {
		return 0
	}
	file, key := "memory.oom_control", "oom_kill"
	if g.setup.kind == v1.CgroupsV2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(g.mem, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// kill kills every process left in g (a daemon that left the process group included).
func (g *workloadCgroup) kill() {
	if g != nil {
		for _, dir := range g.dirs {
			cgroupfs.Kill(dir)
		}
	}
}

// remove kills what is left in g and removes it.
func (g *workloadCgroup) remove() {
	if g == nil {
		return
	}
	if g.fd >= 0 {
		_ = syscall.Close(g.fd)
		g.fd = -1
	}
	for _, dir := range g.dirs {
		cgroupfs.Kill(dir)
		_ = cgroupfs.Remove(dir)
	}
}

// CgroupLimits says which resources a nexlet started as this process is could limit here
// (of memory, cpu and pids), as nexlet-native would find at its start; it leaves nothing
// behind. Tests and tools use it to know what a node of this machine enforces.
func CgroupLimits() []string {
	s := detectCgroups(cgroupfs.Prefix+"probe-"+strconv.Itoa(os.Getpid()), nil)
	defer s.close()
	return slices.Clone(s.limits)
}
