package native

import (
	"path/filepath"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/sandbox"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
)

// Workloads of their own users run in sandboxes of their own (spawn.Spec.Sandbox).

// SandboxMain runs the sandbox helper when this process was started as one and never
// returns then; otherwise it returns at once. nexlet-native (and a test binary that uses
// the runtime) calls it first thing in main.
func SandboxMain() { sandbox.Main() }

// SandboxHelper is the program to start workloads through: nex-sandbox beside self (C:
// it starts in about 1.5 ms and its init is one thread), else self, which must call
// SandboxMain (the Go helper: about 8 ms more per start, and 8 threads per sandbox).
func SandboxHelper(self string) string {
	if p := filepath.Join(filepath.Dir(self), sandbox.Arg); spawn.ExecutableFile(p) {
		return p
	}
	return self
}

// probeSandbox returns the helper to sandbox workloads through: SandboxExe when it passes
// its probe, else SandboxFallback when that does (saying why), else "" (no sandbox).
func (d *Driver) probeSandbox() string {
	err := spawn.ProbeSandbox(d.opts.SandboxExe)
	if err == nil {
		return d.opts.SandboxExe
	}
	if fb := d.opts.SandboxFallback; fb != "" && fb != d.opts.SandboxExe {
		if fbErr := spawn.ProbeSandbox(fb); fbErr == nil {
			d.log.Warn("the sandbox helper failed its probe; workloads are sandboxed through "+fb+" instead, a few milliseconds slower per start (reinstall nex-sandbox from this build)",
				zap.String("helper", d.opts.SandboxExe), zap.Error(err))
			return fb
		}
	}
	d.log.Warn("workloads run without a sandbox of their own (mount, IPC and PID namespaces: private /tmp and /dev/shm, their own processes only): it needs CAP_SYS_ADMIN", zap.String("helper", d.opts.SandboxExe), zap.Error(err))
	return ""
}
