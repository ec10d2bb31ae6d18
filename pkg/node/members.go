package node

import (
	"slices"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The members room: the other nodes this node hears announce themselves, when each was
// last heard, which it takes for alive, and their nexlets' xkeys. Its lock is its own,
// taken by its methods only, which call nothing while they hold it.
type members struct {
	mu    sync.Mutex
	peers map[string]time.Time // live nodes: the last announcement of each
	xkeys map[string][]string  // node ID -> its nexlets' xkeys, from its announcements
	seen  map[string]time.Time // every node's last announcement, leaving or not
}

func newMembers() *members {
	return &members{peers: map[string]time.Time{}, xkeys: map[string][]string{}, seen: map[string]time.Time{}}
}

// heard records announcement a, and says whether its node was taken for alive before.
func (m *members) heard(a v1.Announce, now time.Time) (known bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, known = m.peers[a.NodeID]
	m.seen[a.NodeID] = now
	if a.Leaving {
		delete(m.peers, a.NodeID)
		delete(m.xkeys, a.NodeID)
	} else {
		m.peers[a.NodeID] = now
		m.xkeys[a.NodeID] = a.XKeys
	}
	return known
}

// expire stops taking for alive the nodes not heard from within after.
func (m *members) expire(now time.Time, after time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, at := range m.peers {
		if now.Sub(at) > after {
			delete(m.peers, id)
			delete(m.xkeys, id)
		}
	}
}

// live lists the nodes taken for alive other than self, after self.
func (m *members) live(self string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.peers)+1)
	out = append(out, self)
	for id := range m.peers {
		if id != self {
			out = append(out, id)
		}
	}
	return out
}

// alive tells whether node is taken for alive.
func (m *members) alive(node string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.peers[node]
	return ok
}

// lastSeen is when node last announced itself, leaving or not.
func (m *members) lastSeen(node string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.seen[node]
	return at, ok
}

// everSeen lists every node ever heard other than self, with when it was last heard.
func (m *members) everSeen(self string) map[string]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]time.Time, len(m.seen))
	for id, at := range m.seen {
		if id != self {
			out[id] = at
		}
	}
	return out
}

// silent lists the nodes heard once and no longer taken for alive, other than self, with
// when each was last heard.
func (m *members) silent(self string) map[string]time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]time.Time{}
	for id, at := range m.seen {
		if _, live := m.peers[id]; !live && id != self {
			out[id] = at
		}
	}
	return out
}

// hasXKey tells whether key is the xkey of a nexlet of a live node.
func (m *members) hasXKey(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, keys := range m.xkeys {
		if slices.Contains(keys, key) {
			return true
		}
	}
	return false
}
