package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"golang.org/x/sys/unix"
)

// A tenant whose workdirs lie under /tmp (the node's data dir there) cannot run, through
// the sandbox helper, a file behind a directory its workloads may not enter. Its service
// swaps a file of its workdir, again and again, between a script it may run and a symlink
// to the operator's tool in a closed directory, and it starts jobs of that file. The
// nexlet checks the executable as the job's user (a symlink fails); the helper then held
// the path open to bind it back over the private /tmp, as root, and some jobs ran the
// operator's tool. Now the helper opens it as the job's user too. Run as the tenant, with
// the documented tenant rights, on an operator-mode server.
func TestTenantCannotBindAClosedFileIntoItsSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads run in sandboxes of their own only as root: run as root")
	}
	op, u, url, nodeCreds := issuerSetup(t)
	if !strings.HasPrefix(u.home, "/tmp/") {
		t.Skipf("the attack needs a data dir under /tmp; the test's is %s", u.home)
	}
	closed := filepath.Join(u.home, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(closed, "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho behind a closed door\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	var nodes []v1.NodeInfo
	if err := json.Unmarshal([]byte(u.mustNex("-s", url, "--nats.creds-file", nodeCreds, "node", "list", "--json")), &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("node list: %v %v", nodes, err)
	}
	if nodes[0].Tags[v1.TagSandbox] != v1.SandboxNamespaces {
		t.Skipf("the node does not sandbox workloads here (nex.sandbox=%s)", nodes[0].Tags[v1.TagSandbox])
	}
	a := op.tenant(t, u, url, "a", "alice")
	swap := `chmod 755 . && printf '#!/bin/sh\necho an honest tool\n' > honest && chmod 755 honest && echo "dir=$PWD" &&
while :; do ln -sfn ` + tool + ` run; cp -f honest run.new && mv -f run.new run; done`
	argv, _ := json.Marshal([]string{"-c", swap})
	_, swapper := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "swapper",
		"--start-request", `{"uri":"file:///bin/sh","argv":`+string(argv)+`}`)...))
	var dir string
	testutil.Eventually(t, 15*time.Second, "the swapper's workdir", func() bool {
		out, _, _ := u.nex(append(a, "workload", "logs", swapper)...)
		_, dir, _ = strings.Cut(strings.TrimSpace(out), "dir=")
		return dir != ""
	})
	run := filepath.Join(dir, "run")
	var started []string
	refusedAtStart := 0 // the helper's refusal, reported before the start was answered
	for i := 0; i < 40; i++ {
		out, errOut, code := u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "job",
			"--start-request", `{"uri":"file://`+run+`"}`)...)
		if code == 0 {
			_, id := startedID(t, out)
			started = append(started, id)
		} else if strings.Contains(errOut, "as UID") && strings.Contains(errOut, "permission denied") {
			refusedAtStart++
		}
	}
	if len(started) == 0 && refusedAtStart == 0 {
		t.Fatal("no job of the swapped file reached the sandbox helper: the attack was not tried")
	}
	ran, refused := 0, refusedAtStart
	for _, id := range started {
		var out string
		testutil.Eventually(t, 15*time.Second, "job "+id+"'s line", func() bool {
			stdout, stderr, _ := u.nex(append(a, "workload", "logs", id)...)
			out = stdout + stderr // the helper's refusal is on stderr
			return strings.Contains(out, "tool") || strings.Contains(out, "closed door") || strings.Contains(out, "nex sandbox:")
		})
		if strings.Contains(out, "closed door") {
			ran++
		}
		if strings.Contains(out, "nex sandbox: open") {
			refused++
		}
	}
	if ran > 0 {
		t.Fatalf("%d of %d jobs of the swapped file ran the operator's tool behind a closed directory", ran, len(started))
	}
	t.Logf("%d jobs started, %d refused by the helper (%d at their start): none ran the operator's tool", len(started), refused, refusedAtStart)
}

// A tenant's exec cannot have the sandbox helper open a file of root's for writing: a
// command path whose text lies under /tmp (/tmp/../srv/x/file) was "kept" as one under
// the private /tmp, and root made its mount point by that text, on the host. Run as the
// tenant, with the documented tenant rights, on an operator-mode server.
func TestTenantExecCannotOpenRootsFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads run in sandboxes of their own only as root: run as root")
	}
	op, u, url, nodeCreds := issuerSetup(t)
	// outside the directories the sandbox makes private (a test's own are under /tmp)
	dir, err := os.MkdirTemp("/var/lib", "nex-root-only-")
	if err != nil {
		t.Skipf("no directory of root's outside /tmp to try: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the workload may look in, not write or read
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "file")
	if err := os.WriteFile(victim, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, victim, unix.IN_OPEN|unix.IN_CLOSE_WRITE); err != nil {
		t.Fatal(err)
	}
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a := op.tenant(t, u, url, "a", "alice")
	_, id := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "beside",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...))
	for _, path := range []string{"/tmp/.." + victim, "/tmp//.." + victim} {
		_, errOut, code := u.nex(append(a, "workload", "exec", id, "--", path)...)
		if code == 0 || !strings.Contains(errOut, "clean absolute path") {
			t.Errorf("exec of %s: exit %d %s", path, code, errOut)
		}
	}
	buf := make([]byte, 4096)
	if n, _ := unix.Read(in, buf); n > 0 {
		t.Fatalf("root opened %s for the tenant's exec (%d bytes of inotify events)", victim, n)
	}
}
