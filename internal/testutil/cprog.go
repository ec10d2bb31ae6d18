package testutil

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BuildC compiles code, a C program, into an executable in a new directory that every
// user may enter and run (workloads run as users of their own). It skips the test where
// there is no C compiler and fails it where the program does not compile.
func BuildC(t testing.TB, name, code string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build the process with")
	}
	dir := t.TempDir()
	src, bin := filepath.Join(dir, name+".c"), filepath.Join(dir, name)
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-pthread", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v %s", err, out)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} { // the test's directories are 0700
		_ = os.Chmod(d, 0o755)
	}
	return bin
}

// Forker is an attack on a sweep of a user's processes by PID: it leaves its session
// (setsid), and keeps forking, each copy ending once it has started the next, so that no
// PID a look through /proc lists is still its own when its status is read. Every copy
// holds the FIFO named by its argument open: whoever reads it sees the end of the file
// only once the last copy is gone (the first copy writes its UID to it, and a newline). A copy ends by itself
// after 30 s, so that a test that fails does not leave it running.
const Forker = `#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
	time_t end = time(0) + 30;
	int fd = argc > 1 ? open(argv[1], O_WRONLY) : -1;
	if (fd < 0 || dprintf(fd, "%u\n", (unsigned)getuid()) < 2)
		return 1;
	if (fork() != 0) /* a process group leader cannot leave its session: its child can */
		_exit(0);
	setsid();
	for (;;) {
		pid_t pid = fork();
		if (pid > 0 || time(0) > end)
			_exit(0);
	}
}
`

// decoys starts N processes that wait (argv[1]), and waits too; on SIGTERM it kills and
// reaps them, and exits.
const decoys = `#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile sig_atomic_t done;
static void stop(int sig) { (void)sig; done = 1; }
int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 0;
	pid_t *kids = calloc(n > 0 ? n : 1, sizeof *kids);
	signal(SIGTERM, stop);
	for (int i = 0; i < n; i++)
		if ((kids[i] = fork()) == 0)
			for (;;)
				pause();
	while (!done)
		pause();
	for (int i = 0; i < n; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
	while (wait(0) > 0)
		;
	return 0;
}
`

// StartDecoys runs n processes of this user that wait, until the test ends: a look
// through /proc then takes as long as on a node that runs a few hundred. It returns the
// PID of their parent, which waits too.
func StartDecoys(t testing.TB, n int) int {
	t.Helper()
	bin := BuildC(t, "decoys", decoys)
	proc, err := os.StartProcess(bin, []string{bin, strconv.Itoa(n)}, &os.ProcAttr{Sys: &syscall.SysProcAttr{Setpgid: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = proc.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = proc.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return proc.Pid
}

// FIFOClosed says whether every writer of fifo (opened for reading, non-blocking) is gone
// within wait (at least 10 ms: a deadline already past fails a read unread). A process
// that holds a FIFO open, and every copy it forks, is gone once the reader sees its end.
func FIFOClosed(fifo *os.File, wait time.Duration) bool {
	_ = fifo.SetReadDeadline(time.Now().Add(max(wait, 10*time.Millisecond)))
	buf := make([]byte, 64)
	for {
		if _, err := fifo.Read(buf); err != nil {
			return errors.Is(err, io.EOF)
		}
	}
}

// KillUser ends every process of uid with kill -9 -1 run as that user (which a process
// that keeps forking does not escape), and waits for the FIFO they hold to see its end:
// what a test that failed leaves.
func KillUser(t testing.TB, uid uint32, fifo *os.File) {
	if FIFOClosed(fifo, 0) {
		return
	}
	cmd := exec.Command("/bin/kill", "-9", "-1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	_ = cmd.Run() // its status may go to a reaper of the test's
	if !FIFOClosed(fifo, 5*time.Second) {
		t.Errorf("the processes of UID %d outlived kill -9 -1 as that user", uid)
	}
}
