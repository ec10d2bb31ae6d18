// Package sandbox is the helper that turns into a workload inside a sandbox of its own:
// started by nexlet-native in new mount and IPC namespaces, as root, it mounts a private
// /tmp, /var/tmp and /dev/shm and a /proc that hides other users' processes, drops to the
// workload's user with no_new_privs, and execs the workload in its own place.
//
// It imports nothing but the standard library and x/sys, so the nex-sandbox binary that
// runs it starts in about a millisecond: every workload start pays for it.
package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// Arg is the helper's argv[0]; Env carries its Spec (the helper's whole environment).
	Arg = "nex-sandbox"
	Env = "NEX_SANDBOX_SPEC"
	// Flags are the namespaces a sandboxed process is started in.
	Flags = syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC
)

// Private are the directories that are private to each sandbox.
var Private = []string{"/tmp", "/var/tmp", "/dev/shm", "/run/lock"}

// Spec is what the helper needs to become the workload.
type Spec struct {
	UID, GID uint32
	Path     string   // the executable
	Argv     []string // with argv[0]
	Dir      string   // the workdir
	// Env is the workload's environment. The helper's own is the spec alone: a root
	// process must not run with a tenant's LD_PRELOAD or GODEBUG.
	Env     []string
	Probe   bool  // mount, then exit 0: can this machine sandbox?
	TmpSize int64 // bytes each private tmpfs may hold (0: the kernel's default, half the memory)
}

// Asked says whether this process was started as the helper.
func Asked() bool { return filepath.Base(os.Args[0]) == Arg && os.Getenv(Env) != "" }

// Main runs the helper when this process was started as one, and never returns then;
// otherwise it returns at once.
func Main() {
	if !Asked() {
		return
	}
	runtime.LockOSThread() // no_new_privs is a thread's: the one that execs
	var s Spec
	err := json.Unmarshal([]byte(os.Getenv(Env)), &s)
	if err == nil {
		err = s.enter()
	}
	fmt.Fprintf(os.Stderr, "nex sandbox: %v\n", err)
	os.Exit(127)
}

// under says whether the clean absolute path lies in one of dirs (or is one).
func under(path string, dirs []string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// enter sets the sandbox up and execs the workload (returns only on failure).
func (s *Spec) enter() error {
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
		if p == "" || !under(p, Private) {
			continue
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		keeps = append(keeps, keep{p, fd})
	}
	for _, dir := range Private {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		opts := "mode=1777"
		if s.TmpSize > 0 {
			opts += ",size=" + strconv.FormatInt(s.TmpSize, 10)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
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
	return fmt.Errorf("exec %s: %w", s.Path, syscall.Exec(s.Path, s.Argv, s.Env))
}
