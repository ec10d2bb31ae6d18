// Package testutil starts in-process NATS servers for tests and polls with deadlines.
package testutil

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StartServer runs a nats-server with JetStream on a random loopback port until the
// test ends.
func StartServer(t testing.TB, tune ...func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	for _, f := range tune {
		f(o)
	}
	return startOpts(t, o)
}

// Connect dials s and closes the connection when the test ends.
func Connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Eventually polls cond every few milliseconds until it is true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ClientGoroutines counts the goroutines whose stack does not run in an in-process
// nats-server (whose consumers and stores come and go on their own schedule): what a
// test compares before and after many calls to find a leak of its own.
func ClientGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.HasPrefix(g, "goroutine ") && !strings.Contains(g, "nats-server/v2/server.") {
			count++
		}
	}
	return count
}

// StartCluster runs n JetStream servers routed to each other on loopback (cluster "nex",
// servers s1..sn) and waits until JetStream has its meta leader. A stopped one can be
// started again with RestartServer.
func StartCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		o := &server.Options{
			ServerName: fmt.Sprintf("s%d", i+1), Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			JetStream: true, StoreDir: t.TempDir(),
			// clients know only the server they were given: a stopped server cuts its
			// clients off (a partition), instead of moving them to another
			Cluster: server.ClusterOpts{Name: "nex", Host: "127.0.0.1", Port: ports[i], NoAdvertise: true},
			Routes:  routes,
		}
		servers[i] = startOpts(t, o)
		u, _ := url.Parse(servers[i].ClientURL())
		again := *o
		again.Port, _ = strconv.Atoi(u.Port())
		started.Store(servers[i], &again)
	}
	Eventually(t, 30*time.Second, "the cluster to form with a JetStream leader", func() bool {
		for _, s := range servers {
			if s.NumRoutes() < n-1 || !s.JetStreamIsClustered() {
				return false
			}
		}
		nc, err := nats.Connect(servers[0].ClientURL())
		if err != nil {
			return false
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err == nil
	})
	return servers
}

func startOpts(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// started keeps the options of StartCluster's servers, for RestartServer.
var started sync.Map // *server.Server -> *server.Options

// RestartServer starts a stopped server of StartCluster again with the same options (its
// client port, cluster port and store), as after a machine's reboot.
func RestartServer(t testing.TB, s *server.Server) *server.Server {
	t.Helper()
	o, ok := started.Load(s)
	if !ok {
		t.Fatal("RestartServer: not a server of StartCluster")
	}
	again := *o.(*server.Options)
	n := startOpts(t, &again)
	started.Store(n, o)
	return n
}
