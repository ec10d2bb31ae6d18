package asuser

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNotExecutable is returned for a path the workload's user may not execute.
var ErrNotExecutable = errors.New("not an executable file")

// Denied says in a sentence that the workload's user may not do what err refused.
func Denied(what, path string, err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w %s %s: permission denied (the nexlet acts as the workload's own user)", ErrNotPermitted, what, path)
	}
	return err
}

// ErrThroughProc is a path refused because it goes through one of /proc's links into a
// process: opening such a link checks the mode of the file it leads to, not the
// directories above it, so through /dev/stdout a tenant read root's node log (nexd's
// output, the nexlet's stdout) from a 0700 directory (a review).
var ErrThroughProc = errors.New("it goes through one of /proc's links into a process (/dev/fd/N, /dev/std*, /proc/*/fd/N, /proc/*/root, /proc/*/cwd), or through too many symlinks")

// OpenNoProcLinks opens path with flags (and O_CLOEXEC) as the calling thread's
// filesystem identity, refusing a path through one of /proc's links (ErrThroughProc).
func OpenNoProcLinks(path string, flags int) (*os.File, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_NO_MAGICLINKS})
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is refused: %w", path, ErrThroughProc)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// CheckExecutable checks, as the workload's user, that path is a file it may execute.
func CheckExecutable(id *Identity, path string) error {
	return Do(id, func() error {
		// through one of /proc's links the nexlet's own open files were looked at, their
		// directories unchecked (a review)
		f, err := OpenNoProcLinks(path, unix.O_PATH)
		if errors.Is(err, ErrThroughProc) {
			return fmt.Errorf("%w: %v", ErrNotExecutable, err)
		}
		if err == nil {
			f.Close()
		}
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrNotExecutable, path, Denied("see", path, err))
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%w: %s (mode %s)", ErrNotExecutable, path, st.Mode())
		}
		if err := unix.Faccessat(unix.AT_FDCWD, path, unix.X_OK, unix.AT_EACCESS); err != nil {
			return fmt.Errorf("%w: %s (mode %s): %v", ErrNotExecutable, path, st.Mode(), Denied("execute", path, err))
		}
		return nil
	})
}

// ExplainExecError says what a bare "no such file or directory" or "permission denied"
// from exec means when the file is there: the interpreter its first line names (#!) is
// missing, or no program its user may run, or the line ends in a carriage return; and what
// "exec format error" means: the file is no program (a script without #!).
func ExplainExecError(id *Identity, path string, err error) error {
	if errors.Is(err, syscall.ENOEXEC) {
		return fmt.Errorf("%w (not a program this machine can run: a script needs a first line #! naming its interpreter)", err)
	}
	if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EACCES) {
		return err
	}
	head := make([]byte, 256)
	n := 0
	if Do(id, func() error { // its first line, as the workload's user may read it
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		n, _ = f.Read(head)
		return nil
	}) != nil {
		return err
	}
	line, _, _ := strings.Cut(string(head[:n]), "\n")
	if !strings.HasPrefix(line, "#!") {
		return err
	}
	interp := strings.Fields(strings.TrimPrefix(line, "#!"))
	switch {
	case len(interp) == 0:
		return fmt.Errorf("its first line (#!) names no interpreter: %w", err)
	case strings.HasSuffix(line, "\r"): // the kernel looks for "/bin/sh\r"
		return fmt.Errorf("its first line (%s) ends in a carriage return (DOS line endings: convert the file to Unix ones): %w", strings.TrimSpace(line), err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("the interpreter %s named in its first line (%s) is not a program the workload's user may run (a directory, or not executable): %w", interp[0], strings.TrimSpace(line), err)
	}
	return fmt.Errorf("the interpreter %s named in its first line (%s) was not found (a sandboxed workload has a /tmp, /var/tmp and /dev/shm of its own): %w", interp[0], strings.TrimSpace(line), err)
}
