package test

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// A tenant on a node without the sandbox (nex.sandbox=none: nexlet-native runs as root
// without CAP_SYS_ADMIN, so it switches users but gets no namespaces), holding the CLI
// credentials docs/security.md gives namespace a, starts a job that leaves its session
// and keeps forking, each copy ending once it has started the next, and removes the job.
// The UID sweep killed the processes it found by reading /proc, by PID, and this one is
// never at a PID it read: it outlived its workload, as the UID the next workload gets.
// Every process of a UID is now killed at once, by UID, and it ends with its workload.
// The node runs 400 other processes, as a busy node does, and no cgroups (--cgroups none),
// whose kill at removal, also by PID, caught this process more often than not. Run as
// root, as CI does.
func TestForkingTenantEndsWithItsWorkloadUnsandboxed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the nexlet runs workloads as users of their own only as root: run as root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to run nexd without CAP_SYS_ADMIN")
	}
	forker := testutil.BuildC(t, "forker", testutil.Forker)
	testutil.StartDecoys(t, 400)
	op, u, url, nodeCreds := issuerSetup(t)
	u.wrap = map[string][]string{"nexd": {setpriv, "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--"}}
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account,
		"--cgroups", "none") // no cgroup to kill the job's processes by either: the UID's sweep alone
	admin := []string{"-s", url, "--nats.creds-file", nodeCreds}
	var nodes []v1.NodeInfo
	if err := json.Unmarshal([]byte(u.mustNex(append(admin, "node", "list", "--json")...)), &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("node list: %v %v", nodes, err)
	}
	if tags := nodes[0].Tags; tags[v1.TagIsolation] != v1.IsolationUID || tags[v1.TagSandbox] != v1.SandboxNone {
		t.Fatalf("a root node without CAP_SYS_ADMIN says nex.isolation=%s nex.sandbox=%s", tags[v1.TagIsolation], tags[v1.TagSandbox])
	}
	tenantCreds := op.user(t, u.home, "tenant-a", &jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{"$NEX.SVC.v1.a.>"}},
		Sub: jwt.Permission{Allow: jwt.StringList{"_INBOX_alice.>"}},
	})
	tenant := []string{"-s", url, "--nats.creds-file", tenantCreds, "--nats.inbox-prefix", "_INBOX_alice", "--namespace", "a"}

	// the test's probe, not the attack's: every copy holds this FIFO open
	fifo := filepath.Join(u.home, "alive")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fifo, 0o666); err != nil { // past the umask: the workload's UID is not known yet
		t.Fatal(err)
	}
	reader, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })

	out := u.mustNex(append(tenant, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "forker",
		"--start-request", `{"uri":"file://`+forker+`","argv":["`+fifo+`"]}`)...)
	_, id := startedID(t, out)
	uid := forkerUID(t, reader)
	t.Cleanup(func() { testutil.KillUser(t, uid, reader) })
	// its first process has exited: the job is over, and its copies run on as its UID
	testutil.Eventually(t, 15*time.Second, "the job to be over", func() bool {
		var list []v1.WorkloadInfo
		_ = json.Unmarshal([]byte(u.mustNex(append(tenant, "workload", "list", "--json")...)), &list)
		for _, w := range list {
			if w.ID == id {
				return w.State == v1.StateStopped
			}
		}
		return false
	})
	if testutil.FIFOClosed(reader, 0) {
		t.Fatal("the forking process ended with its job's first process: no attack to try")
	}
	u.mustNex(append(tenant, "workload", "rm", id)...)
	if !testutil.FIFOClosed(reader, 10*time.Second) {
		t.Fatalf("a process of the removed job's UID %d still runs 10 s after its removal: the UID's next workload shares it", uid)
	}
}

// forkerUID reads the UID the forking process's first copy writes to the FIFO.
func forkerUID(t *testing.T, fifo *os.File) uint32 {
	t.Helper()
	if err := fifo.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var line []byte
	buf := make([]byte, 16)
	for !strings.Contains(string(line), "\n") {
		n, err := fifo.Read(buf)
		line = append(line, buf[:n]...)
		if errors.Is(err, io.EOF) { // no writer yet
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("the forking process did not start: %v", err)
		}
	}
	uid, err := strconv.ParseUint(strings.TrimSpace(string(line)), 10, 32)
	if err != nil {
		t.Fatalf("the forking process wrote %q", line)
	}
	return uint32(uid)
}
