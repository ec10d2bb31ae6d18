package chaos

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

// network is the machines' network, made as root: a network namespace per machine, each
// joined to a bridge on the host (10.87.0.1) by a veth pair, machine i at 10.87.0.(11+i).
// The clients run on the host. A cut is a blackhole route in a machine's namespace: its
// packets to the far side go nowhere and nothing tells the sender, as with a pulled
// cable; a machine keeps hearing the far side, so a cut on one side is one-way.
// The names are fixed (one harness at a time); a run left behind by a crash is removed.
type network struct {
	n     int
	mu    sync.Mutex
	holes map[int]map[string]bool // machine -> prefixes it cannot send to
}

const (
	netPrefix = "nexchaos"
	bridge    = netPrefix + "br"
)

func (nw *network) ns(i int) string   { return fmt.Sprintf("%s%d", netPrefix, i+1) }
func (nw *network) ip(i int) string   { return fmt.Sprintf("10.87.0.%d", 11+i) }
func (nw *network) host(i int) string { return fmt.Sprintf("%sh%d", netPrefix, i+1) }
func (nw *network) peer(i int) string { return fmt.Sprintf("%sn%d", netPrefix, i+1) }

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetwork makes n machines' namespaces on a bridge.
func newNetwork(n int) (*network, error) {
	nw := &network{n: n, holes: map[int]map[string]bool{}}
	nw.remove()
	steps := [][]string{{"link", "add", bridge, "type", "bridge"}, {"addr", "add", "10.87.0.1/24", "dev", bridge}, {"link", "set", bridge, "up"}}
	for i := range n {
		ns, h, p := nw.ns(i), nw.host(i), nw.peer(i)
		steps = append(steps, []string{"netns", "add", ns}, []string{"link", "add", h, "type", "veth", "peer", "name", p},
			[]string{"link", "set", p, "netns", ns}, []string{"link", "set", h, "master", bridge}, []string{"link", "set", h, "up"},
			[]string{"-n", ns, "addr", "add", nw.ip(i) + "/24", "dev", p}, []string{"-n", ns, "link", "set", p, "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"})
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			nw.remove()
			return nil, err
		}
	}
	return nw, nil
}

// remove deletes the namespaces (their veth pairs go with them) and the bridge.
func (nw *network) remove() {
	for i := range nw.n {
		_ = ipCmd("netns", "del", nw.ns(i))
	}
	_ = ipCmd("link", "del", bridge)
}

// cut drops what machine i sends to prefix (an address, or a /25 half of the subnet).
func (nw *network) cut(i int, prefix string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.holes[i] == nil {
		nw.holes[i] = map[string]bool{}
	}
	if !nw.holes[i][prefix] && ipCmd("-n", nw.ns(i), "route", "add", "blackhole", prefix) == nil {
		nw.holes[i][prefix] = true
	}
}

// mend undoes cut.
func (nw *network) mend(i int, prefix string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.holes[i][prefix] && ipCmd("-n", nw.ns(i), "route", "del", "blackhole", prefix) == nil {
		delete(nw.holes[i], prefix)
	}
}

// halves cover the subnet with routes more specific than its own, so blackholing both
// cuts a machine off from everything but itself (its own address is local).
var halves = []string{"10.87.0.0/25", "10.87.0.128/25"}

// isolate cuts machine i off from every other machine and from the clients.
func (nw *network) isolate(i int) {
	for _, h := range halves {
		nw.cut(i, h)
	}
}

// rejoin undoes isolate.
func (nw *network) rejoin(i int) {
	for _, h := range halves {
		nw.mend(i, h)
	}
}

// healAll mends every cut.
func (nw *network) healAll() {
	nw.mu.Lock()
	var all [][2]any
	for i, hs := range nw.holes {
		for p := range hs {
			all = append(all, [2]any{i, p})
		}
	}
	nw.mu.Unlock()
	for _, h := range all {
		nw.mend(h[0].(int), h[1].(string))
	}
}
