package v1

import "testing"

// IDs are unpredictable: no two of many share a prefix of 8 characters (NUIDs of one
// process share their first 12), and every one is a valid token of IDLen characters.
func TestNewIDRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		id := NewID()
		if len(id) != IDLen || ValidateToken("id", id) != nil {
			t.Fatalf("bad ID %q", id)
		}
		if seen[id[:8]] {
			t.Fatalf("two of 10,000 IDs share the prefix %s", id[:8])
		}
		seen[id[:8]] = true
	}
}
