package fdwalk_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexrun/nex/internal/fdwalk"
	"github.com/nexrun/nex/internal/testutil"
)

// A walk never leaves its tree, while directories in it are swapped for symlinks to
// another (filepath.WalkDir went through such a symlink within a few walks), and it
// reports each symlink as a symlink.
func TestWalkStaysInItsTree(t *testing.T) {
	victim := t.TempDir()
	if err := os.WriteFile(filepath.Join(victim, "secret"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree := testutil.SwappingTree(t, victim)
	links := 0
	for range 200 {
		err := fdwalk.Walk(tree, func(e *fdwalk.Entry) error {
			if strings.HasSuffix(e.Path, "/secret") {
				t.Fatalf("the walk reached %s, outside its tree", e.Path)
			}
			if e.Stat.Mode&0o170000 == 0o120000 {
				links++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if links == 0 {
		t.Fatal("no symlink seen: the tree was not walked")
	}
}

// A tree deeper than MaxDepth is an error, not a walk without end.
func TestWalkBoundedInDepth(t *testing.T) {
	dir := t.TempDir()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(d.Fd())
	for range fdwalk.MaxDepth + 1 {
		if err := mkdirat(fd, "d"); err != nil {
			t.Fatal(err)
		}
		next, err := openat(fd, "d")
		if err != nil {
			t.Fatal(err)
		}
		if fd != int(d.Fd()) {
			closeFD(fd)
		}
		fd = next
	}
	closeFD(fd)
	d.Close()
	seen := 0
	err = fdwalk.Walk(dir, func(*fdwalk.Entry) error { seen++; return nil })
	if !errors.Is(err, fdwalk.ErrTooDeep) || seen < fdwalk.MaxDepth {
		t.Fatalf("a walk %d deep: %v after %d entries", fdwalk.MaxDepth+1, err, seen)
	}
}
