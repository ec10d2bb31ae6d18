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
//
// A node is taken for alive while its last announcement is younger than maxAge, read at
// each question, not at the next sweep: a fan-out (an auction, a list) waits for every
// node some answer names alive, so one that named a killed node for a sweep's period
// longer than the coordinator took to call it lost made each of the coordinator's
// takeover auctions wait out its straggler bound (failover at a 3 s window took 7.8 s).
type members struct {
	mu     sync.Mutex
	maxAge time.Duration
	peers  map[string]time.Time // nodes not known to have left: the last announcement of each
	xkeys  map[string][]string  // node ID -> its nexlets' xkeys, from its announcements
	seen   map[string]time.Time // every node's last announcement, leaving or not
}

// aliveFor is how long a node is taken for alive after its last announcement: three
// announcement intervals, or the node-loss window when that is shorter (a node the
// coordinator takes for lost is no longer waited for).
func aliveFor(announce, lossWindow time.Duration) time.Duration {
	if lossWindow > 0 {
		return min(3*announce, lossWindow)
	}
	return 3 * announce
}

func newMembers(maxAge time.Duration) *members {
	return &members{maxAge: maxAge, peers: map[string]time.Time{}, xkeys: map[string][]string{}, seen: map[string]time.Time{}}
}

// heard records announcement a, and says whether its node was known (and not known to
// have left) before, and whether it is back: heard before, but not for longer than a node
// is taken for alive (it, or this node, was cut off, paused or down meanwhile).
func (m *members) heard(a v1.Announce, now time.Time) (known, back bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, known = m.peers[a.NodeID]
	if last, ok := m.seen[a.NodeID]; ok && now.Sub(last) > m.maxAge {
		back = true
	}
	m.seen[a.NodeID] = now
	if a.Leaving {
		delete(m.peers, a.NodeID)
		delete(m.xkeys, a.NodeID)
	} else {
		m.peers[a.NodeID] = now
		m.xkeys[a.NodeID] = a.XKeys
	}
	return known, back
}

// expire forgets the xkeys of the nodes no longer taken for alive.
func (m *members) expire(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, at := range m.peers {
		if now.Sub(at) > m.maxAge {
			delete(m.peers, id)
			delete(m.xkeys, id)
		}
	}
}

// live lists the nodes taken for alive other than self, after self.
func (m *members) live(self string) []string {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.peers)+1)
	out = append(out, self)
	for id, at := range m.peers {
		if id != self && now.Sub(at) <= m.maxAge {
			out = append(out, id)
		}
	}
	return out
}

// alive tells whether node is taken for alive.
func (m *members) alive(node string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.peers[node]
	return ok && time.Since(at) <= m.maxAge
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
	now := time.Now()
	out := map[string]time.Time{}
	for id, at := range m.seen {
		if last, live := m.peers[id]; (!live || now.Sub(last) > m.maxAge) && id != self {
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
