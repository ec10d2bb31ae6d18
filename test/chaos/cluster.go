package chaos

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nexrun/nex/internal/testutil"
)

// cluster is three machines: each a nats-server (routed, JetStream) and a nexd that
// knows only its own server, so a stopped server cuts its machine off. That is the
// harness's partition: it does not make network namespaces, so a cut is a server that
// stops (its connections close), never a link that drops silently.
type cluster struct {
	t     *testing.T
	bin   string
	dir   string
	ports []int
	mu    sync.Mutex
	live  []*server.Server // nil while stopped
	last  []*server.Server // the last one started, to start again
	nodes []*nexd
}

// nexd is one machine's node daemon, started again (as systemd would) after each fault.
type nexd struct {
	i       int
	name    string
	dataDir string
	log     *os.File
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
}

func newCluster(t *testing.T, bin, out string) *cluster {
	servers := testutil.StartCluster(t, 3)
	c := &cluster{t: t, bin: bin, dir: t.TempDir(), live: servers, last: append([]*server.Server(nil), servers...)}
	for _, s := range servers {
		u, _ := url.Parse(s.ClientURL())
		var p int
		fmt.Sscan(u.Port(), &p)
		c.ports = append(c.ports, p)
	}
	for i := range 3 {
		n := &nexd{i: i, name: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(c.dir, fmt.Sprintf("n%d", i+1))}
		f, err := os.Create(filepath.Join(out, n.name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		n.log = f
		c.nodes = append(c.nodes, n)
		c.startNexd(n)
	}
	t.Cleanup(c.shutdown)
	return c
}

// urls lists every server, for clients, which may use any.
func (c *cluster) urls() string {
	var out []string
	for _, p := range c.ports {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	return strings.Join(out, ",")
}

func (c *cluster) startNexd(n *nexd) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(filepath.Join(c.bin, "nexd"), "-s", fmt.Sprintf("nats://127.0.0.1:%d", c.ports[n.i]),
		"--data-dir", n.dataDir, "--node-name", n.name, "--state", "kv", "--state-replicas", "3",
		"--nexlet-wait", "20s", "--startup-wait", "10m", "--log-level", "info")
	cmd.Stdout, cmd.Stderr = n.log, n.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", n.name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() { _ = cmd.Wait(); close(done) }()
}

// alive says whether n's nexd runs.
func (n *nexd) alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// signal sends sig to n's nexd.
func (n *nexd) signal(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_ = n.cmd.Process.Signal(sig)
}

// kill9 kills n's nexd and waits for it.
func (n *nexd) kill9() {
	n.signal(syscall.SIGCONT) // a paused one too
	n.signal(syscall.SIGKILL)
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	<-done
}

// nexlets are the nexlet-native processes of n.
func (n *nexd) nexlets() []int {
	return processes("nexlet-native", "--data-dir="+filepath.Join(n.dataDir, "native"))
}

// stopServer stops machine i's server: its node is cut off.
func (c *cluster) stopServer(i int) {
	c.mu.Lock()
	s := c.live[i]
	c.live[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// startServer starts machine i's server again, on its port and store.
func (c *cluster) startServer(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live[i] != nil {
		return
	}
	s := testutil.RestartServer(c.t, c.last[i])
	c.live[i], c.last[i] = s, s
}

// heal ends every fault: servers up, nodes running and not paused.
func (c *cluster) heal() {
	for i := range 3 {
		c.startServer(i)
	}
	for _, n := range c.nodes {
		if n.alive() {
			n.signal(syscall.SIGCONT)
		} else {
			c.startNexd(n)
		}
	}
}

// shutdown stops every nexd and what its nexlets run.
func (c *cluster) shutdown() {
	for _, n := range c.nodes {
		if n.alive() {
			n.signal(syscall.SIGCONT)
			n.signal(syscall.SIGTERM)
			n.mu.Lock()
			done := n.done
			n.mu.Unlock()
			<-done
		}
		for _, pid := range n.nexlets() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		n.log.Close()
	}
	for _, pid := range processes(markerPrefix) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
