package native

import (
	"path/filepath"

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
