package testutil

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// SwappingTree makes a tree a walk as root must not leave: under it, s/ holds 50
// directories dNN (each with a file f) and 50 symlinks lNN to victim, and until the test
// ends a goroutine swaps each dNN with its lNN, again and again, atomically
// (renameat2 RENAME_EXCHANGE: a walk by path never meets a missing entry, only a
// directory that has become a symlink by the time it is entered). It returns the tree.
func SwappingTree(t testing.TB, victim string) string {
	t.Helper()
	tree := t.TempDir()
	s := filepath.Join(tree, "s")
	if err := os.Mkdir(s, 0o777); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		d := filepath.Join(s, "d"+strconv.Itoa(i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("tree"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, filepath.Join(s, "l"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for i := range n {
				select {
				case <-done:
					return
				default:
				}
				_ = unix.Renameat2(unix.AT_FDCWD, filepath.Join(s, "d"+strconv.Itoa(i)), unix.AT_FDCWD, filepath.Join(s, "l"+strconv.Itoa(i)), unix.RENAME_EXCHANGE)
			}
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
	return tree
}
