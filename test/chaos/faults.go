package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/proc"
	"github.com/nexrun/nex/pkg/client"
)

// fault is one injected fault, as the summary and the history's faults file keep it.
type fault struct {
	Kind  string        `json:"fault"`
	Node  string        `json:"node"`
	Start time.Time     `json:"start"`
	For   time.Duration `json:"for,omitempty"`
	End   time.Time     `json:"end"` // healed (its machine back as systemd would bring it)
}

// faultKinds are the faults the schedule draws from; cuts need network namespaces and a
// full disk a tmpfs store (both need root).
func (c *cluster) faultKinds() []string {
	kinds := []string{"kill-nexd", "kill-nexlet", "kill-workload", "stop-server", "kill-server", "pause-nexd", "kill-machine", "lameduck", "adopt-then-outage"}
	if c.net != nil {
		kinds = append(kinds, "cut", "cut-one-way", "cut-pair", "flap")
	}
	if c.tmpfs {
		kinds = append(kinds, "full-disk")
	}
	return kinds
}

// injector draws faults from a seeded schedule and injects them, at most two at once and
// never two on one machine, until ctx ends.
type injector struct {
	c      *cluster
	rng    *rand.Rand
	admin  *client.Client
	mu     sync.Mutex
	busy   map[int]bool
	faults []fault
	wg     sync.WaitGroup
}

// run draws every fault's kind, machine, length and details from the schedule in one
// goroutine, so a seed replays the same schedule.
func (f *injector) run(ctx context.Context) {
	kinds := f.c.faultKinds()
	for ctx.Err() == nil {
		kind := kinds[f.rng.IntN(len(kinds))]
		i := f.rng.IntN(3)
		hold := time.Duration(3+f.rng.IntN(20)) * time.Second
		next := time.Duration(4+f.rng.IntN(10)) * time.Second
		detail := rand.New(rand.NewPCG(f.rng.Uint64(), 2))
		f.mu.Lock()
		free := !f.busy[i] && len(f.busy) < 2
		if free {
			f.busy[i] = true
		}
		f.mu.Unlock()
		if free {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer func() { f.mu.Lock(); delete(f.busy, i); f.mu.Unlock() }()
				f.inject(ctx, kind, i, hold, detail)
			}()
		}
		wait(ctx, next)
	}
	f.wg.Wait()
}

func (f *injector) record(kind string, n *nexd, hold time.Duration) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fault{Kind: kind, Node: n.name, Start: time.Now(), For: hold})
	return len(f.faults) - 1
}

// healed notes when fault idx ended.
func (f *injector) healed(idx int) {
	f.mu.Lock()
	f.faults[idx].End = time.Now()
	f.mu.Unlock()
}

// quiet is how much of [from, to] no fault covered.
func (f *injector) quiet(from, to time.Time) time.Duration {
	f.mu.Lock()
	var spans [][2]time.Time
	for _, ft := range f.faults {
		end := ft.End
		if end.IsZero() {
			end = to
		}
		spans = append(spans, [2]time.Time{ft.Start, end})
	}
	f.mu.Unlock()
	sort.Slice(spans, func(i, j int) bool { return spans[i][0].Before(spans[j][0]) })
	var q time.Duration
	at := from
	for _, s := range spans {
		if s[1].Before(at) {
			continue
		}
		if s[0].After(to) {
			break
		}
		if s[0].After(at) {
			q += s[0].Sub(at)
		}
		if s[1].After(at) {
			at = s[1]
		}
	}
	if to.After(at) {
		q += to.Sub(at)
	}
	return q
}

// wait waits d, or less when ctx ends (the fault is healed all the same).
func wait(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (f *injector) inject(ctx context.Context, kind string, i int, hold time.Duration, rng *rand.Rand) {
	c, n := f.c, f.c.nodes[i]
	if !n.alive() {
		c.startNexd(n) // systemd brings it back first
		return
	}
	idx := f.record(kind, n, hold)
	defer f.healed(idx)
	switch kind {
	case "kill-nexd": // and systemd starts it again
		n.kill9()
		wait(ctx, hold/4)
		c.startNexd(n)
	case "kill-nexlet":
		for _, pid := range n.nexlets() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	case "kill-workload":
		if pids := ourPIDs(); len(pids) > 0 {
			_ = syscall.Kill(pids[rng.IntN(len(pids))], syscall.SIGKILL)
		}
	case "stop-server": // the server shuts down: its connections close
		c.stopServer(i)
		wait(ctx, hold)
		c.startServer(i)
	case "kill-server":
		c.srv[i].kill9()
		wait(ctx, hold/4)
		c.startServer(i)
	case "pause-nexd": // a GC pause or a frozen VM, longer than the node-loss window
		n.signal(syscall.SIGSTOP)
		wait(ctx, 10*time.Second+hold/2)
		n.signal(syscall.SIGCONT)
	case "kill-machine": // power loss: its server, nexd, nexlet and every workload
		f.killMachine(n)
		wait(ctx, hold)
		c.startServer(i)
		c.startNexd(n)
	case "lameduck":
		f.lameduck(ctx, n)
	case "adopt-then-outage": // nexd killed and back (it adopts its nexlet), then NATS goes
		n.kill9()
		c.startNexd(n)
		wait(ctx, 5*time.Second)
		c.stopServer(i)
		wait(ctx, hold)
		c.startServer(i)
	default:
		f.injectNetwork(ctx, kind, i, hold, rng)
	}
}

// injectNetwork cuts the network (see network) or fills a disk.
func (f *injector) injectNetwork(ctx context.Context, kind string, i int, hold time.Duration, rng *rand.Rand) {
	c, nw := f.c, f.c.net
	j := (i + 1 + rng.IntN(2)) % 3 // another machine
	switch kind {
	case "cut": // the machine is cut off, silently
		nw.isolate(i)
		wait(ctx, hold)
		nw.rejoin(i)
	case "cut-one-way": // i's packets to j are lost; j's reach i
		nw.cut(i, nw.ip(j))
		wait(ctx, hold)
		nw.mend(i, nw.ip(j))
	case "cut-pair": // i and j cannot reach each other; both reach the third and the clients
		nw.cut(i, nw.ip(j))
		nw.cut(j, nw.ip(i))
		wait(ctx, hold)
		nw.mend(i, nw.ip(j))
		nw.mend(j, nw.ip(i))
	case "flap": // the link goes and comes back, again and again
		for end := time.Now().Add(hold); time.Now().Before(end) && ctx.Err() == nil; {
			nw.isolate(i)
			wait(ctx, time.Duration(500+rng.IntN(1500))*time.Millisecond)
			nw.rejoin(i)
			wait(ctx, time.Duration(500+rng.IntN(2500))*time.Millisecond)
		}
	case "full-disk": // JetStream's disk fills; the server disables JetStream, and the
		// operator frees the disk and restarts it
		free := c.fillDisk(i)
		wait(ctx, hold)
		free()
		c.stopServer(i)
		c.startServer(i)
	}
}

func (f *injector) killMachine(n *nexd) {
	f.c.srv[n.i].kill9()
	n.kill9()
	id := nodeIDOf(n)
	for _, pid := range n.nexlets() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if id != "" {
		proc.KillTagged(id, "native")
	}
}

// lameduck drains the node; it exits once drained, and systemd starts it again.
func (f *injector) lameduck(ctx context.Context, n *nexd) {
	id := nodeIDOf(n)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := f.admin.Lameduck(cctx, id, 5*time.Second)
	cancel()
	if err == nil {
		n.mu.Lock()
		done := n.done
		n.mu.Unlock()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
		}
	}
	if !n.alive() {
		f.c.startNexd(n)
	}
}

// nodeIDOf is a node's ID: the public key of the seed nexd keeps in its data dir.
func nodeIDOf(n *nexd) string {
	seed, err := os.ReadFile(filepath.Join(n.dataDir, "node.seed"))
	if err != nil {
		return ""
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return ""
	}
	id, _ := kp.PublicKey()
	return id
}

func (f fault) String() string {
	return fmt.Sprintf("%s %s %s", f.Start.Format("15:04:05.0"), f.Kind, f.Node)
}
