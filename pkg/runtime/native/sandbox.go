package native

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nexrun/nex/internal/sandbox"
)

// A workload of its own user (or of a run-as user) runs in a sandbox of its own, as
// Nomad's exec driver runs tasks: its own mount, IPC and PID namespaces, with private
// /tmp, /var/tmp and /dev/shm (tmpfs, gone with its last process), a /proc of its PID
// namespace (it sees its own processes only), SysV IPC objects nobody else sees and that
// end with it, and no_new_privs. Go cannot run code between fork and exec, so the process
// is started as the sandbox helper (internal/sandbox: the nex-sandbox binary beside
// nexlet-native, else nexlet-native itself) in the new namespaces, as root; the helper
// mounts, drops to the workload's user (every capability goes with root), and stays as
// the namespace's PID 1 in the workload's process group and cgroup: it starts the
// workload, reaps orphans, and exits with the workload's status, and its exit ends every
// process left in the sandbox. A stop's SIGTERM to the process group reaches the workload
// directly (PID 1 takes only signals it handles, and passes them on only to a workload
// that left the group).

// SandboxMain runs the sandbox helper when this process was started as one and never
// returns then; otherwise it returns at once. nexlet-native (and a test binary that uses
// the runtime) calls it first thing in main.
func SandboxMain() { sandbox.Main() }

// SandboxHelper is the program to start workloads through: nex-sandbox beside self (a
// binary that starts in about a millisecond), else self, which must call SandboxMain.
func SandboxHelper(self string) string {
	if p := filepath.Join(filepath.Dir(self), sandbox.Arg); executableFile(p) {
		return p
	}
	return self
}

func executableFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// probeSandbox starts the helper once to learn whether this machine lets the nexlet
// sandbox workloads (it needs CAP_SYS_ADMIN for the namespaces and mounts).
func probeSandbox(exe string) error {
	spec, _ := json.Marshal(sandbox.Spec{Probe: true, Dir: "/"})
	cmd := exec.Command(exe)
	cmd.Args = []string{sandbox.Arg}
	cmd.Env = []string{sandbox.Env + "=" + string(spec)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: sandbox.Flags}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
