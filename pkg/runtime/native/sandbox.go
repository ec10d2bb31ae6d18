package native

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A workload of its own user runs in a sandbox of its own, as Nomad's exec driver runs
// tasks: its own mount and IPC namespaces, with private /tmp, /var/tmp and /dev/shm
// (tmpfs, gone with its last process), a /proc that shows only its own user's processes
// (hidepid=invisible), SysV IPC objects nobody else sees and that end with it, and
// no_new_privs. Go cannot run code between fork and exec, so the process is started as
// this program's sandbox helper (SandboxMain) in the new namespaces, as root; the helper
// mounts, drops to the workload's user (every capability goes with root), and execs the
// workload in its own place (same PID, process group and cgroup). There is no PID
// namespace: its first process would be PID 1, which ignores SIGTERM it has no handler
// for, and a stop would wait out its grace period; hidepid gives the same view.

// sandboxArg is the helper's argv[0]; sandboxEnv carries its spec (removed before exec).
const (
	sandboxArg = "nex-sandbox"
	sandboxEnv = "NEX_SANDBOX_SPEC"
)

// sandboxTmp are the directories that are private to each sandbox.
var sandboxTmp = []string{"/tmp", "/var/tmp", "/dev/shm"}

// sandboxSpec is what the helper needs to become the workload.
type sandboxSpec struct {
	UID, GID uint32
	Path     string   // the executable
	Argv     []string // with argv[0]
	Dir      string   // the workdir
	Env      []string // the workload's environment (the helper's own is the spec alone:
	// a root process must not run with a tenant's LD_PRELOAD or GODEBUG)
	Probe bool // mount, then exit 0: can this machine sandbox?
}

// SandboxMain runs the sandbox helper when this process was started as one and never
// returns then; otherwise it returns at once. nexlet-native (and a test binary that uses
// the runtime) calls it first thing in main.
func SandboxMain() {
	if filepath.Base(os.Args[0]) != sandboxArg || os.Getenv(sandboxEnv) == "" {
		return
	}
	runtime.LockOSThread() // no_new_privs is a thread's: the one that execs
	var s sandboxSpec
	err := json.Unmarshal([]byte(os.Getenv(sandboxEnv)), &s)
	if err == nil {
		err = s.enter()
	}
	fmt.Fprintf(os.Stderr, "nex sandbox: %v\n", err)
	os.Exit(127)
}

// enter sets the sandbox up and execs the workload (returns only on failure).
func (s *sandboxSpec) enter() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// what the workload needs below a directory that is about to be hidden (a workdir or
	// an executable under /tmp) is held open now and bound back in place afterwards
	type keep struct {
		path string
		fd   int
	}
	var keeps []keep
	for _, p := range []string{s.Dir, s.Path} {
		if p == "" || !underRoots(p, sandboxTmp) {
			continue
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		keeps = append(keeps, keep{p, fd})
	}
	for _, dir := range sandboxTmp {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("private %s: %w", dir, err)
		}
	}
	for _, k := range keeps {
		var st unix.Stat_t
		if err := unix.Fstat(k.fd, &st); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(k.path), 0o711); err != nil { // enter, not list
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := os.Mkdir(k.path, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		} else if f, err := os.OpenFile(k.path, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			f.Close()
		} else {
			return err
		}
		if err := unix.Mount("/proc/self/fd/"+strconv.Itoa(k.fd), k.path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("keep %s: %w", k.path, err)
		}
		unix.Close(k.fd)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=invisible"); err != nil {
		return fmt.Errorf("a /proc of its own: %w", err)
	}
	if s.Probe {
		os.Exit(0)
	}
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setresgid(int(s.GID), int(s.GID), int(s.GID)); err != nil {
		return err
	}
	if err := syscall.Setresuid(int(s.UID), int(s.UID), int(s.UID)); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// a change of user clears the parent-death signal: the workload ends with the nexlet
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return err
	}
	if os.Getppid() == 1 { // the nexlet died before the signal was set
		os.Exit(137)
	}
	if err := os.Chdir(s.Dir); err != nil {
		return err
	}
	err := syscall.Exec(s.Path, s.Argv, s.Env)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOEXEC) {
		return fmt.Errorf("exec %s: %w", s.Path, err)
	}
	return err
}

// sandboxFlags are the namespaces a sandboxed process is started in.
const sandboxFlags = syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC

// probeSandbox starts the helper once to learn whether this machine lets the nexlet
// sandbox workloads (it needs CAP_SYS_ADMIN for the namespaces and mounts).
func probeSandbox(exe string) error {
	spec, _ := json.Marshal(sandboxSpec{Probe: true, Dir: "/"})
	cmd := exec.Command(exe)
	cmd.Args = []string{sandboxArg}
	cmd.Env = []string{sandboxEnv + "=" + string(spec)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: sandboxFlags}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sandboxed turns a spawn of the workload's process into a spawn of the helper that
// becomes it, in new namespaces, as root until it drops to uid:gid.
func (s *spawnSpec) sandboxed(exe string, uid, gid uint32) {
	spec, _ := json.Marshal(sandboxSpec{UID: uid, GID: gid, Path: s.path, Argv: append([]string{s.path}, s.argv...), Dir: s.dir, Env: s.env})
	s.env = []string{sandboxEnv + "=" + string(spec)}
	s.argv0 = sandboxArg
	s.path, s.argv = exe, nil
	a := *s.attr
	a.Credential = nil // the helper drops to the workload's user itself, after mounting
	a.Cloneflags |= sandboxFlags
	s.attr = &a
}
