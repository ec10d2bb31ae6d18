package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/cgroupfs"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// A nexlet starting on v1 removes the empty workload-cgroup bases other nexlets left
// (killed outright, under node IDs that never come back), and only the empty ones.
func TestEmptyCgroupBasesOfOthersRemoved(t *testing.T) {
	own, mounts, err := cgroupfs.ReadInfo()
	mnt, ok := mounts["memory"]
	if err != nil || !ok {
		t.Skip("no v1 memory hierarchy here")
	}
	mine := filepath.Join(mnt, own["memory"])
	tag := fmt.Sprint(time.Now().UnixNano())
	empty := filepath.Join(mine, "nex-gone-"+tag)
	busy := filepath.Join(mine, "nex-busy-"+tag)
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Skipf("cannot make a cgroup here: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(busy, "w1"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := setupV1(own, mounts, cgroupfs.Base("me", tag))
	t.Cleanup(func() {
		for _, d := range []string{filepath.Join(busy, "w1"), busy, empty} {
			_ = syscall.Rmdir(d)
		}
		s.Close()
	})
	if _, err := os.Stat(empty); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the empty base of another nexlet is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(busy, "w1")); err != nil {
		t.Fatalf("a base with a workload cgroup was touched: %v", err)
	}
	// a nexlet whose empty base another removed makes it again at its next workload
	if err := syscall.Rmdir(s.v1dirs["memory"]); err != nil {
		t.Fatal(err)
	}
	g, err := s.New("w2", &v1.Resources{Memory: 64 << 20})
	if err != nil {
		t.Fatalf("a workload cgroup after the base went: %v", err)
	}
	g.Remove()
}

// A workload's disk limit is no cgroup's: on v1, New made a directory named by the
// workload's ID in the nexlet's working directory for it (the "hierarchy" of disk being
// none), one per workload with a disk limit; and the base the workloads' cgroups sit in
// is one only root may list (its entries name every namespace's workloads).
func TestNewMakesCgroupsOnly(t *testing.T) {
	own, mounts, err := cgroupfs.ReadInfo()
	if _, ok := mounts["memory"]; err != nil || !ok {
		t.Skip("no v1 memory hierarchy here")
	}
	tag := fmt.Sprint(time.Now().UnixNano())
	s := setupV1(own, mounts, cgroupfs.Base("me", tag))
	if s.kind != v1.CgroupsV1 {
		t.Skipf("no cgroups to make here: %s", s.why)
	}
	t.Cleanup(s.Close)
	cwd := t.TempDir()
	t.Chdir(cwd)
	g, err := s.New("w1", &v1.Resources{Memory: 64 << 20, Disk: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Remove()
	if entries, _ := os.ReadDir(cwd); len(entries) > 0 {
		t.Fatalf("New made %s in the working directory", entries[0].Name())
	}
	st, err := os.Stat(s.v1dirs["memory"])
	if err != nil || st.Mode().Perm() != 0o711 {
		t.Fatalf("the workloads' base: %v %v, want mode 0711", st.Mode(), err)
	}
}
