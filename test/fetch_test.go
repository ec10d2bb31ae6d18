package test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
	"golang.org/x/sys/unix"
)

// A tenant with the documented rights of namespace a names an http:// artifact on an
// address that only root should reach (a cloud's metadata endpoint, say, kept from the
// workload UIDs by a firewall rule on their owner): root's nexlet fetched it through a
// socket of root's. It is fetched through a socket of the workload's own user now, the
// UID the job then runs as. The server stands in for the endpoint and says whose the
// connecting socket is.
func TestTenantFetchesAsItself(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads get users of their own only as root: run as root")
	}
	owner := make(chan int, 1)
	srv := ownerServer(t, owner, "the node's cloud credentials")
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a := op.tenant(t, u, url, "a", "alice")
	_, id := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "meta",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo uid=$(id -u)"],"artifacts":[{"uri":"`+srv.URL+`/latest/meta-data/","path":"meta"}]}`)...))
	var fetchedBy int
	select {
	case fetchedBy = <-owner:
	case <-time.After(10 * time.Second):
		t.Fatal("the nexlet did not fetch")
	}
	var ranAs string
	testutil.Eventually(t, 15*time.Second, "the job's output", func() bool {
		out, _, _ := u.nex(append(a, "workload", "logs", id)...)
		_, ranAs, _ = strings.Cut(strings.TrimSpace(out), "uid=")
		return ranAs != ""
	})
	if fetchedBy == 0 || strconv.Itoa(fetchedBy) != ranAs {
		t.Fatalf("fetched through a socket of UID %d; the job ran as UID %s", fetchedBy, ranAs)
	}
}

// A tenant's health checks connect as the tenant: the http and tcp checks of its service
// reach a port through sockets of the service's own user, so a firewall rule on the
// workload UIDs holds for them (the root nexlet connected as root, to any port and path
// a tenant named).
func TestTenantHealthChecksAsItself(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads get users of their own only as root: run as root")
	}
	owners := make(chan int, 16)
	srv := ownerServer(t, owners, "")
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	// a tcp check closes its connection at once, and a closed socket's owner is gone from
	// /proc/net/tcp before the test can read it: the tcp check's port is a listener whose
	// one place in its queue is taken, so that the check's socket waits, retrying its SYN,
	// long enough to be read
	tcpPort := fullListener(t)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if uid := synSentOwner(tcpPort); uid >= 0 {
				select {
				case owners <- uid:
				default:
				}
			}
		}
	}()
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a := op.tenant(t, u, url, "a", "alice")
	for i, check := range []string{
		`{"http":{"port":` + port + `,"path":"/admin/delete-everything"},"interval":"200ms"}`,
		`{"tcp":{"port":` + strconv.Itoa(tcpPort) + `},"interval":"200ms"}`,
	} {
		for len(owners) > 0 {
			<-owners
		}
		_, id := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "checked"+strconv.Itoa(i),
			"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo uid=$(id -u); exec sleep 600"],"health":`+check+`}`)...))
		var checkedBy int
		select {
		case checkedBy = <-owners:
		case <-time.After(10 * time.Second):
			t.Fatalf("no health check came (%s)", check)
		}
		var ranAs string
		testutil.Eventually(t, 15*time.Second, "the service's output", func() bool {
			out, _, _ := u.nex(append(a, "workload", "logs", id)...)
			_, ranAs, _ = strings.Cut(strings.TrimSpace(out), "uid=")
			return ranAs != ""
		})
		if checkedBy <= 0 || strconv.Itoa(checkedBy) != ranAs {
			t.Fatalf("health check %s came through a socket of UID %d; the service runs as UID %s", check, checkedBy, ranAs)
		}
		u.mustNex(append(a, "workload", "stop", id)...)
	}
}

// fullListener listens on a port of 127.0.0.1 with a queue of one, and fills it: a
// connection to it then waits in SYN_SENT.
func fullListener(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	for range 2 { // the queue's place, and the one the kernel allows past it
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	return port
}

// synSentOwner is the UID of a socket that waits in SYN_SENT for port, or -1.
func synSentOwner(port int) int {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 || f[3] != "02" {
			continue
		}
		if p, err := strconv.ParseInt(f[2][strings.LastIndex(f[2], ":")+1:], 16, 32); err == nil && int(p) == port {
			if uid, err := strconv.Atoi(f[7]); err == nil {
				return uid
			}
		}
	}
	return -1
}

// ownerServer is an HTTP server that sends to owners, when there is room, the UID whose
// socket each request came through (what a firewall's owner match reads), and answers
// body. It closes with the test.
func ownerServer(t *testing.T, owners chan<- int, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case owners <- testutil.RequestOwner(r):
		default:
		}
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A tenant with the documented rights of namespace a starts twelve jobs at once, each
// fetching a slow http artifact just under the cache's bound: each download went to a
// file of its own in the cache's directory, which the bound did not count, and twelve of
// 63 MiB held 745 MiB of the node's disk against --cache-max-bytes 64MiB (a review's
// walk; at the defaults, 64 GiB). Downloads in flight now hold at most the bound together,
// and one namespace's at most half: the others fail, saying so, and b's download, made
// while a's are in flight, succeeds.
func TestTenantCannotFillTheDiskWithDownloads(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	data := filepath.Join(u.home, "data")
	startNexd(t, u, url, data, "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account, "--cache-max-bytes", "64MiB")
	a, b := op.tenant(t, u, url, "a", "alice"), op.tenant(t, u, url, "b", "bob")
	chunk := make([]byte, 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 63
		if r.URL.Path == "/small" {
			n = 1
		}
		for i := range n { // 63 MiB over about 6 s: the server is slow, not the test
			if _, err := w.Write(chunk); err != nil || r.URL.Path == "/small" {
				return
			}
			if i < n-1 {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}))
	defer srv.Close()
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			sr := fmt.Sprintf(`{"uri":"file:///bin/true","artifacts":[{"uri":"%s/big%d"}]}`, srv.URL, i)
			u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", fmt.Sprintf("f%d", i), "--start-request", sr)...)
		})
	}
	cache := filepath.Join(data, "native", "cache")
	var peak int64
	bStarted := false
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var total int64
		entries, _ := os.ReadDir(cache)
		for _, e := range entries {
			if info, err := e.Info(); err == nil {
				total += info.Size()
			}
		}
		peak = max(peak, total)
		if !bStarted && total > 8<<20 { // a's downloads under way: b fetches one of its own
			bStarted = true
			out, errs, code := u.nex(append(b, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "small",
				"--start-request", `{"uri":"file:///bin/true","artifacts":[{"uri":"`+srv.URL+`/small"}]}`)...)
			if code != 0 {
				t.Errorf("b's download while a's are in flight: exit %d %s %s", code, out, errs)
			}
		}
	}
	wg.Wait()
	if peak > 2*64<<20+2<<20 {
		t.Fatalf("the cache's directory held %d MiB against --cache-max-bytes 64MiB (twice it at most: the cache and the downloads in flight)", peak>>20)
	}
	if !bStarted {
		t.Fatal("a's downloads never got under way")
	}
	t.Logf("the cache's directory held at most %d MiB against a bound of 64 MiB", peak>>20)
}

// Tenant a names as an artifact a path through the nexlet's own open files: /dev/stdout,
// /dev/fd/1, /proc/self/fd/1. nexd's output went, as the walkthrough writes it, to a log
// in a directory of root's (0700) that a's user may not search, and the nexlet inherits
// it: opening such a link checked only the log's own mode (0644), so a's job read root's
// node log (other namespaces' names, start errors with their artifacts' passwords). Such
// paths are refused now; the log by its own path was refused already.
func TestTenantCannotReadTheNexletsOpenFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads get users of their own only as root: run as root")
	}
	op, u, url, nodeCreds := issuerSetup(t)
	// a directory of root's outside the sandbox's private ones (/tmp is the sandbox's own)
	private, err := os.MkdirTemp("/var/lib", "nex-test-ops-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(private) })
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(private, "nexd.log")
	u.wrap = map[string][]string{"nexd": {"/bin/sh", "-c", `umask 022; exec "$0" "$@" > ` + logPath + ` 2>&1`}}
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a := op.tenant(t, u, url, "a", "alice")
	for _, path := range []string{logPath, "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1", "/dev/fd/2"} {
		sr := `{"uri":"file:///bin/sh","argv":["-c","grep -c . log"],"artifacts":[{"uri":"file://` + path + `","path":"log"}]}`
		out, errOut, code := u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "peek", "--start-request", sr)...)
		if code == 0 {
			_, id := startedID(t, out)
			logs, _, _ := u.nex(append(a, "workload", "logs", id)...)
			t.Errorf("a's job was given %s of the nexlet as an artifact: it counted %q lines of root's node log", path, strings.TrimSpace(logs))
			continue
		}
		if !strings.Contains(errOut, "permission denied") && !strings.Contains(errOut, "is refused") {
			t.Errorf("%s: exit %d, %s; want it refused", path, code, errOut)
		}
	}
	// nor is the nexlet's open file looked at as the executable (its mode was told)
	sr := `{"uri":"file:///dev/fd/1"}`
	if _, errOut, code := u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "peek", "--start-request", sr)...); code == 0 || !strings.Contains(errOut, "goes through one of /proc's links into a process") {
		t.Errorf("/dev/fd/1 of the nexlet as the executable: exit %d, %s", code, errOut)
	}
}
