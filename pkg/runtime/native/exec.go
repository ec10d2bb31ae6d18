package native

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
)

// execPath is where a bare command name is looked for (the workloads' own PATH).
var execPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// Exec runs req.Argv beside running workload id, as a health check's exec runs: as the
// workload's user, in its sandbox, workdir, environment and cgroup. Each output stream
// is kept up to v1.MaxExecOutput bytes; the command's process group is killed when
// req.Timeout passes.
func (d *Driver) Exec(ctx context.Context, id string, req v1.ExecRequest) (v1.ExecReply, error) {
	h, err := d.get(id)
	if err != nil {
		return v1.ExecReply{}, err
	}
	h.mu.Lock()
	running := h.pid > 0
	h.mu.Unlock()
	if !running {
		return v1.ExecReply{}, v1.Errorf(v1.CodeConflict, "workload %s runs no process now (%s): nothing to run a command beside", id, h.info().State)
	}
	argv := append([]string(nil), req.Argv...)
	if !strings.Contains(argv[0], "/") {
		for _, dir := range execPath {
			if p := filepath.Join(dir, argv[0]); spawn.ExecutableFile(p) {
				argv[0] = p
				break
			}
		}
	}
	if !filepath.IsAbs(argv[0]) || filepath.Clean(argv[0]) != argv[0] { // 127, as a shell says of a command it cannot find
		return v1.ExecReply{ExitCode: 127, Stderr: []byte("nex exec: " + req.Argv[0] + ": not found in " + strings.Join(execPath, ":") + " (give a clean absolute path: no . or .. parts, no //)\n")}, nil
	}
	var mu sync.Mutex
	stdout, stderr := spawn.LimitedBuffer{Max: v1.MaxExecOutput}, spawn.LimitedBuffer{Max: v1.MaxExecOutput}
	outw := spawn.WriterFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return stdout.Write(p) })
	var tty, master *os.File
	ttyRead := make(chan struct{})
	close(ttyRead)
	if req.TTY {
		var owner *[2]uint32
		if uid, gid, ok := h.user(); ok {
			owner = &[2]uint32{uid, gid}
		}
		m, slave, err := spawn.OpenPTY(owner)
		if err != nil {
			return v1.ExecReply{}, v1.Errorf(v1.CodeInternal, "exec: %v", err)
		}
		defer m.Close()
		tty, master, ttyRead = slave, m, make(chan struct{})
		go func() { // a terminal's output, until its last holder closes it (EIO)
			defer close(ttyRead)
			_, _ = io.Copy(outw, master)
		}()
	}
	tctx, cancel := context.WithTimeout(ctx, time.Duration(req.Timeout))
	defer cancel()
	ws, err := h.runBeside(tctx, argv, outw,
		spawn.WriterFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return stderr.Write(p) }), tty)
	if err != nil {
		return v1.ExecReply{ExitCode: 127, Stderr: []byte("nex exec: " + argv[0] + ": " + err.Error() + "\n")}, nil
	}
	select { // what the command wrote to its terminal last (a daemon it left holding it is not waited for)
	case <-ttyRead:
	case <-time.After(spawn.OutputDrain):
		_ = master.Close()
		<-ttyRead
	}
	mu.Lock()
	defer mu.Unlock()
	return v1.ExecReply{ExitCode: spawn.StatusCode(ws), Stdout: stdout.Bytes(), Stderr: stderr.Bytes(),
		Truncated: stdout.Truncated || stderr.Truncated, TimedOut: tctx.Err() != nil && ctx.Err() == nil}, nil
}
