package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/nexrun/nex/internal/cgroupfs"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Cgroup is one workload's cgroup (a directory per hierarchy on v1).
type Cgroup struct {
	setup *Setup
	dirs  []string // v2: one; v1: one per controller limited
	own   []string // v1: the nexlet's cgroup in the same hierarchies
	mem   string   // the directory with the memory controller ("" when not limited)
	fd    int      // v2: an open descriptor of the directory, for CLONE_INTO_CGROUP
}

// New makes the cgroup of workload id and writes its limits, which s enforces
// (Enforces has said so).
func (s *Setup) New(id string, r *v1.Resources) (*Cgroup, error) {
	if s.kind == v1.CgroupsNone {
		return nil, fmt.Errorf("no cgroups here (nex.cgroups=none)") // never paths relative to the working directory
	}
	g := &Cgroup{setup: s, fd: -1}
	fail := func(err error) (*Cgroup, error) {
		g.Remove()
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
		base, ok := s.v1dirs[c]
		if !ok {
			continue // not a cgroup's (disk: the workdir's watch), or enforced by none here
		}
		dir := filepath.Join(base, id)
		// MkdirAll: another nexlet may have removed the base while it was empty (setupV1)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
		if err := hide(base); err != nil { // made again here
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

// Enter runs start (which forks the process) so that the new process begins inside g.
func (g *Cgroup) Enter(attr *syscall.SysProcAttr, start func() error) error {
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

// OOMs is how many times the kernel killed a process of g for memory.
func (g *Cgroup) OOMs() int {
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

// Kill kills every process left in g (a daemon that left the process group included).
func (g *Cgroup) Kill() {
	if g != nil {
		for _, dir := range g.dirs {
			cgroupfs.Kill(dir)
		}
	}
}

// Remove kills what is left in g and removes it.
func (g *Cgroup) Remove() {
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

// Kind is how g's setup enforces limits (Setup.Kind).
func (g *Cgroup) Kind() string { return g.setup.kind }
