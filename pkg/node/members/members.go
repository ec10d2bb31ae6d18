// Package members is the members room of a node: the other nodes it hears announce
// themselves, when each was last heard, which it takes for alive, and their nexlets'
// xkeys.
package members

import (
	"slices"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Members is the room. Its lock is its own, taken by its methods only, which call
// nothing while they hold it.
//
// A node is taken for alive while its last announcement is younger than maxAge, read at
// each question, not at the next sweep: a fan-out (an auction, a list) waits for every
// node some answer names alive, so one that named a killed node for a sweep's period
// longer than the coordinator took to call it lost made each of the coordinator's
// takeover auctions wait out its straggler bound (failover at a 3 s window took 7.8 s).
type Members struct {
	mu     sync.Mutex
	maxAge time.Duration
	peers  map[string]time.Time // nodes not known to have left: the last announcement of each
	xkeys  map[string][]string  // node ID -> its nexlets' xkeys, from its announcements
	seen   map[string]time.Time // every node's last announcement, leaving or not
}

// AliveFor is how long a node is taken for alive after its last announcement: three
// announcement intervals, or the node-loss window when that is shorter (a node the
// coordinator takes for lost is no longer waited for).
func AliveFor(announce, lossWindow time.Duration) time.Duration {
	if lossWindow > 0 {
		return min(3*announce, lossWindow)
	}
	return 3 * announce
}

// New returns an empty room; a node is taken for alive for maxAge after it announces.
func New(maxAge time.Duration) *Members {
	return &Members{maxAge: maxAge, peers: map[string]time.Time{}, xkeys: map[string][]string{}, seen: map[string]time.Time{}}
}

// Heard records announcement a, and says whether its node was known (and not known to
// have left) before, and whether it is back: heard before, but not for longer than a node
// is taken for alive (it, or this node, was cut off, paused or down meanwhile).
func (m *Members) Heard(a v1.Announce, now time.Time) (known, back bool) {
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

// Expire forgets the xkeys of the nodes no longer taken for alive.
func (m *Members) Expire(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, at := range m.peers {
		if now.Sub(at) > m.maxAge {
			delete(m.peers, id)
			delete(m.xkeys, id)
		}
	}
}

// Live lists the nodes taken for alive other than self, after self.
func (m *Members) Live(self string) []string {
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

// Alive tells whether node is taken for alive.
func (m *Members) Alive(node string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.peers[node]
	return ok && time.Since(at) <= m.maxAge
}

// LastSeen is when node last announced itself, leaving or not.
func (m *Members) LastSeen(node string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.seen[node]
	return at, ok
}

// EverSeen lists every node ever heard other than self, with when it was last heard.
func (m *Members) EverSeen(self string) map[string]time.Time {
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

// Silent lists the nodes heard once and no longer taken for alive, other than self, with
// when each was last heard.
func (m *Members) Silent(self string) map[string]time.Time {
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

// HasXKey tells whether key is the xkey of a nexlet of a live node.
func (m *Members) HasXKey(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, keys := range m.xkeys {
		if slices.Contains(keys, key) {
			return true
		}
	}
	return false
}
