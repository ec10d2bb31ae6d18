package artifacts

import (
	"os"
	"path/filepath"
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
