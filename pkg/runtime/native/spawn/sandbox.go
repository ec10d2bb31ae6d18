package spawn

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/nexrun/nex/internal/sandbox"
)

// A workload of its own user (or of a run-as user) runs in a sandbox of its own, as
// Nomad's exec driver runs tasks: its own mount, IPC and PID namespaces, with private
// /tmp, /var/tmp and /dev/shm (tmpfs, gone with its last process), a /proc of its PID
// namespace (it sees its own processes only), SysV IPC objects nobody else sees and that
// end with it, and no_new_privs. Go cannot run code between fork and exec, so the process
// is started as the sandbox helper (nex-sandbox, in C, beside nexlet-native, else
// nexlet-native itself: internal/sandbox) in the new namespaces, as root; the helper
// mounts, drops to the workload's user (every capability goes with root), and stays as
// the namespace's PID 1 in the workload's process group and cgroup: it starts the
// workload, reaps orphans, and exits with the workload's status, and its exit ends every
// process left in the sandbox. A stop's SIGTERM to the process group reaches the workload
// directly (PID 1 takes only signals it handles, and passes them on only to a workload
// that left the group).

// Sandbox turns a spawn of the workload's process into a spawn of the helper that
// becomes it, in new namespaces, as root until it drops to uid:gid.
func (s *Spec) Sandbox(exe string, uid, gid uint32, tmpSize int64) {
	spec := sandbox.Spec{UID: uid, GID: gid, Path: s.Path, Argv: append([]string{s.Path}, s.Argv...), Dir: s.Dir, Env: s.Env, TmpSize: tmpSize, Ready: true}
	s.Env = spec.Environ()
	s.Argv0 = sandbox.Arg
	s.Path, s.Argv = exe, nil
	a := *s.Attr
	a.Credential = nil // the helper drops to the workload's user itself, after mounting
	a.Pdeathsig = 0    // and sets it then (a change of user clears it); Go's check of it reads getppid, 0 in a new PID namespace
	a.Cloneflags |= sandbox.Flags
	s.Attr = &a
	s.Ready = true // the start returns once the helper has started the workload itself
}

// ExecutableFile says whether p is a regular file that someone may execute.
func ExecutableFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// ProbeSandbox starts the helper once to learn whether this machine lets the nexlet
// sandbox workloads (it needs CAP_SYS_ADMIN for the namespaces and mounts).
func ProbeSandbox(exe string) error {
	spec := sandbox.Spec{Probe: true, Dir: "/"}
	cmd := exec.Command(exe)
	cmd.Args = []string{sandbox.Arg}
	cmd.Env = spec.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: sandbox.Flags}
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), sandbox.ProbeOK) {
		return nil // whatever the wait says: the reaper may have taken the status (ECHILD)
	}
	if err == nil {
		err = fmt.Errorf("it did not say %q", sandbox.ProbeOK)
	}
	return fmt.Errorf("%v %s", err, strings.TrimSpace(string(out)))
}

// ChooseSandbox returns the first of helper and fallback (when another) that can sandbox
// here, or "" when neither can; err is helper's failure, nil when helper itself can. A
// helper that cannot start (one of another build) must not leave workloads unsandboxed on
// a machine that could sandbox them.
func ChooseSandbox(helper, fallback string) (string, error) {
	err := ProbeSandbox(helper)
	if err == nil {
		return helper, nil
	}
	if fallback != "" && fallback != helper && ProbeSandbox(fallback) == nil {
		return fallback, err
	}
	return "", err
}
