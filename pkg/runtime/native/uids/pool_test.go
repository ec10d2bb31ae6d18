package uids

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/hostusers"
	"github.com/nexrun/nex/internal/testutil"
)

// Two nexlets of one machine never hold the same UID; a UID comes back only after its
// release is done.
func TestUIDPoolsShareTheMachine(t *testing.T) {
	locks := t.TempDir()
	r := hostusers.UIDRange{First: 300000, Last: 300004} // as root, each pool takes one for its own
	a, err := NewPool(r, locks, []string{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewPool(r, locks, []string{}, zap.NewNop())
	got := map[uint32]bool{}
	for range 2 {
		uid, err := a.Acquire()
		if err != nil || got[uid] || uid < r.First || uid > r.Last {
			t.Fatalf("acquire: %d %v (have %v)", uid, err, got)
		}
		got[uid] = true
	}
	last, err := b.Acquire()
	if err != nil || got[last] {
		t.Fatalf("the other pool: %d %v (the first holds %v)", last, err, got)
	}
	if _, err := a.Acquire(); !errors.Is(err, ErrNoUIDs) {
		t.Fatalf("a full range: %v", err)
	}
	b.Release(last)
	b.Wait()
	if uid, err := a.Acquire(); err != nil || uid != last {
		t.Fatalf("after the release: %d %v, want %d", uid, err, last)
	}
}

// A UID whose holder died before its release (kill -9) is swept by the next nexlet of the
// machine when it starts, and by an acquire that finds it so: the files it left in the
// temporary directories go.
func TestUIDSweptAfterAHolderDied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
	locks, tmp := t.TempDir(), t.TempDir()
	r := hostusers.UIDRange{First: 300010, Last: 300011} // 300011: the pool's own
	left := filepath.Join(tmp, "left-behind")
	if err := os.WriteFile(left, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(left, 300010, 300010); err != nil {
		t.Fatal(err)
	}
	// a finished workload's workdir, kept after its nexlet died: the UID's still
	workdir := filepath.Join(t.TempDir(), "workdir")
	if err := os.MkdirAll(filepath.Join(workdir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ChownTree(workdir, 300010, 300010); err != nil {
		t.Fatal(err)
	}
	// the dead holder's lock file still says "in use", and names the workdir
	if err := os.WriteFile(filepath.Join(locks, "300010"), []byte("12345\n"+workdir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ := NewPool(r, locks, []string{tmp}, zap.NewNop())
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the last holder's file is still there after a new nexlet started: %v", err)
	}
	for _, dir := range []string{workdir, filepath.Join(workdir, "sub")} {
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err != nil || st.Uid != 0 || st.Gid != 0 {
			t.Fatalf("%s after its UID was reclaimed: uid %d gid %d (%v), want root's: the UID's next workload could read it", dir, st.Uid, st.Gid, err)
		}
	}
	// the same, found at acquire: a holder that died after this pool started
	uid, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(left, int(uid), int(uid)); err != nil {
		t.Fatal(err)
	}
	if err := ChownTree(workdir, uid, uid); err != nil {
		t.Fatal(err)
	}
	p.Record(uid, workdir)
	p.mu.Lock()
	f := p.held[uid]
	delete(p.held, uid)
	p.mu.Unlock()
	f.Close() // dies holding it: the lock file still says in use
	if _, err := p.Acquire(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the last holder's file is still there after an acquire: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(workdir, &st); err != nil || st.Uid != 0 {
		t.Fatalf("the recorded workdir is still UID %d's after an acquire (%v)", st.Uid, err)
	}
}

// Releases swept together: every process still running as any of the UIDs given back
// (a daemon out of its workload's process group, which only the sweep finds) is killed,
// and every file they left in the temporary directories removed, before any of the UIDs
// can be taken again.
func TestReleaseSweepsEveryUIDItWasGiven(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running a process as another user needs root")
	}
	locks, tmp := t.TempDir(), t.TempDir()
	r := hostusers.UIDRange{First: 300020, Last: 300025} // one is the pool's own
	p, err := NewPool(r, locks, []string{tmp}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	var procs []*os.Process
	var files []string
	for range 5 {
		uid, err := p.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		proc, err := os.StartProcess("/bin/sleep", []string{"sleep", "600"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
			Setsid: true, Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = proc.Kill(); _, _ = proc.Wait() })
		procs = append(procs, proc)
		f := filepath.Join(tmp, fmt.Sprint("left-by-", uid))
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(f, int(uid), int(uid)); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		p.Release(uid)
	}
	p.Wait()
	for i, proc := range procs {
		// killed by the sweep: the signal it died of says so (this test is its parent)
		var ws syscall.WaitStatus
		deadline := time.Now().Add(5 * time.Second)
		pid, err := syscall.Wait4(proc.Pid, &ws, syscall.WNOHANG, nil)
		for pid == 0 && err == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			pid, err = syscall.Wait4(proc.Pid, &ws, syscall.WNOHANG, nil)
		}
		if pid != proc.Pid || ws.Signal() != syscall.SIGKILL {
			t.Errorf("process %d of a released UID: wait %d %v %v, want killed", i, pid, ws, err)
		}
		if _, err := os.Lstat(files[i]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after its UID was released: %v", files[i], err)
		}
	}
	if entries, _ := os.ReadDir(locks); len(entries) != 1 { // the pool's own
		t.Errorf("lock files left after every UID was released: %d, want the pool's own", len(entries))
	}
	p.Close() // the nexlet stops: its own UID goes too
	if entries, _ := os.ReadDir(locks); len(entries) != 0 {
		t.Errorf("lock files left after the pool was closed: %d", len(entries))
	}
}

// A process whose first thread exited shows as a zombie while its other threads run on:
// the sweep kills it all the same (a zombie is left alone only when no thread is left),
// else the UID's next holder would share it with the last one's threads.
func TestReleaseSweepsAProcessWhoseFirstThreadExited(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running a process as another user needs root")
	}
	bin := testutil.BuildC(t, "lead", "#include <pthread.h>\n#include <unistd.h>\nstatic void *spin(void *a) { (void)a; for (;;) pause(); return 0; }\n"+
		"int main(void) { pthread_t t; pthread_create(&t, 0, spin, 0); pthread_exit(0); }\n")
	p, err := NewPool(hostusers.UIDRange{First: 300030, Last: 300031}, t.TempDir(), []string{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	uid, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	proc, err := os.StartProcess(bin, []string{bin}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
		Setsid: true, Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Kill(); _, _ = proc.Wait() })
	status := fmt.Sprintf("/proc/%d/status", proc.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for b, _ := os.ReadFile(status); !strings.Contains(string(b), "State:\tZ"); b, _ = os.ReadFile(status) {
		if time.Now().After(deadline) {
			t.Fatalf("its first thread did not exit:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Release(uid)
	p.Wait()
	var ws syscall.WaitStatus
	pid, err := syscall.Wait4(proc.Pid, &ws, syscall.WNOHANG, nil)
	for pid == 0 && err == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		pid, err = syscall.Wait4(proc.Pid, &ws, syscall.WNOHANG, nil)
	}
	if pid != proc.Pid || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the process of the released UID (its first thread gone, one running): wait %d %v %v, want killed", pid, ws, err)
	}
}

// BenchmarkRelease100 gives 100 UIDs back at once and waits until they are free again:
// what a node's releases cost when jobs end at a high rate (each release looks through
// every process of the machine and the temporary directories).
func BenchmarkRelease100(b *testing.B) {
	p, err := NewPool(hostusers.UIDRange{First: 310000, Last: 310100}, b.TempDir(), nil, zap.NewNop()) // and the pool's own
	if err != nil {
		b.Fatal(err)
	}
	uids := make([]uint32, 100)
	for b.Loop() {
		for i := range uids {
			if uids[i], err = p.Acquire(); err != nil {
				b.Fatal(err)
			}
		}
		for _, uid := range uids {
			p.Release(uid)
		}
		p.Wait()
	}
}

// A workload's System V shared memory, semaphores and message queues go with its UID's
// release: the UID's next holder could otherwise attach them, as it could read files left
// in /tmp (a sandboxed workload's go with its IPC namespace; an unsandboxed one's stayed).
func TestReleaseRemovesTheUIDsIPCObjects(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running a process as another user needs root")
	}
	ipcmk, err := exec.LookPath("ipcmk")
	if err != nil {
		t.Skip("no ipcmk (util-linux) to make the objects with")
	}
	p, err := NewPool(hostusers.UIDRange{First: 300080, Last: 300081}, t.TempDir(), []string{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	uid, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeIPC(map[uint32]bool{uid: true}) })
	for _, kind := range []string{"-M 4096", "-S 2", "-Q"} {
		cmd := exec.Command(ipcmk, strings.Fields(kind)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ipcmk %s as %d: %v %s", kind, uid, err, out)
		}
	}
	if n := ipcObjectsOf(uid); n != 3 {
		t.Fatalf("%d IPC objects of UID %d, want the 3 made", n, uid)
	}
	p.Release(uid)
	p.Wait()
	if n := ipcObjectsOf(uid); n != 0 {
		t.Fatalf("%d IPC objects of UID %d are left after its release, for its next holder", n, uid)
	}
}

// ipcObjectsOf counts the System V IPC objects whose owner is uid.
func ipcObjectsOf(uid uint32) int {
	n := 0
	for _, f := range []string{"shm", "sem", "msg"} {
		b, _ := os.ReadFile("/proc/sysvipc/" + f)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		col := slices.Index(strings.Fields(lines[0]), "uid")
		for _, line := range lines[1:] {
			if fields := strings.Fields(line); col >= 0 && len(fields) > col && fields[col] == fmt.Sprint(uid) {
				n++
			}
		}
	}
	return n
}

// ChownTree gives a workload's tree to its new user while the workload swaps its
// directories for symlinks to root's files, and hard-links one of them into the tree:
// root's files stay root's (a review had /etc/shadow chowned so, 5 runs of 5).
func TestChownTreeStaysInItsTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	victim := t.TempDir()
	secret := filepath.Join(victim, "shadow")
	if err := os.WriteFile(secret, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree := testutil.SwappingTree(t, victim)
	if err := os.Link(secret, filepath.Join(tree, "hardlink")); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := ChownTree(tree, 300077, 300077); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(secret, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 || st.Gid != 0 {
			t.Fatalf("after %d chowns of the tree, root's file outside it is %d:%d", i+1, st.Uid, st.Gid)
		}
		if err := syscall.Stat(victim, &st); err != nil || st.Uid != 0 {
			t.Fatalf("after %d chowns of the tree, the directory outside it is UID %d (%v)", i+1, st.Uid, err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(tree, "s"), &st); err != nil || st.Uid != 300077 {
		t.Fatalf("the tree's own directory was not given to the user: UID %d (%v)", st.Uid, err)
	}
}
