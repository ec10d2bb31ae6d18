package uids

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nexrun/nex/internal/hostusers"
	"github.com/nexrun/nex/internal/testutil"
)

// A workload's process that keeps forking out of every look at /proc dies all the same
// when its UID is given back: the sweep kills by UID (every process of the UID at once),
// not by the PIDs it read. Killed by PID (as the sweep did), it outlived its UID's
// release in 12 runs of this test out of 12 (in one round of three at least), and would
// have shared the UID with its next holder. Processes of other users (another workload's,
// root's) are not touched.
func TestReleaseKillsAProcessThatKeepsForking(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running a process as another user needs root")
	}
	bin := testutil.BuildC(t, "forker", testutil.Forker)
	decoys := testutil.StartDecoys(t, 400) // before reaping: cc's status is its own, and so is theirs
	fifo := filepath.Join(filepath.Dir(bin), "alive")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	reader, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	reapOrphans(t)
	p, err := NewPool(hostusers.UIDRange{First: 300040, Last: 300042}, t.TempDir(), []string{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	// another workload's process, which the kills must not reach (nor root's: the decoys)
	other, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	bystander, err := os.StartProcess("/bin/sleep", []string{"sleep", "600"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
		Setsid: true, Credential: &syscall.Credential{Uid: other, Gid: other, Groups: []uint32{}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bystander.Kill(); _, _ = bystander.Wait() })
	for round := range 3 { // a sweep by PID killed it one time in six, before it forked again
		uid, err := p.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(fifo, int(uid), int(uid)); err != nil {
			t.Fatal(err)
		}
		proc, err := os.StartProcess(bin, []string{bin, fifo}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
			Setsid: true, Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}})
		if err != nil {
			t.Fatal(err)
		}
		_ = proc.Release()
		t.Cleanup(func() { testutil.KillUser(t, uid, reader) })
		// its first copy says it holds the FIFO (until then, a read finds no writer: the end)
		buf := make([]byte, 16)
		_ = reader.SetReadDeadline(time.Time{})
		deadline := time.Now().Add(5 * time.Second)
		for n, _ := reader.Read(buf); n == 0; n, _ = reader.Read(buf) {
			if time.Now().After(deadline) {
				t.Fatal("the forking process did not start")
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // a running attack, thousands of copies on, not its first process
		p.Release(uid)
		p.Wait()
		if !testutil.FIFOClosed(reader, 3*time.Second) { // every copy is gone
			t.Fatalf("round %d: a process of the released UID %d still runs 3 s after the release was done: it shares the UID with its next holder", round, uid)
		}
	}
	for _, pid := range []int{bystander.Pid, decoys} {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err != nil || strings.Contains(string(b), "State:\tZ") {
			t.Errorf("process %d, not of the released UID, was killed with it (%v)", pid, err)
		}
	}
}

// reapOrphans makes this test process the reaper of its orphaned descendants until the test
// ends: the copies of a forking process would otherwise pile up as zombies under PID 1
// (which may not reap them: a container's).
func reapOrphans(t *testing.T) {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, 36 /* PR_SET_CHILD_SUBREAPER */, 1, 0); errno != 0 {
		t.Fatalf("become a subreaper: %v", errno)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			var ws syscall.WaitStatus
			if pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid > 0 {
				continue
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		// the last copies, gone (their FIFO saw its end): reaped before this process
		// stops being their reaper
		for {
			var ws syscall.WaitStatus
			if pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, 36, 0, 0)
	})
}

// A nexlet killed outright leaves its own UID's lock file marked in use, as it leaves its
// workloads'. The next nexlet of the machine takes that UID as its own again (no workload
// ever ran as it), so a range whose every UID was in use still has one for it; a dead
// workload's UID it takes as its own only when no other is left, once it has ended what
// the workload left (its processes could signal the killing thread).
func TestDeadNexletsOwnUIDIsTakenAgain(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a pool takes a UID of its own only as root")
	}
	locks := t.TempDir()
	// 300051 and 300052: two dead nexlets' own
	for uid, lock := range map[uint32]string{300050: "12345\n", 300051: "12345\n" + killerMark + "\n", 300052: "12346\n" + killerMark + "\n"} {
		if err := os.WriteFile(filepath.Join(locks, fmt.Sprint(uid)), []byte(lock), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	core, logs := observer.New(zap.WarnLevel)
	p, err := NewPool(hostusers.UIDRange{First: 300050, Last: 300052}, locks, []string{}, zap.New(core))
	if err != nil {
		t.Fatalf("a range whose every UID a dead nexlet held: %v", err)
	}
	if p.killer != 300051 && p.killer != 300052 {
		t.Fatalf("the pool's own UID is %d, want a dead nexlet's own, 300051 or 300052", p.killer)
	}
	// the other dead nexlet's own is freed without a word: no workload ran as it
	for _, e := range logs.All() {
		if which, ok := e.ContextMap()["which"]; ok && fmt.Sprint(which) != "[300050]" {
			t.Errorf("reclaimed as a dead workload's: %v (%s)", which, e.Message)
		}
	}
	if _, err := os.Stat(filepath.Join(locks, fmt.Sprint(300050+300051+300052-300050-p.killer))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the other dead nexlet's own UID is still marked in use: %v", err)
	}
	got := map[uint32]bool{}
	for range 2 {
		uid, err := p.Acquire()
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		got[uid] = true
	}
	if !got[300050] {
		t.Fatalf("acquired %v: the two UIDs that are not the pool's own include the dead workload's, 300050, swept", got)
	}
	// with no UID left that no workload had, the pool ends what the dead workloads left
	// (by PID: it has no UID to kill with yet), and takes one of theirs
	if err := os.WriteFile(filepath.Join(locks, "300060"), []byte("12345\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := NewPool(hostusers.UIDRange{First: 300060, Last: 300060}, locks, []string{}, zap.NewNop())
	if err != nil || q.killer != 300060 {
		t.Fatalf("a range of one dead workload's UID: %v", err)
	}
	// and where every UID is held, it does not start
	if _, err := NewPool(hostusers.UIDRange{First: 300060, Last: 300060}, locks, []string{}, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "no UID of 300060-300060 is free for the nexlet's own") {
		t.Fatalf("a range whose one UID another pool holds: %v", err)
	}
}

// fuseStuck mounts a FUSE filesystem of its own in a user namespace of its own (argv[1],
// an empty directory), and forks a child that holds the FUSE device too and asks the
// filesystem something, which it never answers: the child waits in the kernel, and
// SIGKILL does not end that wait. It writes "x" to the FIFO argv[2] once the child waits
// (every process holds it: the test sees when all are gone). Exit codes 3 to 6: the
// machine does not let it.
const fuseStuck = `#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fuse.h>
static int put(const char *path, const char *s) {
	int fd = open(path, O_WRONLY);
	int ok = fd >= 0 && write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	if (fd >= 0)
		close(fd);
	return ok;
}
int main(int argc, char **argv) {
	char buf[64], opts[128], path[4096];
	static char req[1 << 20];
	if (argc < 3)
		return 2;
	unsigned uid = getuid(), gid = getgid();
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
		return 3;
	snprintf(buf, sizeof buf, "0 %u 1", uid);
	if (!put("/proc/self/setgroups", "deny") || !put("/proc/self/uid_map", buf))
		return 4;
	snprintf(buf, sizeof buf, "0 %u 1", gid);
	if (!put("/proc/self/gid_map", buf))
		return 5;
	int fd = open("/dev/fuse", O_RDWR);
	snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0", fd);
	if (fd < 0 || mount("nexfuse", argv[1], "fuse", MS_NOSUID | MS_NODEV, opts) != 0)
		return 6;
	ssize_t n = read(fd, req, sizeof req);
	struct fuse_in_header *in = (void *)req;
	if (n < (ssize_t)sizeof *in || in->opcode != FUSE_INIT)
		return 7;
	struct { struct fuse_out_header h; struct fuse_init_out o; } init = {0};
	init.h.len = sizeof init, init.h.unique = in->unique;
	init.o.major = FUSE_KERNEL_VERSION, init.o.minor = FUSE_KERNEL_MINOR_VERSION, init.o.max_write = 4096;
	if (write(fd, &init, sizeof init) != sizeof init)
		return 8;
	int alive = open(argv[2], O_WRONLY); /* every process holds it: the test sees when all are gone */
	if (fork() == 0) { /* holds the device too, and waits in the kernel for an answer */
		struct stat st;
		snprintf(path, sizeof path, "%s/x", argv[1]);
		stat(path, &st);
		_exit(0);
	}
	n = read(fd, req, sizeof req); /* the child's request: never answered */
	if (write(alive, "x", 1) != 1)
		return 9;
	for (;;)
		pause();
}
`

// A workload that leaves a process waiting on its own FUSE filesystem, which no kill
// ends, does not keep its UID out of use: the sweep aborts the UID's FUSE connections
// once its processes outlive their kill by a second. Without that, the UID was kept
// until the nexlet restarted (and found stuck again then).
func TestReleaseEndsAProcessStuckOnItsOwnFUSE(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running a process as another user needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	bin := testutil.BuildC(t, "fusestuck", fuseStuck)
	reapOrphans(t)
	locks := t.TempDir()
	p, err := NewPool(hostusers.UIDRange{First: 300070, Last: 300071}, locks, []string{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	uid, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(filepath.Dir(bin), "mnt")
	fifo := filepath.Join(filepath.Dir(bin), "alive")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{dir, fifo} {
		if err := os.Lchown(f, int(uid), int(uid)); err != nil {
			t.Fatal(err)
		}
	}
	reader, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	proc, err := os.StartProcess(bin, []string{bin, dir, fifo}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
		Setsid: true, Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a test that fails leaves nothing waiting
		abortFUSE(map[uint32]bool{uid: true})
		testutil.KillUser(t, uid, reader)
	})
	exited := make(chan int, 1)
	go func() {
		st, _ := proc.Wait()
		exited <- st.ExitCode()
	}()
	buf := make([]byte, 16)
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := reader.Read(buf); n == 0; n, _ = reader.Read(buf) {
		select {
		case code := <-exited:
			if code >= 3 && code <= 6 {
				t.Skipf("this machine does not let a user mount FUSE in a user namespace of its own (step %d)", code)
			}
			t.Fatalf("the FUSE process exited %d", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the FUSE process did not get stuck")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Release(uid)
	p.Wait()
	if !testutil.FIFOClosed(reader, 3*time.Second) {
		t.Fatalf("a process of the released UID %d still waits on its FUSE filesystem", uid)
	}
	if _, err := os.Stat(filepath.Join(locks, fmt.Sprint(uid))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("UID %d is kept out of use after its release: %v", uid, err)
	}
}
