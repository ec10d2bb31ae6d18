package natsconn

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
)

// A credentials file replaced (written beside it and renamed over it, as nexd renews a
// nexlet's) or rewritten in place is noticed without polling: the interval here is an
// hour, so only the kernel's word can have woken the watch.
func TestWatchFileWakesOnReplaceWithoutPolling(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nexlet.creds")
	if err := os.WriteFile(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var changes atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchFile(ctx, path, time.Hour, func() { changes.Add(1) })
	}()
	defer func() { cancel(); <-done }()

	// the watch is set up once the goroutine runs: each try replaces the file again
	var tries int
	replace := func() bool {
		tries++
		tmp := filepath.Join(dir, ".nexlet.creds.new")
		if err := os.WriteFile(tmp, []byte(strings.Repeat("x", tries)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		return changes.Load() >= 1
	}
	testutil.Eventually(t, 5*time.Second, "the replaced file to be noticed", replace)
	// from here the watch is up: a write in place is one change (another file's is none)
	before := changes.Load()
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Repeat("y", tries+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the file rewritten in place to be noticed", func() bool { return changes.Load() == before+1 })
}
