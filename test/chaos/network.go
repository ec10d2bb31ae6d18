package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// network is the machines' network, made as root: a network namespace per machine, each
// joined to a bridge on the host (10.87.N.1) by a veth pair, machine i at 10.87.N.(11+i),
// N and the names taken from the harness's PID, so two runs can go at once.
// The clients run on the host. A cut is a blackhole route in a machine's namespace: its
// packets to the far side go nowhere and nothing tells the sender, as with a pulled
// cable; a machine keeps hearing the far side, so a cut on one side is one-way.
// A run that crashed leaves its namespaces behind (ip netns list: nxc*; ip netns del).
type network struct {
	n     int
	tag   string // names this run's namespaces and links (two runs at once keep apart)
	net   int    // the third octet of its subnet, 10.87.<net>.0/24
	mu    sync.Mutex
	holes map[int]map[string]bool // machine -> prefixes it cannot send to
}

func (nw *network) ns(i int) string   { return fmt.Sprintf("nxc%sn%d", nw.tag, i+1) }
func (nw *network) ip(i int) string   { return fmt.Sprintf("10.87.%d.%d", nw.net, 11+i) }
func (nw *network) host(i int) string { return fmt.Sprintf("nxc%sh%d", nw.tag, i+1) }
func (nw *network) peer(i int) string { return fmt.Sprintf("nxc%sp%d", nw.tag, i+1) }
func (nw *network) bridge() string    { return "nxc" + nw.tag + "b" }
func (nw *network) gateway() string   { return fmt.Sprintf("10.87.%d.1", nw.net) }

// halves cover the subnet with routes more specific than its own, so blackholing both
// cuts a machine off from everything but itself (its own address is local).
func (nw *network) halves() []string {
	return []string{fmt.Sprintf("10.87.%d.0/25", nw.net), fmt.Sprintf("10.87.%d.128/25", nw.net)}
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetwork makes n machines' namespaces on a bridge.
func newNetwork(n int) (*network, error) {
	pid := os.Getpid()
	nw := &network{n: n, tag: strconv.Itoa(pid % 10000), net: pid % 250, holes: map[int]map[string]bool{}}
	nw.remove()
	bridge := nw.bridge()
	steps := [][]string{{"link", "add", bridge, "type", "bridge"}, {"addr", "add", nw.gateway() + "/24", "dev", bridge}, {"link", "set", bridge, "up"}}
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
	_ = ipCmd("link", "del", nw.bridge())
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

// isolate cuts machine i off from every other machine and from the clients.
func (nw *network) isolate(i int) {
	for _, h := range nw.halves() {
		nw.cut(i, h)
	}
}

// rejoin undoes isolate.
func (nw *network) rejoin(i int) {
	for _, h := range nw.halves() {
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
