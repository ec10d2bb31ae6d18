package uids

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/hostusers"
)

// Two nexlets of one machine never hold the same UID; a UID comes back only after its
// release is done.
func TestUIDPoolsShareTheMachine(t *testing.T) {
	locks := t.TempDir()
	r := hostusers.UIDRange{First: 300000, Last: 300002}
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
	r := hostusers.UIDRange{First: 300010, Last: 300010}
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
