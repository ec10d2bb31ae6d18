package spawn

import (
	"encoding/json"

	"github.com/nexrun/nex/internal/sandbox"
)

// Sandbox turns a spawn of the workload's process into a spawn of the helper that
// becomes it, in new namespaces, as root until it drops to uid:gid.
func (s *Spec) Sandbox(exe string, uid, gid uint32, tmpSize int64) {
	spec, _ := json.Marshal(sandbox.Spec{UID: uid, GID: gid, Path: s.Path, Argv: append([]string{s.Path}, s.Argv...), Dir: s.Dir, Env: s.Env, TmpSize: tmpSize, Ready: true})
	s.Env = []string{sandbox.Env + "=" + string(spec)}
	s.Argv0 = sandbox.Arg
	s.Path, s.Argv = exe, nil
	a := *s.Attr
	a.Credential = nil // the helper drops to the workload's user itself, after mounting
	a.Pdeathsig = 0    // and sets it then (a change of user clears it); Go's check of it reads getppid, 0 in a new PID namespace
	a.Cloneflags |= sandbox.Flags
	s.Attr = &a
	s.Ready = true // the start returns once the helper has started the workload itself
}
