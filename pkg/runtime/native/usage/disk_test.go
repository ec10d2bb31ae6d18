package usage

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/fdwalk"
	"github.com/nexrun/nex/internal/testutil"
)

// A workload that swaps a directory of its workdir for a symlink does not have its
// measure take in what the symlink points to (root measured a tree the workload may
// not read, and its info gave the figure).
func TestDiskStaysInItsTree(t *testing.T) {
	victim := t.TempDir()
	if err := os.WriteFile(filepath.Join(victim, "big"), bytes.Repeat([]byte{1}, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	tree := testutil.SwappingTree(t, victim)
	for i := range 100 {
		used, err := Disk(tree)
		if err != nil {
			t.Fatal(err)
		}
		if used > 4<<20 { // the tree itself: about 150 entries of 4 KiB
			t.Fatalf("measure %d of the tree: %d bytes, its victim's 8 MiB taken in", i+1, used)
		}
	}
}

// A workdir deeper than a walk goes is over its limit: what lies below could not be
// measured.
func TestTooDeepIsOver(t *testing.T) {
	dir := t.TempDir()
	deep := dir
	for range fdwalk.MaxDepth + 1 {
		deep = filepath.Join(deep, "d")
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Skipf("cannot make a tree %d deep here: %v", fdwalk.MaxDepth+1, err)
	}
	over := make(chan struct{})
	stop := WatchDisk(dir, 0, 1<<40, func(int64) {}, func() { close(over) })
	defer stop()
	select {
	case <-over:
	case <-time.After(10 * time.Second):
		t.Fatal("a tree deeper than a walk goes was not over its limit of 1 TiB")
	}
}
