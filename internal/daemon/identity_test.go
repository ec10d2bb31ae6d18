package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestIdentityIsKept(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadIdentity("", dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadIdentity("", dir)
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := a.PublicKey()
	pb, _ := b.PublicKey()
	if pa != pb || !strings.HasPrefix(pa, "N") {
		t.Fatalf("identity changed across restarts: %s %s", pa, pb)
	}
	st, _ := os.Stat(filepath.Join(dir, "node.seed"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("seed file mode %v", st.Mode())
	}
}

func TestIdentityFromSeed(t *testing.T) {
	kp, _ := nkeys.CreateServer()
	seed, _ := kp.Seed()
	want, _ := kp.PublicKey()
	file := filepath.Join(t.TempDir(), "seed")
	os.WriteFile(file, seed, 0o600)
	for _, in := range []string{string(seed), file} {
		got, err := LoadIdentity(in, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if p, _ := got.PublicKey(); p != want {
			t.Fatalf("got %s want %s", p, want)
		}
	}
	user, _ := nkeys.CreateUser()
	useed, _ := user.Seed()
	for _, bad := range []string{string(useed), "SNOTASEED", filepath.Join(t.TempDir(), "missing")} {
		if _, err := LoadIdentity(bad, t.TempDir()); !errors.Is(err, ErrBadSeed) {
			t.Errorf("seed %q: want ErrBadSeed, got %v", bad, err)
		}
	}
}
