package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
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
}

// faultKinds are the faults the schedule draws from.
var faultKinds = []string{"kill-nexd", "kill-nexlet", "kill-workload", "stop-server", "pause-nexd", "kill-machine", "lameduck", "adopt-then-outage"}

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

func (f *injector) run(ctx context.Context) {
	for ctx.Err() == nil {
		kind := faultKinds[f.rng.IntN(len(faultKinds))]
		i := f.rng.IntN(3)
		hold := time.Duration(3+f.rng.IntN(20)) * time.Second
		next := time.Duration(4+f.rng.IntN(10)) * time.Second
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
				f.inject(ctx, kind, i, hold)
			}()
		}
		select {
		case <-ctx.Done():
		case <-time.After(next):
		}
	}
	f.wg.Wait()
}

func (f *injector) record(kind string, n *nexd, hold time.Duration) {
	f.mu.Lock()
	f.faults = append(f.faults, fault{Kind: kind, Node: n.name, Start: time.Now(), For: hold})
	f.mu.Unlock()
}

// wait waits d, or less when ctx ends (the fault is healed all the same).
func wait(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (f *injector) inject(ctx context.Context, kind string, i int, hold time.Duration) {
	c, n := f.c, f.c.nodes[i]
	if !n.alive() {
		c.startNexd(n) // systemd brings it back first
		return
	}
	f.record(kind, n, hold)
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
		if pids := processes("sleep 100000; : " + markerPrefix); len(pids) > 0 {
			_ = syscall.Kill(pids[f.rng.IntN(len(pids))], syscall.SIGKILL)
		}
	case "stop-server": // the machine is cut off
		c.stopServer(i)
		wait(ctx, hold)
		c.startServer(i)
	case "pause-nexd": // a GC pause or a frozen VM, longer than the node-loss window
		n.signal(syscall.SIGSTOP)
		wait(ctx, 10*time.Second+hold/2)
		n.signal(syscall.SIGCONT)
	case "kill-machine": // power loss: nexd, its nexlet and every workload of the node
		f.killMachine(n)
		wait(ctx, hold)
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
	}
}

func (f *injector) killMachine(n *nexd) {
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
