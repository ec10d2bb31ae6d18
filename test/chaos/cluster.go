package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// cluster is three machines: each a nats-server (routed, JetStream, a process of its
// own) and a nexd that knows only its own server. As root, each machine is a network
// namespace on a bridge, so a partition is a real cut of the network (packets dropped
// without a word, as a pulled cable does); elsewhere the machines share the loopback
// and a partition is a server that stops (its connections close).
type cluster struct {
	t        *testing.T
	bin      string
	dir      string
	out      string
	net      *network // nil without network namespaces
	tmpfs    bool     // each server's store is a tmpfs of its own, which can fill
	mu       sync.Mutex
	srv      []*daemon // each machine's nats-server
	urlPorts [][2]int  // each machine's client and route port
	nodes    []*nexd
}

// daemon is a process the harness runs and starts again after each fault, as systemd
// would: a nats-server or a nexd.
type daemon struct {
	name string
	argv []string
	env  []string
	log  *os.File
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// nexd is one machine's node daemon.
type nexd struct {
	daemon
	i       int
	dataDir string
}

func newCluster(t *testing.T, bin, out string) *cluster {
	c := &cluster{t: t, bin: bin, dir: t.TempDir(), out: out}
	if os.Geteuid() == 0 && os.Getenv("NEX_CHAOS_NETNS") != "0" {
		nw, err := newNetwork(3)
		if err != nil {
			t.Logf("no network namespaces (%v): partitions are stopped servers", err)
		} else {
			c.net = nw
			t.Cleanup(nw.remove)
		}
	}
	t.Cleanup(c.shutdown)
	c.startServers()
	for i := range 3 {
		n := &nexd{i: i, dataDir: filepath.Join(c.dir, fmt.Sprintf("n%d", i+1))}
		n.name = fmt.Sprintf("n%d", i+1)
		n.argv = c.inMachine(i, filepath.Join(bin, "nexd"), "-s", c.clientURL(i),
			"--data-dir", n.dataDir, "--node-name", n.name, "--state", "kv", "--state-replicas", "3",
			"--nexlet-wait", "20s", "--startup-wait", "10m", "--log-level", "info")
		n.log = c.logFile(n.name)
		c.nodes = append(c.nodes, n)
		c.startNexd(n)
	}
	return c
}

// host is machine i's address: its namespace's on the bridge, or the loopback.
func (c *cluster) host(i int) string {
	if c.net != nil {
		return c.net.ip(i)
	}
	return "127.0.0.1"
}

func (c *cluster) logFile(name string) *os.File {
	f, err := os.Create(filepath.Join(c.out, name+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

// inMachine is the command line that runs argv on machine i.
func (c *cluster) inMachine(i int, argv ...string) []string {
	if c.net == nil {
		return argv
	}
	return append([]string{"ip", "netns", "exec", c.net.ns(i)}, argv...)
}

// startServers writes each machine's nats-server config (its JetStream store on a small
// tmpfs of its own as root, so the disk can fill) and starts the three.
func (c *cluster) startServers() {
	ports := [][2]int{}
	for range 3 {
		if c.net != nil {
			ports = append(ports, [2]int{4222, 6222})
		} else {
			ports = append(ports, [2]int{freePort(c.t), freePort(c.t)})
		}
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://%s:%d", c.host(i), ports[i][1]))
	}
	self, err := os.Executable()
	if err != nil {
		c.t.Fatal(err)
	}
	for i := range 3 {
		store := filepath.Join(c.dir, fmt.Sprintf("s%d", i+1))
		_ = os.MkdirAll(store, 0o755)
		if os.Geteuid() == 0 {
			if err := syscall.Mount("tmpfs", store, "tmpfs", 0, "size="+storeSize); err == nil {
				c.tmpfs = true
				c.t.Cleanup(func() { _ = syscall.Unmount(store, syscall.MNT_DETACH) })
			}
		}
		conf := filepath.Join(c.dir, fmt.Sprintf("s%d.conf", i+1))
		text := fmt.Sprintf(serverConf, i+1, c.host(i), ports[i][0], filepath.Join(store, "js"), c.host(i), ports[i][1], strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			c.t.Fatal(err)
		}
		d := &daemon{name: fmt.Sprintf("s%d", i+1), argv: c.inMachine(i, self, "-test.run=^$"), env: []string{"NEX_CHAOS_SERVE=" + conf}}
		d.log = c.logFile(d.name)
		c.srv = append(c.srv, d)
		c.start(d)
	}
	c.urlPorts = ports
	c.waitJetStream()
}

// storeSize is each server's JetStream disk (as root): room for the run's state and
// history, small enough to fill in a moment.
const storeSize = "256m"

// serverConf is a machine's nats-server (its log lines timed in UTC, as the nodes'
// are, to be read beside them): the silent-peer pings docs/clusters.md asks
// for, JetStream, and routes to all three that are not advertised to clients.
const serverConf = `server_name: s%d
listen: "%s:%d"
logtime: true
logtime_utc: true
ping_interval: "2s"
ping_max: 2
jetstream { store_dir: %q, max_memory_store: 256MB, max_file_store: 1GB }
cluster { name: nex, listen: "%s:%d", no_advertise: true, routes: [%s] }
`

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitJetStream waits for the servers to form a cluster with a JetStream leader.
func (c *cluster) waitJetStream() {
	deadline := time.Now().Add(time.Minute)
	for {
		nc, err := nats.Connect(c.urls())
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the nats-servers formed no JetStream cluster: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// clientURL is machine i's server, as its nexd and the clients reach it.
func (c *cluster) clientURL(i int) string {
	return fmt.Sprintf("nats://%s:%d", c.host(i), c.urlPorts[i][0])
}

// urls lists every server, for clients, which may use any.
func (c *cluster) urls() string {
	var out []string
	for i := range 3 {
		out = append(out, c.clientURL(i))
	}
	return strings.Join(out, ",")
}

// start starts d (it must not be running).
func (c *cluster) start(d *daemon) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cmd := exec.Command(d.argv[0], d.argv[1:]...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", d.name, err)
	}
	done := make(chan struct{})
	d.cmd, d.done = cmd, done
	go func() { _ = cmd.Wait(); close(done) }()
}

func (c *cluster) startNexd(n *nexd) { c.start(&n.daemon) }

// alive says whether d runs.
func (d *daemon) alive() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// signal sends sig to d.
func (d *daemon) signal(sig syscall.Signal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_ = d.cmd.Process.Signal(sig)
}

// wait waits for d to exit.
func (d *daemon) wait() {
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	<-done
}

// kill9 kills d (a paused one too) and waits for it.
func (d *daemon) kill9() {
	d.signal(syscall.SIGCONT)
	d.signal(syscall.SIGKILL)
	d.wait()
}

// stop stops d as systemd would: SIGTERM, and SIGKILL after a minute.
func (d *daemon) stop() {
	d.signal(syscall.SIGCONT)
	d.signal(syscall.SIGTERM)
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	select {
	case <-done:
	case <-time.After(time.Minute):
		d.kill9()
	}
}

// fillDisk fills machine i's JetStream disk (its tmpfs) and returns what frees it.
func (c *cluster) fillDisk(i int) (free func()) {
	store := filepath.Join(c.dir, fmt.Sprintf("s%d", i+1))
	filler := filepath.Join(store, "filler")
	f, err := os.Create(filler)
	if err != nil {
		return func() {}
	}
	defer f.Close()
	var st syscall.Statfs_t
	if syscall.Statfs(store, &st) == nil {
		_ = syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize)
	}
	return func() { _ = os.Remove(filler) }
}

// nexlets are the nexlet-native processes of n.
func (n *nexd) nexlets() []int {
	return processes("nexlet-native", "--data-dir="+filepath.Join(n.dataDir, "native"))
}

// stopServer stops machine i's server (SIGTERM: it closes its connections); its node is
// cut off.
func (c *cluster) stopServer(i int) {
	if c.srv[i].alive() {
		c.srv[i].stop()
	}
}

// startServer starts machine i's server again, on its address and store.
func (c *cluster) startServer(i int) {
	if !c.srv[i].alive() {
		c.start(c.srv[i])
	}
}

// heal ends every fault: the network whole, servers up, nodes running and not paused.
func (c *cluster) heal() {
	if c.net != nil {
		c.net.healAll()
	}
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

// shutdown stops every nexd and what its nexlets run, then the servers.
func (c *cluster) shutdown() {
	for _, n := range c.nodes {
		if n.alive() {
			n.stop()
		}
		for _, pid := range n.nexlets() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		n.log.Close()
	}
	for _, pid := range ourPIDs() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, s := range c.srv {
		if s.alive() {
			s.kill9()
		}
		s.log.Close()
	}
}
