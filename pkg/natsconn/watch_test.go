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
func TestWatchFileNotifyWakesOnReplaceWithoutPolling(t *testing.T) {
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
		WatchFileNotify(ctx, path, time.Hour, func() { changes.Add(1) })
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

// Where the kernel's word cannot name the change (the path is a symlink, as a mounted
// Secret's is) or the watch ends (its directory removed and made again), the file is
// checked every interval, as before.
func TestWatchFileNotifyFallsBackToPolling(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dir string) (path string, change func())
	}{
		{"symlink", func(t *testing.T, dir string) (string, func()) {
			target := filepath.Join(dir, "data", "creds")
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target, []byte("one"), 0o600); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(dir, "nexlet.creds")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link, func() { _ = os.WriteFile(target, []byte("two, longer"), 0o600) }
		}},
		{"directory made again", func(t *testing.T, dir string) (string, func()) {
			sub := filepath.Join(dir, "creds")
			path := filepath.Join(sub, "nexlet.creds")
			if err := os.MkdirAll(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("one"), 0o600); err != nil {
				t.Fatal(err)
			}
			return path, func() {
				_ = os.RemoveAll(sub)
				_ = os.MkdirAll(sub, 0o700)
				_ = os.WriteFile(path, []byte("two, longer"), 0o600)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, change := c.setup(t, t.TempDir())
			ctx, cancel := context.WithCancel(context.Background())
			var changes atomic.Int32
			done := make(chan struct{})
			go func() {
				defer close(done)
				WatchFileNotify(ctx, path, 50*time.Millisecond, func() { changes.Add(1) })
			}()
			defer func() { cancel(); <-done }()
			testutil.Eventually(t, 5*time.Second, "the change to be noticed", func() bool {
				change()
				return changes.Load() >= 1
			})
		})
	}
}
