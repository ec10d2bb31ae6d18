package test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// freePorts reserves n loopback ports and lets them go for servers to take.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = l.Addr().(*net.TCPAddr).Port
		defer l.Close()
	}
	return out
}

// jsServer starts an in-process JetStream server on port, in a cluster when routes are given.
func jsServer(t *testing.T, name string, port, clusterPort int, routes []*url.URL) *server.Server {
	t.Helper()
	o := &server.Options{ServerName: name, Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir()}
	if clusterPort > 0 {
		o.Cluster = server.ClusterOpts{Name: "boot", Host: "127.0.0.1", Port: clusterPort}
		o.Routes = routes
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server %s not ready", name)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// waitReady waits until nexd logs that its node is ready; it fails if nexd exits first.
func waitReady(t *testing.T, bg *background, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, "nexd to log node ready", func() bool {
		select {
		case <-bg.done:
			t.Fatalf("nexd exited before its node was ready:\n%s", bg.out.String())
		default:
		}
		return strings.Contains(bg.out.String(), "node ready")
	})
}

// Three nats-servers in a cluster and three nexd started at the same moment, right after
// the servers accept connections (before the cluster has a JetStream leader), each creating
// the replicated state bucket: every node comes up, every time, with no restart.
func TestClusterBootsAtOnce(t *testing.T) {
	rounds := 10
	if v, err := strconv.Atoi(os.Getenv("NEX_BOOT_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for r := 1; r <= rounds; r++ {
		t.Run(fmt.Sprintf("round %d", r), func(t *testing.T) {
			ports := freePorts(t, 6)
			var routes []*url.URL
			for _, p := range ports[3:] {
				routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
			}
			var urls []string
			for i := 0; i < 3; i++ {
				s := jsServer(t, fmt.Sprintf("s%d", i+1), ports[i], ports[3+i], routes)
				urls = append(urls, s.ClientURL())
			}
			u := newUser(t)
			nodes := make([]*background, 3)
			for i := range nodes {
				nodes[i] = u.start("nexd", "-s", urls[i], "--data-dir", filepath.Join(u.home, fmt.Sprintf("n%d", i)),
					"--node-name", fmt.Sprintf("boot%d", i+1), "--state", "kv", "--state-replicas", "3", "--startup-wait", "2m")
			}
			for _, bg := range nodes {
				waitReady(t, bg, 2*time.Minute)
			}
			if os.Getenv("NEX_BOOT_LOG") != "" {
				t.Logf("%s", nodes[0].out.String())
			}
			testutil.Eventually(t, 10*time.Second, "nex node list to show the three nodes", func() bool {
				out, _, code := u.nex("-s", urls[0], "node", "list", "--json")
				var list []v1.NodeInfo
				return code == 0 && json.Unmarshal([]byte(out), &list) == nil && len(list) == 3
			})
		})
		if t.Failed() {
			return
		}
	}
}

// A nexd started before its nats-server (as at boot) waits for it, says so, and comes up
// once the server does; one whose server never comes gives up at --startup-wait naming it.
func TestNexdWaitsForItsServer(t *testing.T) {
	u := newUser(t)
	port := freePorts(t, 1)[0]
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	bg := u.start("nexd", "-s", url, "--data-dir", filepath.Join(u.home, "late"), "--node-name", "late", "--state", "kv", "--startup-wait", "1m")
	testutil.Eventually(t, 10*time.Second, "nexd to say it waits for its server", func() bool {
		return strings.Contains(bg.out.String(), "waiting for NATS server "+url)
	})
	time.Sleep(5 * time.Second) // the server comes up 5 s after nexd, as the test says
	jsServer(t, "late", port, 0, nil)
	waitReady(t, bg, time.Minute)

	// never comes: a clear error at the bound, naming what was missing
	gone := freePorts(t, 1)[0]
	cmd := u.cmd("nexd", "-s", fmt.Sprintf("nats://127.0.0.1:%d", gone), "--data-dir", filepath.Join(u.home, "never"), "--startup-wait", "2s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), fmt.Sprintf("NATS server nats://127.0.0.1:%d was not ready after", gone)) ||
		!strings.Contains(string(out), "--startup-wait 2s") {
		t.Fatalf("nexd with no server: exit %d:\n%s", cmd.ProcessState.ExitCode(), out)
	}

	// JetStream off: waiting cannot cure it, --state kv says so at once
	plain := testutil.StartServer(t, func(o *server.Options) { o.JetStream = false })
	began := time.Now()
	cmd = u.cmd("nexd", "-s", plain.ClientURL(), "--data-dir", filepath.Join(u.home, "nojs"), "--state", "kv")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), "--state kv needs JetStream") || time.Since(began) > 10*time.Second {
		t.Fatalf("nexd --state kv without JetStream: exit %d after %s:\n%s", cmd.ProcessState.ExitCode(), time.Since(began), out)
	}
}
