// Package spawn starts the native runtime's processes and waits for them without an OS
// thread each: fork and exec with no_new_privs, into a workload's cgroup, optionally as
// the sandbox helper; the subreaper that reaps every child on SIGCHLD; one epoll set that
// reads every output pipe; pseudo-terminals for exec; and signalling a process group. It
// owns the reaper's registry of started processes (and its lock) and the epoll set (and
// its lock).
//
// A workload process is waited for without an OS thread of its own. In nexlet-native the
// reaper (BecomeSubreaper) reaps every child on SIGCHLD and hands each status to its
// supervisor; used as a library, the runtime holds a pidfd per process in Go's network
// poller and reaps the process when it turns readable. os/exec's Wait, which it used
// before, blocks a thread in wait4 per process: 1,008 threads at 1,000 services. Output
// pipes are read through one epoll set of the runtime's own (outpoll.go).
package spawn

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/nexrun/nex/internal/sandbox"
	"github.com/nexrun/nex/pkg/runtime/native/cgroups"
)

// prSetNoNewPrivs is PR_SET_NO_NEW_PRIVS of prctl(2).
const prSetNoNewPrivs = 38

// Spec says how to start one process.
type Spec struct {
	Path   string
	Argv0  string   // argv[0] when not path
	Argv   []string // after argv[0]
	Dir    string
	Env    []string
	Attr   *syscall.SysProcAttr
	Stdin  io.Reader // nil: /dev/null
	Stdout io.Writer // nil: /dev/null
	Stderr io.Writer // nil: /dev/null
	// TTY, when set, is the process's stdin, stdout, stderr and controlling terminal (a
	// pseudo-terminal's slave): Stdin, Stdout and Stderr are not used, and the process
	// leads a session of its own.
	TTY *os.File
	// Ready passes the process a pipe as fd 3 (sandbox.ReadyFD) and has Start return only
	// once the process closed it (the sandbox helper, once the workload itself runs) or
	// ended, or readyWait passed.
	Ready  bool
	Cgroup *cgroups.Cgroup // when set, the process starts in it
	// NoNewPrivs starts the process with no_new_privs: no exec of it (a setuid-root
	// program, a file with capabilities) gains privileges.
	NoNewPrivs bool
}

// Child is a started process: its pid, its pidfd and the copiers of its output.
type Child struct {
	Pid    int
	exited chan syscall.WaitStatus // its status, from the reaper; nil when it does not run
	pidfd  *os.File                // without the reaper; nil where the kernel has no pidfds: wait4 blocks a thread then
	outs   []*outPipe              // its output pipes, read through the nexlet's epoll set
	feeds  []*os.File              // parent end of the stdin pipe
}

// OutputDrain is how long output is read after a process ended: a grandchild that holds
// the pipes open must not hold up the exit forever.
const OutputDrain = 2 * time.Second

// Start starts a process as s says and registers it as the runtime's (the orphan reaper
// leaves it alone).
func Start(s Spec) (*Child, error) {
	c := &Child{}
	var theirs []*os.File // the child's ends, closed here once it has them
	var reads []int       // parent ends of the output pipes, until the poller has them
	var outs []io.Writer
	fail := func(err error) (*Child, error) {
		for _, f := range append(theirs, c.feeds...) {
			_ = f.Close()
		}
		for _, fd := range reads {
			_ = syscall.Close(fd)
		}
		return nil, err
	}
	poller, err := theOutPoller()
	if err != nil {
		return nil, err
	}
	files := make([]*os.File, 3)
	if s.TTY != nil {
		files[0], files[1], files[2] = s.TTY, s.TTY, s.TTY
		attr := syscall.SysProcAttr{}
		if s.Attr != nil {
			attr = *s.Attr
		}
		attr.Setsid, attr.Setctty, attr.Ctty, attr.Setpgid = true, true, 0, false // a session leader leads its group too
		s.Attr = &attr
		s.Stdin, s.Stdout, s.Stderr = nil, nil, nil
	} else if s.Stdin == nil {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return fail(err)
		}
		files[0], theirs = f, append(theirs, f)
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		files[0], theirs, c.feeds = r, append(theirs, r), append(c.feeds, w)
	}
	for i, w := range []io.Writer{s.Stdout, s.Stderr} {
		if s.TTY != nil {
			break
		}
		if w == nil {
			f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				return fail(err)
			}
			files[i+1], theirs = f, append(theirs, f)
			continue
		}
		r, pw, err := outputPipe()
		if err != nil {
			return fail(err)
		}
		files[i+1], theirs, reads, outs = pw, append(theirs, pw), append(reads, r), append(outs, w)
	}
	var readyR *os.File
	if s.Ready {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		files, readyR, theirs = append(files, w), r, append(theirs, w)
	}
	if err := c.start(s, files); err != nil {
		if readyR != nil {
			_ = readyR.Close()
		}
		return fail(err)
	}
	for _, f := range theirs {
		_ = f.Close()
	}
	if readyR != nil {
		if err := waitReady(readyR); err != nil {
			c.Wait() // the helper exits (127) once it has said why
			return fail(err)
		}
	}
	for i, fd := range reads {
		op, err := poller.watch(fd, outs[i])
		if err != nil { // cannot happen for a pipe; its writer then gets EPIPE
			_ = syscall.Close(fd)
			continue
		}
		c.outs = append(c.outs, op)
	}
	for _, f := range c.feeds {
		go func() {
			_, _ = io.Copy(f, s.Stdin)
			_ = f.Close()
		}()
	}
	return c, nil
}

// readyWait bounds how long a start waits for its sandbox helper to start the workload:
// the helper's mounts and its exec take milliseconds, seconds on a machine under load.
const readyWait = 10 * time.Second

// waitReady waits until the other end of r is closed (EOF: the process closed it, or
// ended), or readyWait passed, and closes r. A drain started a service's new copy and
// stopped the old one before the sandbox had started the new one's process: for a moment
// neither ran (a CI run, under load). What the helper wrote there before it ended is why
// it could not start the workload (sandbox.Report): returned as the error.
func waitReady(r *os.File) error {
	_ = r.SetReadDeadline(time.Now().Add(readyWait))
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	_ = r.Close()
	return sandbox.ParseReport(b)
}

// start starts the process of s with files as its stdin, stdout and stderr, inside s's
// cgroup when it has one, and registers it with the reaper where it runs (else it keeps
// a pidfd for it).
func (c *Child) start(s Spec, files []*os.File) error {
	if s.NoNewPrivs {
		// Go forks on the calling thread, and a child inherits no_new_privs from the
		// thread that forked it: set it on this one, held for the fork. (Set once on the
		// process it stays on the one thread that called prctl, and most workloads were
		// started from others.) The nexlet never needs to gain privileges by exec either.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); errno != 0 {
			return fmt.Errorf("set no_new_privs: %w", errno)
		}
	}
	pidfd := -1
	attr := syscall.SysProcAttr{}
	if s.Attr != nil {
		attr = *s.Attr
	}
	reaped := reaping.Load()
	if reaped {
		c.exited = make(chan syscall.WaitStatus, 1)
	} else {
		attr.PidFD = &pidfd
	}
	pa := &os.ProcAttr{Dir: s.Dir, Env: s.Env, Files: files, Sys: &attr}
	argv := append([]string{cmp.Or(s.Argv0, s.Path)}, s.Argv...)
	var p *os.Process
	start := func() error {
		scanMu.RLock() // the reaper must not reap between the start and the registration
		defer scanMu.RUnlock()
		var err error
		if p, err = os.StartProcess(s.Path, argv, pa); err != nil {
			return err
		}
		if reaped {
			started.Store(p.Pid, c.exited)
		}
		return nil
	}
	var err error
	if s.Cgroup != nil {
		err = s.Cgroup.Enter(&attr, start)
	} else {
		err = start()
	}
	if err != nil {
		return err
	}
	c.Pid = p.Pid
	_ = p.Release() // its own pidfd (a duplicate of ours, if any) goes
	if pidfd >= 0 {
		_ = syscall.SetNonblock(pidfd, true) // into the poller
		c.pidfd = os.NewFile(uintptr(pidfd), "pidfd")
	}
	return nil
}

// outputPipe makes a pipe for a process's output: the read end a non-blocking descriptor
// for the epoll set, the write end (blocking) for the process.
func outputPipe() (r int, w *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return -1, nil, err
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		_ = syscall.Close(fds[0])
		_ = syscall.Close(fds[1])
		return -1, nil, err
	}
	return fds[0], os.NewFile(uintptr(fds[1]), "|1"), nil
}

// Wait reaps the process, reads what is left of its output (for at most OutputDrain),
// and returns its status.
func (c *Child) Wait() syscall.WaitStatus {
	var ws syscall.WaitStatus
	if c.exited != nil {
		ws = <-c.exited // the reaper has reaped it
	} else if c.pidfd != nil {
		rc, err := c.pidfd.SyscallConn()
		if err == nil {
			err = rc.Read(func(uintptr) bool {
				pid, err := syscall.Wait4(c.Pid, &ws, syscall.WNOHANG, nil)
				return pid == c.Pid || (err != nil && !errors.Is(err, syscall.EINTR))
			})
		}
		_ = c.pidfd.Close()
		if err != nil { // not pollable after all: wait the plain way
			c.pidfd = nil
		}
	}
	if c.exited == nil && c.pidfd == nil {
		for {
			if _, err := syscall.Wait4(c.Pid, &ws, 0, nil); !errors.Is(err, syscall.EINTR) {
				break
			}
		}
	}
	for _, f := range c.feeds {
		_ = f.Close() // a writer blocked on a process that never read ends
	}
	t := time.NewTimer(OutputDrain)
	defer t.Stop()
	expired := false
	for _, op := range c.outs {
		if !expired {
			select {
			case <-op.done:
				continue
			case <-t.C:
				expired = true
			}
		}
		op.close() // a grandchild still holds the pipe: stop reading it
	}
	return ws
}

// StatusCode is a process's exit code, or 128+N when signal N killed it.
func StatusCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
