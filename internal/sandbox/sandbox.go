// Package sandbox is the helper that runs a workload inside a sandbox of its own: started
// by nexlet-native in new mount, IPC and PID namespaces, as root, it mounts a private
// /tmp, /var/tmp and /dev/shm and a /proc of the new PID namespace, drops to the
// workload's user with no_new_privs, and stays as the namespace's init (PID 1): it starts
// the workload as PID 2, reaps what is orphaned inside, and exits with the workload's
// status when the workload's process ends, which ends every process left in the sandbox.
//
// The nex-sandbox binary beside nexlet-native takes the same steps, in C
// (cmd/nex-sandbox/nex-sandbox.c): it starts in about 1.5 ms where a Go program takes
// 6 ms, and its init is one thread where this one's is eight. nexlet-native runs this Go
// helper (itself) only when that binary is missing. Both read the spec Spec.Encode writes.
package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// Arg is the helper's argv[0]; Env carries its Spec (the helper's whole environment,
	// with Env_1 and on for a spec longer than one environment string: Spec.Environ).
	Arg = "nex-sandbox"
	Env = "NEX_SANDBOX_SPEC"
	// Flags are the namespaces a sandboxed process is started in.
	Flags = syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWPID
)

// Private are the directories that are private to each sandbox.
var Private = []string{"/tmp", "/var/tmp", "/dev/shm", "/run/lock"}

// ProbeOK is what a probe prints once the sandbox is set up: its exit status alone is not
// enough, since nexlet-native's reaper (spawn.BecomeSubreaper) may take it first, and the
// probe's wait then fails with ECHILD (a CI run: a probe that passed was taken for failed,
// and workloads went through the slower Go helper).
const ProbeOK = "nex-sandbox: probe ok"

// PTYMax is how many pseudo-terminals a sandbox may hold at once, from a devpts of its own.
const PTYMax = 64

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
	// Ready says the nexlet passed its ready pipe as ReadyFD.
	Ready bool
}

// ReadyFD is the descriptor of the nexlet's ready pipe in the helper: closed once the
// workload's process runs (by the helper's exec of it, or after its init started it).
const ReadyFD = 3

// Asked says whether this process was started as the helper.
func Asked() bool { return filepath.Base(os.Args[0]) == Arg && os.Getenv(Env) != "" }

// Main runs the helper when this process was started as one, and never returns then;
// otherwise it returns at once.
func Main() {
	if !Asked() {
		return
	}
	runtime.LockOSThread() // no_new_privs is a thread's: the one that execs
	s, err := Decode(specFromEnviron())
	if err == nil && s.Ready {
		// the nexlet's ready pipe: closed on exec (the workload does not hold it), or once
		// the workload is started (init)
		syscall.CloseOnExec(ReadyFD)
	}
	ready := err == nil && s.Ready
	if err == nil {
		err = s.enter()
	}
	fmt.Fprintf(os.Stderr, "nex sandbox: %v\n", err)
	if ready { // the workload does not run (an init that started it returns no error)
		_, _ = syscall.Write(ReadyFD, []byte(Report(err)))
	}
	os.Exit(127)
}

// Report is what a helper that could not start the workload writes to the nexlet's ready
// pipe before it exits: "<errno> <message>", the errno of a failed exec (0 otherwise), so
// that the start fails saying why (a file with execute bits that is no program was
// "started", then restarted with exit 127 for good). nex-sandbox writes the same.
func Report(err error) string {
	var errno syscall.Errno
	errors.As(err, &errno)
	return fmt.Sprintf("%d %v", int(errno), err)
}

// ReportedError is the error a helper reported (Report), wrapping its errno.
type ReportedError struct {
	Msg   string
	Errno syscall.Errno
}

func (e *ReportedError) Error() string { return e.Msg }
func (e *ReportedError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// ParseReport reads what a helper reported: nil when it reported nothing.
func ParseReport(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	num, msg, _ := strings.Cut(string(b), " ")
	n, err := strconv.Atoi(num)
	if err != nil {
		return &ReportedError{Msg: string(b)}
	}
	return &ReportedError{Msg: msg, Errno: syscall.Errno(n)}
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
	parent, err := openParent() // while /proc is still the host's
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	if err := syscall.Setgroups(nil); err != nil { // root's groups: neither openAs nor the workload has them
		return err
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
		if len(keeps) > 0 && under(p, []string{keeps[0].path}) {
			// the executable in the kept workdir: its bind shows it. Binding it too would
			// make its mount point as root through the workdir, a tenant's symlinks and all.
			continue
		}
		fd, err := openAs(p, s.UID, s.GID)
		if err != nil {
			return fmt.Errorf("open %s as UID %d: %w", p, s.UID, err)
		}
		keeps = append(keeps, keep{p, fd})
	}
	if err := s.privateTmp(); err != nil {
		return err
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
	if err := ownPTYs(); err != nil {
		return err
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=invisible"); err != nil { // of the new PID namespace
		return fmt.Errorf("a /proc of its own: %w", err)
	}
	if s.Probe {
		fmt.Println(ProbeOK)
		os.Exit(0)
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
	if err := scope(); err != nil {
		return err
	}
	// a change of user clears the parent-death signal: the workload ends with the nexlet
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return err
	}
	if !alive(parent) { // the nexlet died before the signal was set
		os.Exit(137)
	}
	unix.Close(parent)
	if err := os.Chdir(s.Dir); err != nil {
		return err
	}
	if os.Getpid() != 1 { // not a PID namespace of its own: become the workload
		return fmt.Errorf("exec %s: %w", s.Path, syscall.Exec(s.Path, s.Argv, s.Env))
	}
	return s.init()
}

// openAs opens path (O_PATH) with the workload's own rights: its fsuid and fsgid, no
// supplementary groups (dropped before), on this locked thread. What is bound back in the
// sandbox is then what the workload could reach itself, never what a symlink a tenant put
// under /tmp points root at (a file behind a directory the workload may not enter).
func openAs(path string, uid, gid uint32) (int, error) {
	if !setfs(uid, gid) {
		setfs(0, 0)
		return -1, fmt.Errorf("setfsuid refused")
	}
	// no magic link (/proc/<pid>/exe, /proc/<pid>/root): the helper's capabilities other
	// than the filesystem's (CAP_SYS_PTRACE) would let it through where the workload may not go
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_MAGICLINKS})
	if !setfs(0, 0) {
		panic("nex sandbox: could not take root's filesystem rights back")
	}
	return fd, err
}

// setfs sets this thread's fsuid and fsgid, and says whether both took.
func setfs(uid, gid uint32) bool {
	_, _ = unix.SetfsgidRetGid(int(gid))
	_, _ = unix.SetfsuidRetUid(int(uid))
	u, _ := unix.SetfsuidRetUid(-1)
	g, _ := unix.SetfsgidRetGid(-1)
	return u == int(uid) && g == int(gid)
}

// openParent opens the host's /proc entry of this process's parent (the nexlet): inside
// a new PID namespace getppid says 0, so whether the parent is still alive is read there.
func openParent() (int, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return -1, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return -1, fmt.Errorf("/proc/self/stat: %q", b)
	}
	fd, err := unix.Open("/proc/"+f[1], unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the parent's /proc entry: %w", err)
	}
	return fd, nil
}

// alive says whether the process whose /proc entry dir is runs and is not a zombie.
func alive(dir int) bool {
	fd, err := unix.Openat(dir, "stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	buf := make([]byte, 512)
	n, err := unix.Read(fd, buf)
	if err != nil || n <= 0 {
		return false
	}
	f := strings.Fields(string(buf[strings.LastIndexByte(string(buf[:n]), ')')+1 : n]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// forwarded are the signals the init passes on to the workload's process when it left
// the init's process group (setsid): a stop signals the group, and the kernel gives PID 1
// only what it has a handler for. The workload's process in the group has the signal
// already and is not sent it twice.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// init is PID 1 of the sandbox's PID namespace: it starts the workload, reaps every
// process that ends inside (orphans are reparented to it), forwards stop signals, and
// exits with the workload's status (128+N when signal N killed it, as a shell says) when
// the workload's own process ends. Its exit makes the kernel kill every process left in
// the namespace, so a workload's daemons end with it, whatever user they run as.
func (s *Spec) init() error {
	sigs := make(chan os.Signal, 16)
	// handlers, not SIG_IGN: the workload must not inherit an ignored SIGTERM. Reaping on
	// SIGCHLD, not in a goroutine blocked in wait4, keeps the init at fewer threads, which
	// count against the workload's pids limit.
	signal.Notify(sigs, append(forwarded, syscall.SIGCHLD)...)
	// this thread set no_new_privs and forks the workload, which inherits it
	p, err := os.StartProcess(s.Path, s.Argv, &os.ProcAttr{Dir: s.Dir, Env: s.Env, Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		return fmt.Errorf("exec %s: %w", s.Path, err)
	}
	if s.Ready {
		_ = syscall.Close(ReadyFD) // the workload runs: the nexlet's start returns
	}
	_ = os.Stdin.Close() // the workload's stdin is its own
	for {
		for { // reap what ended: orphans reparented here, and the workload
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			if pid == p.Pid && ws.Signaled() {
				os.Exit(128 + int(ws.Signal()))
			}
			if pid == p.Pid && ws.Exited() {
				os.Exit(ws.ExitStatus())
			}
		}
		if sig := <-sigs; sig != syscall.SIGCHLD {
			if pg, err := syscall.Getpgid(p.Pid); err == nil && pg != syscall.Getpgrp() {
				_ = syscall.Kill(p.Pid, sig.(syscall.Signal))
			}
		}
	}
}

// scope puts the sandbox in a Landlock domain of its own that scopes abstract unix
// sockets and signals (Landlock ABI 6, Linux 6.12): its processes may connect to no
// abstract socket and signal no process outside it. Sandboxes share the host's network
// namespace, and with it its abstract sockets: a tenant's jobs passed their /dev/shm
// files, and the memory in them, to a workload of the tenant's that outlived them,
// counted against nothing (a review's walk). An older kernel has no such scope: nothing.
func scope() error {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, 1) // LANDLOCK_CREATE_RULESET_VERSION
	if errno != 0 || int(abi) < 6 {
		return nil
	}
	attr := struct{ handledAccessFS, handledAccessNet, scoped uint64 }{scoped: 1 | 2} // ABSTRACT_UNIX_SOCKET | SIGNAL
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return fmt.Errorf("landlock ruleset: %w", errno)
	}
	defer unix.Close(int(fd))
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return fmt.Errorf("landlock: %w", errno)
	}
	return nil
}

// privateTmp mounts a tmpfs of its own on each of Private (TmpSize each, when set).
func (s *Spec) privateTmp() error {
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
	return nil
}

// ownPTYs mounts a pool of pseudo-terminals of the sandbox's own, of PTYMax: the host's
// (kernel.pty.max, one for the whole machine) was every workload's to use up, logins' and
// every tenant's exec --tty with it. Where devpts cannot be mounted anew, the host's pool
// stays.
func ownPTYs() error {
	st, err := os.Stat("/dev/pts")
	if err != nil || !st.IsDir() ||
		unix.Mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,max="+strconv.Itoa(PTYMax)) != nil {
		return nil
	}
	if err := unix.Mount("/dev/pts/ptmx", "/dev/ptmx", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("a pseudo-terminal pool of its own: %w", err)
	}
	return nil
}
