package artifacts

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A prune after namespace a's download takes a's own least recently used entries first:
// b's entry, older than all of a's, stays while a's own make room (one tenant fetching one
// new artifact after another pushed every other namespace's out of the cache). When a's
// are not enough, the least recently used of the others go.
func TestPruneTakesTheNamespacesOwnFirst(t *testing.T) {
	dir := t.TempDir()
	c := NewCache(dir, 300)
	at := time.Now().Add(-time.Hour)
	put := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, 100), 0o600); err != nil {
			t.Fatal(err)
		}
		at = at.Add(time.Minute)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b1 := put("b.d1")
	a1, a2 := put("a.d1"), put("a.d2")
	c.prune(put("a.d3")) // 400 bytes: one goes
	for p, want := range map[string]bool{b1: true, a1: false, a2: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s kept %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
	big := put("a.d4") // 400 again: a's least recently used other than the new one goes
	c.prune(big)
	if _, err := os.Stat(b1); err != nil {
		t.Errorf("b's entry went while a had its own to give: %v", err)
	}
	if _, err := os.Stat(a2); err == nil {
		t.Error("a's least recently used entry stayed")
	}
}

// One namespace's downloads in flight hold at most half the cache's bound, a single one
// too: a tenant's one slow download just under the bound, from a server of its own, held
// it all, and every other namespace's fetches failed while it lasted (an attack's
// finding, TestAttack3OneDownloadHoldsTheCache).
func TestOneDownloadLeavesHalfToOthers(t *testing.T) {
	c := NewCache(t.TempDir(), 64<<20)
	c.begin("a")
	a := &counted{c: c, ns: "a", w: io.Discard}
	chunk := make([]byte, 1<<20)
	for range 32 {
		if _, err := a.Write(chunk); err != nil {
			t.Fatalf("a's download within half the bound: %v", err)
		}
	}
	if _, err := a.Write(chunk[:1]); err == nil || !strings.Contains(err.Error(), "larger than half this nexlet's artifact cache of 64 MiB") {
		t.Fatalf("a's one download past half the bound: %v", err)
	}
	c.begin("b")
	b := &counted{c: c, ns: "b", w: io.Discard}
	for range 32 {
		if _, err := b.Write(chunk); err != nil {
			t.Fatalf("b's download while a's holds half: %v", err)
		}
	}
	c.end("a", a.took)
	c.end("b", b.took)
	if c.inflight != 0 || len(c.flights) != 0 {
		t.Fatalf("after both: %d bytes, %d namespaces in flight", c.inflight, len(c.flights))
	}
}
