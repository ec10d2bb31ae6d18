package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/node/history"
	"github.com/nexrun/nex/pkg/runtime/native/cgroups"
)

// A hostile tenant, holding the CLI credentials docs/security.md gives namespace a,
// tries to make the root nexlet act for it on the host: read the node's keys, /etc/shadow
// and namespace b's credentials and environment through file:// artifacts; write a
// root-owned file through symlinks planted for the credential renewal; lend itself b's
// workdir; run as a system user or group; gain privileges through a setuid program; read
// b's object store through nats://. Each is refused or contained, b keeps running with its
// credentials intact, and the root-owned file is unchanged. Run as root, as CI does.
func TestTenantCannotActThroughTheNexlet(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the nexlet acts for workloads with rights of its own only as root: run as root")
	}
	op, u, url, nodeCreds := issuerSetup(t)
	data := filepath.Join(u.home, "data")
	// credentials renewed every second, so that the renewal attack is tried many times;
	// operator defaults for every workload that asks for no limits (memory and processes
	// where this machine has the cgroups for them)
	hogs := slices.Contains(cgroups.Probe(), v1.ResourceMemory) && slices.Contains(cgroups.Probe(), v1.ResourcePIDs)
	defaults := "disk=16MiB"
	if hogs {
		defaults = "memory=64MiB,pids=64,disk=16MiB"
	}
	n := startNexd(t, u, url, data, "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account,
		"--workload-creds-ttl", "3s", "--require-isolation", "*", "--default-limits", defaults)
	admin := []string{"-s", url, "--nats.creds-file", nodeCreds}
	var nodes []v1.NodeInfo
	if err := json.Unmarshal([]byte(u.mustNex(append(admin, "node", "list", "--json")...)), &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("node list: %v %v", nodes, err)
	}
	if tags := nodes[0].Tags; tags[v1.TagIsolation] != v1.IsolationUID || tags[v1.TagSandbox] != v1.SandboxNamespaces {
		t.Fatalf("a root node says nex.isolation=%s nex.sandbox=%s", tags[v1.TagIsolation], tags[v1.TagSandbox])
	}
	tenantCreds := op.user(t, u.home, "tenant-a", &jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{"$NEX.SVC.v1.a.>"}},
		Sub: jwt.Permission{Allow: jwt.StringList{"_INBOX_alice.>"}},
	})
	tenant := []string{"-s", url, "--nats.creds-file", tenantCreds, "--nats.inbox-prefix", "_INBOX_alice", "--namespace", "a"}
	startA := func(name, lifecycle, sr string) (string, string, int) {
		return u.nex(append(tenant, "workload", "start", "--type", "native", "--lifecycle", lifecycle, "--name", name, "--start-request", sr)...)
	}
	list := func(ns string) []v1.WorkloadInfo {
		var l []v1.WorkloadInfo
		_ = json.Unmarshal([]byte(u.mustNex(append(admin, "--namespace", ns, "workload", "list", "--show-metadata", "--json")...)), &l)
		return l
	}
	find := func(ns, id string) v1.WorkloadInfo {
		for _, w := range list(ns) {
			if w.ID == id {
				return w
			}
		}
		return v1.WorkloadInfo{}
	}
	logsOf := func(ns, id string) string {
		out, _, _ := u.nex(append(admin, "--namespace", ns, "workload", "logs", id)...)
		return out
	}

	// the victim: namespace b's service with a secret in its environment
	out := u.mustNex(append(admin, "--namespace", "b", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "victim",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"],"environment":{"SECRET":"hunter2"}}`)...)
	_, victim := startedID(t, out)
	var bPid string
	testutil.Eventually(t, 10*time.Second, "b's workload to run", func() bool {
		w := find("b", victim)
		bPid = w.Metadata["pid"]
		return w.State == v1.StateRunning && bPid != ""
	})
	bWorkdir := filepath.Join(data, "native", "workloads", victim)
	bCreds := filepath.Join(bWorkdir, ".nex", "nats.creds")
	// a root-owned file the tenant will try to overwrite
	target := filepath.Join(u.home, "root-owned.conf")
	if err := os.WriteFile(target, []byte("ORIGINAL\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("reads as root through file:// artifacts", func(t *testing.T) {
		for _, p := range []string{filepath.Join(data, "node.seed"), filepath.Join(data, "native", "xkey.seed"), filepath.Join(data, "native.creds"),
			nodeCreds, "/etc/shadow", bCreds, "/proc/" + bPid + "/environ", "/proc/self/root/etc/shadow"} {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("%s is not there to steal: %v", p, err)
			}
			_, errOut, code := startA("steal", "job", `{"uri":"file:///bin/cat","argv":["k"],"artifacts":[{"uri":"file://`+p+`","path":"k"}]}`)
			// /proc/self/root: the nexlet's root, refused as a link of /proc into a process
			if code == 0 || (!strings.Contains(errOut, "permission denied (the nexlet acts as the workload's own user)") && !strings.Contains(errOut, "goes through one of /proc's links into a process")) {
				t.Errorf("artifact file://%s: exit %d: %s", p, code, errOut)
			}
		}
		// what the workload's user may read still works, and so does an executable as the guide has it
		_, id := startedID(t, mustStart(t, startA, "fine", "job", `{"uri":"file:///bin/echo","argv":["hello"],"artifacts":[{"uri":"file:///etc/hostname","path":"h"}]}`))
		testutil.Eventually(t, 10*time.Second, "the allowed job to end", func() bool { return find("a", id).State == v1.StateStopped })
		if w := find("a", id); w.ExitCode == nil || *w.ExitCode != 0 {
			t.Fatalf("a job with a readable artifact: %+v", w)
		}
	})

	t.Run("writes as root through symlinks at renewal", func(t *testing.T) {
		// the workload swaps its .nex for one of its own, with the renewal's file names
		// pointing at a root-owned file, and then its whole .nex for a symlink
		script := u.write("swap.sh", `#!/bin/sh
cd "$HOME"
if ln -s `+target+` .nex/nats.creds.new 2>/dev/null; then echo "PLANTED in .nex"; else echo "DENIED plant in .nex"; fi
mv .nex .nex.orig && mkdir .nex && ln -s `+target+` .nex/nats.creds.new && ln -s `+target+` .nex/nats.creds && echo "SWAPPED .nex"
sleep 3
rm -rf .nex && ln -s `+filepath.Dir(target)+` .nex && echo "LINKED .nex"
exec sleep 600
`, 0o755)
		out := mustStart(t, startA, "swap", "service", `{"uri":"file://`+script+`"}`)
		_, id := startedID(t, out)
		testutil.Eventually(t, 15*time.Second, "the workload to swap its .nex", func() bool { return strings.Contains(logsOf("a", id), "LINKED .nex") })
		testutil.Eventually(t, 15*time.Second, "renewals refused after the swap", func() bool {
			return strings.Count(n.bg.out.String(), "renew workload credentials") >= 3 && strings.Contains(n.bg.out.String(), "a symlink is not followed")
		})
		if logs := logsOf("a", id); !strings.Contains(logs, "DENIED plant in .nex") {
			t.Errorf("the workload could write into its .nex:\n%s", logs)
		}
		if b, _ := os.ReadFile(target); string(b) != "ORIGINAL\n" {
			t.Fatalf("a root-owned file was overwritten through a planted symlink: %q", b)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(target), "nats.creds")); err == nil {
			t.Fatal("the renewal wrote through a symlinked .nex")
		}
		u.mustNex(append(admin, "--namespace", "a", "workload", "stop", id)...)
	})

	t.Run("a lent workdir in another tenant's directory", func(t *testing.T) {
		before := mustRead(t, bCreds)
		for _, wd := range []string{bWorkdir, filepath.Join(data, "native"), data, "/etc"} {
			_, errOut, code := startA("lend", "service", `{"uri":"file:///bin/sleep","argv":["600"],"workdir":"`+wd+`"}`)
			if code == 0 || !strings.Contains(errOut, "start_request.workdir") {
				t.Errorf("workdir %s: exit %d: %s", wd, code, errOut)
			}
		}
		if after := mustRead(t, bCreds); !bytes.Equal(before, after) {
			// renewed meanwhile (every second): it must still be a whole creds file of b's
			if !bytes.Contains(after, []byte("NATS USER JWT")) {
				t.Fatalf("b's credentials were overwritten: %q", after)
			}
		}
		st, err := os.Stat(filepath.Join(bWorkdir, ".nex"))
		if err != nil || !st.IsDir() {
			t.Fatalf("b's .nex is gone: %v", err)
		}
	})

	t.Run("IDs cannot be predicted", func(t *testing.T) {
		var ids []string
		for range 4 {
			_, id := startedID(t, mustStart(t, startA, "id", "job", `{"uri":"file:///bin/true"}`))
			ids = append(ids, id)
		}
		for i := range ids {
			for j := range i {
				if ids[i][:8] == ids[j][:8] {
					t.Errorf("two workload IDs share their first 8 characters: %s %s", ids[i], ids[j])
				}
			}
		}
	})

	t.Run("no_new_privs on every workload", func(t *testing.T) {
		var ids []string
		for range 20 {
			_, id := startedID(t, mustStart(t, startA, "nnp", "job", `{"uri":"file:///bin/grep","argv":["NoNewPrivs","/proc/self/status"]}`))
			ids = append(ids, id)
		}
		for _, id := range ids {
			testutil.Eventually(t, 15*time.Second, "the job's report", func() bool { return strings.Contains(logsOf("a", id), "NoNewPrivs") })
			if logs := logsOf("a", id); !strings.Contains(logs, "NoNewPrivs:\t1") {
				t.Errorf("workload %s runs without no_new_privs: %q", id, logs)
			}
		}
	})

	// nexd and nexlet-native must not die of a closed stderr (SIGPIPE), and their workloads
	// must not inherit that: an ignored signal stays ignored across fork and exec.
	t.Run("no signal ignored or blocked in a workload", func(t *testing.T) {
		_, id := startedID(t, mustStart(t, startA, "sigs", "job", `{"uri":"file:///bin/grep","argv":["-E","^Sig(Ign|Blk)","/proc/self/status"]}`))
		testutil.Eventually(t, 15*time.Second, "the job's report", func() bool { return strings.Contains(logsOf("a", id), "SigBlk") })
		for _, want := range []string{"SigIgn:\t0000000000000000", "SigBlk:\t0000000000000000"} {
			if logs := logsOf("a", id); !strings.Contains(logs, want) {
				t.Errorf("the workload's signals: %q, want %q", logs, want)
			}
		}
	})

	t.Run("user and group are the operator's", func(t *testing.T) {
		for _, extra := range []string{`"user":"nobody"`, `"user":"root"`, `"user":"0"`, `"user":"daemon","group":"shadow"`} {
			_, errOut, code := startA("who", "job", `{"uri":"file:///usr/bin/id",`+extra+`}`)
			if code == 0 || !strings.Contains(errOut, "may not run as") {
				t.Errorf("%s: exit %d: %s", extra, code, errOut)
			}
		}
	})

	t.Run("nats:// reads only the namespace's own bucket", func(t *testing.T) {
		nc, err := nats.Connect(url, nats.UserCredentials(nodeCreds))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ctx := context.Background()
		for _, ns := range []string{"a", "b"} {
			b := v1.BundleBucket(ns)
			store := bundleBucket(t, nc, ns)
			if _, err := store.PutBytes(ctx, "note", []byte("content of "+b+"\n")); err != nil {
				t.Fatal(err)
			}
		}
		_, errOut, code := startA("other", "job", `{"uri":"file:///bin/cat","argv":["note"],"artifacts":[{"uri":"nats://`+v1.BundleBucket("b")+`/note","path":"note"}]}`)
		if code == 0 || !strings.Contains(errOut, "may not read it") {
			t.Errorf("a's workload fetched b's object: exit %d: %s", code, errOut)
		}
		_, id := startedID(t, mustStart(t, startA, "own", "job", `{"uri":"file:///bin/cat","argv":["note"],"artifacts":[{"uri":"nats://`+v1.BundleBucket("a")+`/note","path":"note"}]}`))
		testutil.Eventually(t, 15*time.Second, "a's own object", func() bool { return strings.Contains(logsOf("a", id), "content of "+v1.BundleBucket("a")) })
	})

	t.Run("hogs are held to the operator's defaults", func(t *testing.T) {
		_, disk := startedID(t, mustStart(t, startA, "disk-hog", "service", `{"uri":"file:///bin/sh","argv":["-c","head -c 64m /dev/zero > /tmp/x || echo TMP FULL; head -c 64m /dev/zero > big; exec sleep 600"]}`))
		testutil.Eventually(t, 20*time.Second, "the disk hog stopped for good", func() bool { return find("a", disk).State == v1.StateFailed })
		if w := find("a", disk); w.ExitReason != v1.ExitDiskLimit || !strings.Contains(logsOf("a", disk), "TMP FULL") {
			t.Errorf("a workload filling its /tmp and workdir past the default of 16 MiB: %+v\n%s", w, logsOf("a", disk))
		}
		if !hogs {
			t.Skip("this machine has no memory and pids cgroups for the nexlet: the disk default alone was tried")
		}
		_, forks := startedID(t, mustStart(t, startA, "fork-hog", "service", `{"uri":"file:///bin/sh","argv":["-c","exec 2>&1; for i in $(seq 1 200); do sleep 600 & done; echo FORKED; exec sleep 600"]}`))
		testutil.Eventually(t, 20*time.Second, "a fork refused under the default of pids=64", func() bool {
			return strings.Contains(strings.ToLower(logsOf("a", forks)), "fork")
		})
		u.mustNex(append(admin, "--namespace", "a", "workload", "stop", forks)...)
		_, mem := startedID(t, mustStart(t, startA, "memory-hog", "job", `{"uri":"file:///bin/sh","argv":["-c","a=$(head -c 200000000 /dev/zero | tr '\\0' x); echo SURVIVED"]}`))
		testutil.Eventually(t, 30*time.Second, "the memory hog's end", func() bool { return find("a", mem).State == v1.StateStopped || find("a", mem).State == v1.StateFailed })
		if w := find("a", mem); w.ExitReason != v1.ExitOOMKilled || strings.Contains(logsOf("a", mem), "SURVIVED") {
			t.Errorf("200 MB under a default of memory=64MiB: %+v\n%s", w, logsOf("a", mem))
		}
	})

	t.Run("processes and IPC of others are out of sight", func(t *testing.T) {
		script := u.write("peek.sh", `#!/bin/sh
kill -0 `+bPid+` 2>/dev/null && echo "SEES b" || echo "NO b"
echo "PROCS $(ls /proc | grep -c '^[0-9]')"
ipcmk -M 4242 >/dev/null && echo "SHM made"
`, 0o755)
		_, id := startedID(t, mustStart(t, startA, "peek", "job", `{"uri":"file://`+script+`"}`))
		testutil.Eventually(t, 15*time.Second, "the peek's report", func() bool { return strings.Contains(logsOf("a", id), "SHM made") })
		logs := logsOf("a", id)
		procs := -1
		if _, after, ok := strings.Cut(logs, "PROCS "); ok {
			procs, _ = strconv.Atoi(strings.Fields(after)[0])
		}
		if !strings.Contains(logs, "NO b") || procs < 1 || procs > 5 { // its init, sh, and ls | grep
			t.Errorf("a's workload sees other processes:\n%s", logs)
		}
		testutil.Eventually(t, 15*time.Second, "the peek's end", func() bool { return find("a", id).State == v1.StateStopped })
		if b, _ := os.ReadFile("/proc/sysvipc/shm"); strings.Contains(string(b), " 4242 ") {
			t.Errorf("a's shared memory segment outlived its workload, on the host:\n%s", b)
		}
	})

	// b is untouched through all of it
	w := find("b", victim)
	if w.State != v1.StateRunning || w.Metadata["pid"] != bPid {
		t.Fatalf("b's workload after the attacks: %+v", w)
	}
	if b, _ := os.ReadFile(target); string(b) != "ORIGINAL\n" {
		t.Fatalf("the root-owned file: %q", b)
	}
}

// mustStart starts with start (a tenant's) and fails the test when it fails.
func mustStart(t *testing.T, start func(name, lifecycle, sr string) (string, string, int), name, lifecycle, sr string) string {
	t.Helper()
	out, errOut, code := start(name, lifecycle, sr)
	if code != 0 {
		t.Fatalf("start %s %s: exit %d: %s", name, sr, code, errOut)
	}
	return out
}

// A tenant with namespace a's documented CLI credentials sends what the CLI would refuse
// to: LAMEDUCK of the node under its own subject, RELEASE and DEPLOY of a bid namespace b
// won, a thousand guessed bid IDs while b starts workloads, and a CLONE whose reseal_for
// is a key of its own. Each is refused (403 forbidden, or the bid is unknown to it), the
// node keeps running, and every one of b's starts succeeds.
func TestEveryVerbChecksItsCaller(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	xk, _ := nkeys.CreateCurveKeys()
	xseed, _ := xk.Seed()
	secretsKey := u.write("secrets.seed", string(xseed), 0o600)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account, "--secrets-key", secretsKey)
	admin := []string{"-s", url, "--nats.creds-file", nodeCreds}
	var nodes []v1.NodeInfo
	if err := json.Unmarshal([]byte(u.mustNex(append(admin, "node", "list", "--json")...)), &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("node list: %v %v", nodes, err)
	}
	nodeID := nodes[0].NodeID
	tenantCreds := op.user(t, u.home, "tenant-a", &jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{"$NEX.SVC.v1.a.>"}},
		Sub: jwt.Permission{Allow: jwt.StringList{"_INBOX_alice.>"}},
	})
	tenant, err := nats.Connect(url, nats.UserCredentials(tenantCreds), nats.CustomInboxPrefix("_INBOX_alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer tenant.Close()
	ask := func(subject string, body any) (*nats.Msg, error) {
		b, _ := json.Marshal(body)
		return tenant.Request(subject, b, 5*time.Second)
	}
	code := func(m *nats.Msg) string { return m.Header.Get("Nats-Service-Error-Code") }

	// what the tenant may do, it can, with exactly the documented rights: secret put
	// needed node administration's PING before SECRET_KEY
	tenantCLI := []string{"-s", url, "--nats.creds-file", tenantCreds, "--nats.inbox-prefix", "_INBOX_alice", "--namespace", "a"}
	if out, errOut, c := u.nex(append(tenantCLI, "secret", "put", "db-password", "hunter2")...); c != 0 {
		t.Fatalf("secret put with a tenant's documented rights: exit %d %s %s", c, out, errOut)
	}
	if out := u.mustNex(append(tenantCLI, "secret", "list")...); !strings.Contains(out, "db-password") {
		t.Fatalf("secret list:\n%s", out)
	}

	// LAMEDUCK under the tenant's own subject
	m, err := ask("$NEX.SVC.v1.a.control.LAMEDUCK."+nodeID, map[string]any{"delay": "30s"})
	if err != nil || code(m) != "403" || !strings.Contains(string(m.Data), "node administration") {
		t.Fatalf("LAMEDUCK from namespace a: %v %v %s", err, m.Header, m.Data)
	}
	if out := u.mustNex(append(admin, "node", "list")...); !strings.Contains(out, "RUNNING") {
		t.Fatalf("the node after a tenant's LAMEDUCK:\n%s", out)
	}

	// b's bid, released and deployed by a
	nc, err := nats.Connect(url, nats.UserCredentials(nodeCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cb, _ := client.New(nc, "b")
	ctx := context.Background()
	def := func(ns, name string) v1.WorkloadDefinition {
		return v1.WorkloadDefinition{Namespace: ns, Name: name, Type: "native", Lifecycle: v1.LifecycleJob, StartRequest: json.RawMessage(`{"uri":"file:///bin/true"}`)}
	}
	bids, _, err := cb.Auction(ctx, v1.AuctionRequest{Type: "native", Lifecycle: v1.LifecycleJob})
	if err != nil || len(bids) != 1 {
		t.Fatalf("b's auction: %v %v", bids, err)
	}
	bid := bids[0].BidID
	if _, err := ask("$NEX.SVC.v1.a.control.RELEASE."+bid, struct{}{}); err != nil {
		t.Fatalf("RELEASE: %v", err)
	}
	m, err = ask("$NEX.SVC.v1.a.control.DEPLOY."+bid, v1.DeployRequest{Workload: def("a", "stolen")})
	if err != nil || code(m) != "410" {
		t.Fatalf("a deployed on b's bid: %v %v %s", err, m.Header, m.Data)
	}
	var w v1.WorkloadInfo
	if err := svcCall(nc, "$NEX.SVC.v1.b.control.DEPLOY."+bid, v1.DeployRequest{Workload: def("b", "mine")}, &w); err != nil || w.ID == "" {
		t.Fatalf("b's deploy on its own bid after a's tries: %v %+v", err, w)
	}

	// a thousand guessed bid IDs while b starts ten workloads
	done := make(chan struct{})
	guessed := make(chan int)
	go func() {
		n := 0
		for ; n < 1000; n++ {
			g := nodeID[len(nodeID)-10:] + v1.NewID()
			if n%2 == 0 {
				_ = tenant.Publish("$NEX.SVC.v1.a.control.RELEASE."+g, []byte("{}"))
			} else {
				_ = tenant.Publish("$NEX.SVC.v1.a.control.DEPLOY."+g, []byte(`{"workload":{"name":"x","type":"native","lifecycle":"job","start_request":{"uri":"file:///bin/true"}}}`))
			}
		}
		_ = tenant.Flush()
		close(done)
		guessed <- n
	}()
	failed := 0
	for i := range 10 {
		if _, err := cb.StartWorkload(ctx, def("b", "s"+strconv.Itoa(i))); err != nil {
			failed++
			t.Logf("b's start %d: %v", i, err)
		}
	}
	<-done
	if n := <-guessed; failed != 0 {
		t.Fatalf("%d of b's 10 starts failed while a sent %d guessed bid IDs", failed, n)
	}

	// CLONE with a reseal_for of the tenant's own making
	ca, _ := client.New(nc, "a")
	sealed := def("a", "sealed")
	sealed.Lifecycle = v1.LifecycleService
	sealed.StartRequest = json.RawMessage(`{"uri":"file:///bin/sleep","argv":["600"],"environment":{"SECRET":"hunter2"}}`)
	sw, err := ca.StartWorkload(ctx, sealed)
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := nkeys.CreateCurveKeys()
	minePub, _ := mine.PublicKey()
	m, err = ask("$NEX.SVC.v1.a.control.CLONE."+sw.ID, v1.CloneRequest{ResealFor: minePub})
	if err != nil || code(m) != "403" || strings.Contains(string(m.Data), "nexenc") {
		t.Fatalf("CLONE resealed for the tenant's key: %v %v %s", err, m.Header, m.Data)
	}
	// a clone the cluster makes still works
	if _, err := ca.CloneWorkload(ctx, sw.ID, client.CloneOptions{}); err != nil {
		t.Fatalf("clone: %v", err)
	}
	// EXEC: beside a's own workload, as that workload's user; b's workload is not a's to reach
	m, err = ask("$NEX.SVC.v1.a.control.EXEC."+w.ID, v1.ExecRequest{Argv: []string{"/usr/bin/id", "-u"}})
	if err != nil || code(m) != "404" {
		t.Fatalf("EXEC beside b's workload, asked as a: %v %v %s", err, m.Header, m.Data)
	}
	r, err := ca.Exec(ctx, sw.ID, v1.ExecRequest{Argv: []string{"/usr/bin/id", "-u"}})
	if err != nil || r.ExitCode != 0 || strings.TrimSpace(string(r.Stdout)) == "0" {
		t.Fatalf("EXEC beside a's own workload runs as root, or not at all: %+v %v", r, err)
	}
}

// svcCall sends req to subject and decodes a reply or its service error.
func svcCall(nc *nats.Conn, subject string, req, resp any) error {
	b, _ := json.Marshal(req)
	m, err := nc.Request(subject, b, 10*time.Second)
	if err != nil {
		return err
	}
	if c := m.Header.Get("Nats-Service-Error-Code"); c != "" {
		return fmt.Errorf("%s: %s", c, m.Data)
	}
	return json.Unmarshal(m.Data, resp)
}

// A start whose nexlet does not answer in time (a fetch that hangs) fails, and the nexlet
// is told to drop it: it must not go on to run a workload nobody can list, stop or remove
// (found by a newcomer walk: the workload ran, untracked, until the node stopped).
func TestTimedOutStartDoesNotRunLater(t *testing.T) {
	aborted := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	defer close(release)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done(): // the nexlet gave up the fetch
			once.Do(func() { close(aborted) })
		case <-release:
		}
	}))
	defer slow.Close()
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	startNexd(t, u, url, filepath.Join(u.home, "data"))
	marker := "late-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	out, errOut, code := u.nex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "late",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","sleep 600; : `+marker+`"],"artifacts":[{"uri":"`+slow.URL+`/big"}]}`)
	if code == 0 || !strings.Contains(errOut, "the start was called off") {
		t.Fatalf("a start whose fetch hangs: exit %d: %s %s", code, out, errOut)
	}
	select {
	case <-aborted:
	case <-time.After(20 * time.Second):
		t.Fatal("the nexlet kept fetching for a start that had failed")
	}
	testutil.Eventually(t, 10*time.Second, "the failed start to be gone from the list", func() bool {
		return len(u.workloads(t, url)) == 0
	})
	if p := processes(marker); len(p) != 0 {
		t.Fatalf("the failed start runs anyway: %v", p)
	}
}

// TestOperatorWalkthrough runs docs/security.md's "Operator mode from scratch" as it is
// written, in an empty directory (on a free port instead of 4222), with the binaries on
// PATH: every command of it must succeed. Then the user it minted reads its job's output,
// and is refused another namespace.
func TestOperatorWalkthrough(t *testing.T) {
	doc := string(mustRead(t, filepath.Join("..", "docs", "security.md")))
	begin, end := strings.Index(doc, "<!-- walkthrough:begin -->"), strings.Index(doc, "<!-- walkthrough:end -->")
	if begin < 0 || end < begin {
		t.Fatal("docs/security.md has no walkthrough block")
	}
	block := doc[begin:end]
	block = block[strings.Index(block, "```bash\n")+len("```bash\n") : strings.LastIndex(block, "```")]
	u := newUser(t)
	if err := os.Chmod(filepath.Dir(u.home), 0o755); err != nil { // workloads of their own users pass through
		t.Fatal(err)
	}
	if err := os.Chmod(u.home, 0o755); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(freePort(t))
	script := "set -euo pipefail\n" + strings.ReplaceAll(strings.ReplaceAll(block, "127.0.0.1:4222", "127.0.0.1:"+port),
		"nex security init ./nex-sec", "nex security init ./nex-sec --listen 127.0.0.1:"+port)
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = u.cwd
	cmd.Env = append(u.env, "PATH="+binDir+":"+os.Getenv("PATH"))
	// the script's nexd (started with &) stays in the script's process group: end the
	// group with the test (nexd stops its nexlet), and wait for its members to go
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var pgid int
	t.Cleanup(func() {
		if pgid == 0 {
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		testutil.Eventually(t, 30*time.Second, "the walkthrough's nexd to stop", func() bool { return syscall.Kill(-pgid, 0) != nil })
	})
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Start()
	if err == nil {
		pgid = cmd.Process.Pid
		err = cmd.Wait()
	}
	out := buf.Bytes()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(u.cwd, "nexd.log"))
		t.Fatalf("the walkthrough failed: %v\n%s\nnexd.log:\n%s", err, out, log)
	}
	for _, want := range []string{"Workload hello [", "Secret db-password stored", "db-password", "Bundled hi: 1 file into NEX_BUNDLES_a", "Workload hi [", "hello ada"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the walkthrough's output lacks %q:\n%s", want, out)
		}
	}
	alice := []string{"-s", "nats://127.0.0.1:" + port, "--nats.creds-file", filepath.Join(u.cwd, "nex-sec", "alice.creds"), "--nats.inbox-prefix", "_INBOX_alice", "--namespace", "a"}
	// the walkthrough's node sets no bounds, and says so (docs/security.md, "A node shared
	// by tenants")
	if log, _ := os.ReadFile(filepath.Join(u.cwd, "nexd.log")); !strings.Contains(string(log), "tenants share this node with no --namespace-quota and no --default-limits") {
		t.Errorf("nexd.log lacks the warning of a node with no bounds:\n%s", log)
	}
	// the node's state is in the state account, where no tenant is
	for creds, want := range map[string]bool{"node.creds": false, "state.creds": true} {
		nc, err := nats.Connect("nats://127.0.0.1:"+port, nats.UserCredentials(filepath.Join(u.cwd, "nex-sec", creds)))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		for _, bucket := range []string{"NEX_STATE", "NEX_SECRETS"} {
			if _, err := js.KeyValue(context.Background(), bucket); (err == nil) != want {
				t.Errorf("bucket %s in the account of %s: %v, want %v", bucket, creds, err == nil, want)
			}
		}
		nc.Close()
	}
	var list []v1.WorkloadInfo
	if err := json.Unmarshal([]byte(u.mustNex(append(alice, "workload", "list", "--json")...)), &list); err != nil {
		t.Fatal(err)
	}
	for _, w := range list {
		if w.Name != "hello" {
			continue
		}
		testutil.Eventually(t, 10*time.Second, "hello's output in its history", func() bool {
			logs, _, _ := u.nex(append(alice, "workload", "logs", w.ID)...)
			return strings.Contains(logs, "hello from nex")
		})
		if ev := u.mustNex(append(alice, "workload", "events", w.ID)...); !strings.Contains(ev, "started") {
			t.Errorf("hello's events:\n%s", ev)
		}
		// a walk's findings: the events of no such workload said nothing and exited 0, and
		// following a finished job's stderr said "-f to follow"
		if _, errOut, code := u.nex(append(alice, "workload", "events", "NoSuchWorkloadIDxxxxxx")...); code == 0 || !strings.Contains(errOut, "not found in namespace a, and no events of it are kept") {
			t.Errorf("events of no such workload: exit %d %s", code, errOut)
		}
		// another namespace's bundle bucket: refused, not "context deadline exceeded"
		if _, errOut, code := u.nex(append(alice, "workload", "bundle", "list", "--bucket", "NEX_BUNDLES_b")...); code == 0 || !strings.Contains(errOut, "permission denied: this NATS user may not use object store NEX_BUNDLES_b") {
			t.Errorf("bundle list of b's bucket: exit %d %s", code, errOut)
		}
		testutil.Eventually(t, 10*time.Second, "hello to have finished", func() bool {
			_, errOut, _ := u.nex(append(alice, "workload", "logs", "-f", "--stderr", w.ID)...)
			return strings.Contains(errOut, "has finished (stopped), and printed nothing on stderr")
		})
	}
	// the rest of a namespace's verbs, with the same rights: clone, stop, remove
	for _, w := range list {
		switch w.Name {
		case "greet":
			out := u.mustNex(append(alice, "workload", "clone", w.ID)...)
			_, clone := startedID(t, out)
			u.mustNex(append(alice, "workload", "stop", clone)...)
			u.mustNex(append(alice, "workload", "stop", w.ID)...)
		case "hello":
			u.mustNex(append(alice, "workload", "info", w.ID)...)
			u.mustNex(append(alice, "workload", "rm", w.ID)...)
		}
	}
	// a replica group's verbs, with the same rights: start, scale, update, logs, stop
	out = []byte(u.mustNex(append(alice, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "web", "--replicas", "2", "--max-per-node", "3",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo v1; exec sleep 600"]}`)...))
	group := regexp.MustCompile(`g-[A-Za-z0-9]+`).FindString(string(out))
	if group == "" {
		t.Fatalf("no group ID in:\n%s", out)
	}
	u.mustNex(append(alice, "workload", "scale", group, "3")...)
	// copies at max_per_node: the update counted stopped copies, and stopped at the second
	u.mustNex(append(alice, "workload", "update", group, "--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo v2; exec sleep 600"]}`)...)
	testutil.Eventually(t, 30*time.Second, "the group's three copies to print v2", func() bool {
		logs, _, _ := u.nex(append(alice, "workload", "logs", group)...)
		return strings.Count(logs, "v2") == 3
	})
	u.mustNex(append(alice, "workload", "stop", group)...)
	b := append(alice[:len(alice)-1:len(alice)-1], "b")
	if _, errOut, code := u.nex(append(b, "workload", "list")...); code == 0 || !strings.Contains(errOut, "permission denied") {
		t.Errorf("alice listed namespace b: exit %d %s", code, errOut)
	}
}

// issuerSetup is an operator-mode server and a user whose nexd mints with the account's
// signing key (from the environment): the server, the user, its URL and the node's creds.
func issuerSetup(t *testing.T) (*operatorEnv, *user, string, string) {
	op := startOperatorServer(t)
	u := newUser(t)
	nodeCreds := op.user(t, u.home, "node", nil)
	skSeed, _ := op.signingKey.Seed()
	// the node's state in an account of its own, as the documented setup has it
	u.env = append(u.env, "NEX_ISSUER_SIGNING_KEY="+string(skSeed), "NEX_STATE_CREDS_FILE="+op.stateUser(t, u.home))
	return op, u, op.srv.ClientURL(), nodeCreds
}

// A tenant that prints 50 MB evicts only its own history: another tenant's lines stay
// readable (one NEX_LOGS for every namespace dropped them), and the tenant cannot look
// into another namespace's history streams. Run with the documented tenant rights.
func TestTenantFloodKeepsOthersHistory(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account,
		"--logs.max-bytes", strconv.Itoa(16<<20))
	a, b := op.tenant(t, u, url, "a", "alice"), op.tenant(t, u, url, "b", "bob")
	_, victim := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "victim",
		"--start-request", `{"uri":"file:///bin/echo","argv":["the victim's line"]}`)...))
	testutil.Eventually(t, 10*time.Second, "b's line in its history", func() bool {
		out, _, _ := u.nex(append(b, "workload", "logs", victim)...)
		return strings.Contains(out, "the victim's line")
	})
	// 51,200 lines of 1,000 bytes
	_, flood := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "flood",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","yes $(printf '%0999d' 0) | head -n 51200"]}`)...))
	nc, err := nats.Connect(url, nats.UserCredentials(nodeCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	testutil.Eventually(t, 60*time.Second, "the flood to fill a's history past its bound", func() bool {
		st, err := js.Stream(ctx, v1.LogsStream("a"))
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.FirstSeq > 1
	})
	if out, errOut, code := u.nex(append(b, "workload", "logs", victim)...); code != 0 || !strings.Contains(out, "the victim's line") {
		t.Fatalf("b's history after a's 50 MB flood (of %s): exit %d %q %s", flood, code, out, errOut)
	}
	// a's own reads work; b's streams are not a's to look at
	if _, errOut, code := u.nex(append(a, "workload", "logs", "--tail", "1", flood)...); code != 0 {
		t.Fatalf("a reads its own history: exit %d %s", code, errOut)
	}
	tenant, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, "alice.creds")), nats.CustomInboxPrefix(creds.UserInboxPrefix("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer tenant.Close()
	tjs, _ := jetstream.New(tenant)
	for _, st := range []string{v1.LogsStream("b"), v1.EventsStream("b"), history.LegacyLogsStream} {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := tjs.Stream(sctx, st)
		cancel()
		if err == nil {
			t.Errorf("a read the info of stream %s", st)
		}
	}
}

// An operator's namespace quota, as a tenant meets it with the documented rights: the
// start past it fails naming the quota and what is in use, and `nex namespace usage`
// shows the namespace against it.
func TestNamespaceQuotaFromTheCLI(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account,
		"--namespace-quota", "a=workloads=2,cpu=1")
	a := op.tenant(t, u, url, "a", "alice")
	start := func(name, res string) (string, string, int) {
		return u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", name,
			"--start-request", `{"uri":"file:///bin/sleep","argv":["600"]`+res+`}`)...)
	}
	if _, errOut, code := start("no-cpu", ""); code == 0 || !strings.Contains(errOut, "namespace a has a cpu quota (1): a start must ask for start_request.resources.cpu") {
		t.Fatalf("a start without cpu: exit %d %s", code, errOut)
	}
	for _, name := range []string{"one", "two"} {
		if _, errOut, code := start(name, `,"resources":{"cpu":0.25}`); code != 0 {
			t.Fatalf("start %s: exit %d %s", name, code, errOut)
		}
	}
	if _, errOut, code := start("three", `,"resources":{"cpu":0.25}`); code == 0 || !strings.Contains(errOut, "namespace a has 2 workloads, its quota is 2 (nexd --namespace-quota a=workloads=2,cpu=1)") {
		t.Fatalf("a start past the quota: exit %d %s", code, errOut)
	}
	out := u.mustNex(append(a, "namespace", "usage")...)
	if !regexp.MustCompile(`(?m)^a\s+2 of 2\s+0 B\s+0\.5 of 1\s+1$`).MatchString(out) {
		t.Fatalf("namespace usage:\n%s", out)
	}
}

// Jobs that ended count against a namespace's quota of workloads until they are removed:
// each keeps its workload UID and its workdir on its node (until --finished-retention),
// and tenant a, with a quota of 2, made finished jobs by the dozen a second and took every
// workload UID of a node, so that no namespace could start anything there (a review). As
// the tenant, with the documented rights, on an operator-mode server, as root.
func TestFinishedJobsCountAgainstTheQuota(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account,
		"--namespace-quota", "a=workloads=2")
	a := op.tenant(t, u, url, "a", "alice")
	job := func(name string) (string, string, int) {
		return u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", name,
			"--start-request", `{"uri":"file:///bin/true"}`)...)
	}
	for _, name := range []string{"one", "two"} {
		if _, errOut, code := job(name); code != 0 {
			t.Fatalf("start %s: exit %d %s", name, code, errOut)
		}
	}
	testutil.Eventually(t, 15*time.Second, "both jobs to have ended", func() bool {
		out, _, _ := u.nex(append(a, "workload", "list", "--state", "stopped", "-q")...)
		return len(strings.Fields(out)) == 2
	})
	if _, errOut, code := job("three"); code == 0 || !strings.Contains(errOut, "namespace a has 2 workloads, its quota is 2, 2 of them ended and kept until removed (nex --namespace a workload rm --finished) (nexd --namespace-quota a=workloads=2)") {
		t.Fatalf("a third job while two ended ones are kept, under a quota of 2: exit %d %s", code, errOut)
	}
	if out := u.mustNex(append(a, "namespace", "usage")...); !regexp.MustCompile(`(?m)^a\s+2 of 2\s`).MatchString(out) {
		t.Fatalf("namespace usage:\n%s", out)
	}
	u.mustNex(append(a, "workload", "rm", "--finished")...)
	if _, errOut, code := job("three"); code != 0 {
		t.Fatalf("a job once the ended ones were removed: exit %d %s", code, errOut)
	}
}

// A tenant may write to its namespace's bundle bucket, never configure a stream: with
// STREAM.UPDATE of its bucket, a tenant gave the stream other namespaces' subjects,
// sources (their history, the state, the secrets) and a republish to node administration
// (found by an attacker's walk). The node makes the bucket, with its bound. And the
// longest namespace's credentials still connect.
func TestTenantCannotConfigureStreams(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account,
		"--bundles.max-bytes", strconv.Itoa(8<<20))
	ns := strings.Repeat("n", v1.MaxNamespaceBytes)
	perms := creds.TenantPermissions(ns, "alice")
	credsFile := op.user(t, u.home, "alice", &perms)
	a := []string{"-s", url, "--nats.creds-file", credsFile, "--nats.inbox-prefix", creds.UserInboxPrefix("alice"), "--namespace", ns}
	script := u.write("hi.sh", "#!/bin/sh\necho bundled\n", 0o755)
	if out := u.mustNex(append(a, "workload", "bundle", script, "--lifecycle", "job", "-o", filepath.Join(u.home, "hi.nexfile"))...); !strings.Contains(out, "into NEX_BUNDLES_"+ns) {
		t.Fatalf("bundle with a tenant's rights:\n%s", out)
	}
	tenant, err := nats.Connect(url, nats.UserCredentials(credsFile), nats.CustomInboxPrefix(creds.UserInboxPrefix("alice")))
	if err != nil {
		t.Fatalf("the credentials of a %d-character namespace: %v", len(ns), err)
	}
	defer tenant.Close()
	bucket := "OBJ_" + v1.BundleBucket(ns)
	js, _ := jetstream.New(tenant)
	ctx := context.Background()
	st, err := js.Stream(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxBytes; got != 8<<20 {
		t.Errorf("the bundle bucket's max_bytes %d, want the node's %d", got, 8<<20)
	}
	evil := st.CachedInfo().Config
	evil.Sources = []*jetstream.StreamSource{{Name: "KV_NEX_SECRETS"}, {Name: v1.LogsStream("b")}}
	evil.RePublish = &jetstream.RePublish{Source: ns + ".x.*", Destination: "$NEX.SVC.v1.system.control.LAMEDUCK.{{wildcard(1)}}"}
	uctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = js.UpdateStream(uctx, evil)
	cancel()
	if err == nil {
		t.Fatal("a tenant reconfigured its bundle stream with sources and a republish")
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = js.CreateStream(cctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{ns + ".mine"}})
	cancel()
	if err == nil {
		t.Fatal("a tenant created a stream")
	}
	// a push consumer on its own bucket, aimed at another namespace's function trigger:
	// NATS permissions see the request's subject, not the deliver subject in its body, so
	// JetStream delivers the tenant's bytes there (under the subject they were stored
	// with). b's function must not run on them. (It did not in this setup without the
	// trigger's subject check either: an ack-less delivery carries no reply subject.)
	admin := []string{"-s", url, "--nats.creds-file", nodeCreds, "--namespace", "b"}
	_, fn := startedID(t, u.mustNex(append(admin, "workload", "start", "--type", "native", "--lifecycle", "function", "--name", "greet",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo got $(cat)"],"triggers":["b.greet"]}`)...))
	if out := u.mustNex(append(admin, "workload", "trigger", "b.greet", "own")...); !strings.Contains(out, "got own") {
		t.Fatalf("b's own trigger: %s", out)
	}
	obj, _ := js.ObjectStore(ctx, v1.BundleBucket(ns))
	if _, err := obj.PutBytes(ctx, "injected", []byte("INJECTED")); err != nil {
		t.Fatal(err)
	}
	aimPush(t, tenant, ns, "b.greet", "nex-fn-b-greet")
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if logs, _, _ := u.nex(append(admin, "workload", "logs", fn)...); strings.Contains(logs, "INJECTED") {
			t.Fatalf("b's function ran on a's bytes:\n%s", logs)
		}
	}
	// ... and its idle heartbeats, status messages JetStream sends to the deliver subject
	// itself (an attacker's walk had b's function run 8 times a second on them)
	beat, _ := json.Marshal(map[string]any{"stream_name": bucket, "config": map[string]any{"name": "beat", "ack_policy": "none", "deliver_policy": "new",
		"deliver_subject": "b.greet", "deliver_group": "nex-fn-b-greet", "idle_heartbeat": int64(100 * time.Millisecond), "flow_control": true,
		"filter_subject": "$O." + v1.BundleBucket(ns) + ".C.>"}})
	if m, err := tenant.Request("$JS.API.CONSUMER.CREATE."+bucket+".beat.$O."+v1.BundleBucket(ns)+".C.>", beat, 3*time.Second); err != nil || strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("the heartbeating consumer: %v %s", err, m.Data)
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if logs, _, _ := u.nex(append(admin, "workload", "logs", fn)...); strings.Count(logs, "got") > 1 {
			t.Fatalf("b's function ran on a consumer's heartbeats:\n%s", logs)
		}
	}
	// a replica group is bounded: a tenant scaled one to 2^63-1 and its node stalled (the
	// CLI refuses a create past the bound before it asks; the node refuses it all the same)
	if _, errOut, code := u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "many", "--replicas", "1001",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...); code == 0 || !strings.Contains(errOut, "a replica group starts with 1 to 1000 copies") {
		t.Fatalf("a group of 1001: exit %d %s", code, errOut)
	}
	many := v1.WorkloadDefinition{Name: "many", Namespace: ns, Type: "native", Lifecycle: v1.LifecycleService, StartRequest: json.RawMessage(`{"uri":"file:///bin/sleep","argv":["600"]}`)}
	if err := svcCall(tenant, v1.ControlSubject(ns, v1.VerbGroup, v1.GroupIDPrefix+v1.NewID()), v1.GroupRequest{Op: v1.GroupCreate, Definition: &many, Replicas: 1001}, &v1.GroupStatus{}); err == nil || !strings.Contains(err.Error(), "must be between 0 and 1000") {
		t.Fatalf("a group of 1001 asked of the node: %v", err)
	}
	out := u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "one", "--replicas", "1",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...)
	group := regexp.MustCompile(`g-[A-Za-z0-9]+`).FindString(out)
	if _, errOut, code := u.nex(append(a, "workload", "scale", group, "9223372036854775807")...); code == 0 || !strings.Contains(errOut, "must be between 0 and 1000") {
		t.Fatalf("scale to 2^63-1: exit %d %s", code, errOut)
	}
	u.mustNex(append(a, "workload", "stop", group)...)
	// a user name is one namespace's: its replies come through _INBOX_<name>
	if _, errOut, code := u.nex("--namespace", "b", "security", "user", u.home, "alice"); code == 0 || !strings.Contains(errOut, "holds user alice of namespace "+ns) {
		t.Fatalf("alice again, of namespace b: exit %d %s", code, errOut)
	}
	long := ns + "x"
	if _, errOut, code := u.nex("--namespace", long, "security", "user", u.home, "bob"); code == 0 || !strings.Contains(errOut, "at most 32") {
		t.Fatalf("a user of a %d-character namespace: exit %d %s", len(long), code, errOut)
	}
}

// A user name is one namespace's (its replies come through _INBOX_<name>), wherever its
// credentials are written: a newcomer's walk minted bob of namespace a with -o elsewhere,
// past the check of <dir>/bob.creds, and that user read the replies to b's bob.
func TestUserNameIsOneNamespaces(t *testing.T) {
	u := newUser(t)
	dir := filepath.Join(u.home, "nex-sec")
	u.mustNex("security", "init", dir)
	elsewhere := t.TempDir()
	u.mustNex("--namespace", "b", "security", "user", dir, "bob")
	u.mustNex("--namespace", "b", "security", "user", dir, "carol", "-o", filepath.Join(elsewhere, "carol.creds"))
	for _, c := range []struct{ name, out, want string }{
		{"bob", filepath.Join(elsewhere, "bob-of-a.creds"), "user bob was minted for namespace b"},
		{"carol", "", "user carol was minted for namespace b"},
		{"carol", filepath.Join(elsewhere, "carol.creds"), "holds user carol of namespace b"},
	} {
		args := []string{"--namespace", "a", "security", "user", dir, c.name}
		if c.out != "" {
			args = append(args, "-o", c.out)
		}
		if _, errOut, code := u.nex(args...); code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s of b minted again for a (%s): exit %d %s", c.name, c.out, code, errOut)
		}
	}
	u.mustNex("--namespace", "b", "security", "user", dir, "carol", "-o", filepath.Join(elsewhere, "carol2.creds")) // b's again: fine
	u.mustNex("--namespace", "a", "security", "user", dir, "dave")
	// credentials in dir minted before users.json was kept are known by the user in them,
	// whatever their file's name
	u.mustNex("--namespace", "b", "security", "user", dir, "erin", "-o", filepath.Join(dir, "e.creds"))
	if err := os.Remove(filepath.Join(dir, "users.json")); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := u.nex("--namespace", "a", "security", "user", dir, "erin"); code == 0 || !strings.Contains(errOut, "user erin was minted for namespace b") {
		t.Errorf("erin of b (e.creds) minted again for a: exit %d %s", code, errOut)
	}
}

// Mints at once from one directory each leave their user in users.json (each read it,
// added its own and wrote it back: a review's two at once forgot one, its name free again
// for another namespace), and a name asked for two namespaces at once is given to one.
func TestUsersMintedAtOnceAreAllKept(t *testing.T) {
	u := newUser(t)
	dir := filepath.Join(u.home, "nex-sec")
	u.mustNex("security", "init", dir)
	const n = 12
	spaces := []string{"a", "b"}
	var wg sync.WaitGroup
	codes := make([][2]int, n)
	for i := range n {
		for j, ns := range spaces {
			wg.Go(func() {
				out := filepath.Join(u.home, fmt.Sprint(ns, i, ".creds"))
				_, _, codes[i][j] = u.nex("--namespace", ns, "security", "user", dir, fmt.Sprint("user", i), "-o", out)
			})
		}
	}
	wg.Wait()
	b, err := os.ReadFile(filepath.Join(dir, "users.json"))
	if err != nil {
		t.Fatal(err)
	}
	var minted map[string]string
	if err := json.Unmarshal(b, &minted); err != nil {
		t.Fatal(err)
	}
	for i, c := range codes {
		name := fmt.Sprint("user", i)
		if (c[0] == 0) == (c[1] == 0) {
			t.Errorf("%s minted for a (exit %d) and b (exit %d) at once: exactly one must be refused", name, c[0], c[1])
		}
		if winner := spaces[min(c[0], 1)]; minted[name] != winner {
			t.Errorf("%s was minted for %s and users.json says %q", name, winner, minted[name])
		}
	}
}

// Tenant a, with the documented rights of its namespace, aims a push consumer on its own
// bundle bucket at b's workload's log subject (NATS checks the consumer's create request,
// not where it delivers) and stores "INJECTED" there: on a node that keeps no history, b's
// `nex workload logs -f` showed it as b's workload's output. The follower now takes only
// what is published on the subject, never what JetStream delivers there.
func TestTenantCannotWriteIntoAnothersFollow(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account, "--no-logs.history")
	a, b := op.tenant(t, u, url, "a", "alice"), op.tenant(t, u, url, "b", "bob")
	_, id := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "ticker",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"]}`)...))
	defer u.mustNex(append(b, "workload", "stop", id)...)
	follow := u.start("nex", append(b, "workload", "logs", "-f", id)...)
	testutil.Eventually(t, 15*time.Second, "b's follower to show its ticks", func() bool { return strings.Contains(follow.out.String(), "tick") })

	script := u.write("hi.sh", "#!/bin/sh\necho bundled\n", 0o755)
	u.mustNex(append(a, "workload", "bundle", script, "--lifecycle", "job", "-o", filepath.Join(u.home, "hi.nexfile"))...) // a's bucket, made by the node
	tenant, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, "alice.creds")), nats.CustomInboxPrefix(creds.UserInboxPrefix("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer tenant.Close()
	js, _ := jetstream.New(tenant)
	ctx := context.Background()
	obj, err := js.ObjectStore(ctx, v1.BundleBucket("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutBytes(ctx, "injected", []byte("INJECTED by a")); err != nil {
		t.Fatal(err)
	}
	aimPush(t, tenant, "a", v1.LogSubject("b", id), "")
	seen := strings.Count(follow.out.String(), "tick")
	testutil.Eventually(t, 10*time.Second, "b's follower to show more ticks", func() bool { return strings.Count(follow.out.String(), "tick") > seen+2 })
	if out := follow.out.String(); strings.Contains(out, "INJECTED") {
		t.Fatalf("b's follower showed a's bytes as its workload's output:\n%s", out)
	}
}

// Tenant a's sandboxed job lists the host's cgroup hierarchies (its sandbox shows the
// host's /sys): the workloads' cgroups, named by workload ID, told a every namespace's
// workloads, and their memory, CPU and process IDs in world-readable files (a review's
// walk). The parent of the workloads' cgroups is now one only root may list.
func TestTenantCannotListOthersCgroups(t *testing.T) {
	if os.Geteuid() != 0 || !slices.Contains(cgroups.Probe(), v1.ResourceMemory) {
		t.Skip("workloads get cgroups of their own only as root, with the memory cgroup")
	}
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a, b := op.tenant(t, u, url, "a", "alice"), op.tenant(t, u, url, "b", "bob")
	_, victim := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "victim",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"],"resources":{"memory":"64MiB"}}`)...))
	defer u.mustNex(append(b, "workload", "stop", victim)...)
	_, id := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "probe", "--start-request",
		`{"uri":"file:///bin/sh","argv":["-c","find /sys/fs/cgroup -maxdepth 8 -type d 2>/dev/null | grep -c . ; find /sys/fs/cgroup -maxdepth 8 -type d 2>/dev/null | grep nex-; echo probed"]}`)...))
	var out string
	testutil.Eventually(t, 20*time.Second, "a's probe to finish", func() bool {
		out, _, _ = u.nex(append(a, "workload", "logs", id)...)
		return strings.Contains(out, "probed")
	})
	if strings.Contains(out, victim) {
		t.Fatalf("a's job found b's workload %s in the cgroup hierarchies:\n%s", victim, out)
	}
}

// nexd started with a descriptor open beyond stderr (a shell's redirection, a service
// manager's): it went on to nexlet-native and to every tenant's workload, which wrote
// through it, to a file of root's in a directory only root may enter (a review's walk
// found a workload holding the starting shell's pipe). nexd and nexlet-native now pass on
// no descriptor they were started with.
func TestTenantGetsNoDescriptorOfNexds(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	private := filepath.Join(t.TempDir(), "root-only")
	if err := os.MkdirAll(private, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(private, "root-file")
	u.wrap = map[string][]string{"nexd": {"/bin/sh", "-c", `exec 9>>"` + target + `"; exec "$0" "$@"`}}
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a := op.tenant(t, u, url, "a", "alice")
	_, id := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "fds", "--start-request",
		`{"uri":"file:///bin/sh","argv":["-c","ls /proc/self/fd; (echo pwned >&9) 2>/dev/null && echo wrote-through-9; echo done"]}`)...))
	var out string
	testutil.Eventually(t, 20*time.Second, "the job to finish", func() bool {
		out, _, _ = u.nex(append(a, "workload", "logs", id)...)
		return strings.Contains(out, "done")
	})
	if b, _ := os.ReadFile(target); len(b) > 0 || strings.Contains(out, "wrote-through-9") {
		t.Fatalf("a tenant's job wrote through nexd's descriptor 9 (file holds %q):\n%s", b, out)
	}
}

// aimPush makes, with tenant's rights, a push consumer "aimed" on namespace ns's bundle
// bucket that delivers its objects' chunks to deliver (in queue group group, when not
// empty), and waits until JetStream has delivered one.
func aimPush(t *testing.T, tenant *nats.Conn, ns, deliver, group string) {
	t.Helper()
	bucket := "OBJ_" + v1.BundleBucket(ns)
	cfg := map[string]any{"name": "aimed", "ack_policy": "none", "deliver_subject": deliver, "filter_subject": "$O." + v1.BundleBucket(ns) + ".C.>"}
	if group != "" {
		cfg["deliver_group"] = group
	}
	push, _ := json.Marshal(map[string]any{"stream_name": bucket, "config": cfg})
	if m, err := tenant.Request("$JS.API.CONSUMER.CREATE."+bucket+".aimed.$O."+v1.BundleBucket(ns)+".C.>", push, 3*time.Second); err != nil || strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("the push consumer: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "JetStream to deliver to "+deliver, func() bool { return delivered(tenant, bucket, "aimed") })
}

// delivered says whether consumer name of stream has delivered a message yet.
func delivered(nc *nats.Conn, stream, name string) bool {
	m, err := nc.Request("$JS.API.CONSUMER.INFO."+stream+"."+name, nil, time.Second)
	var info struct {
		Delivered struct {
			Consumer uint64 `json:"consumer_seq"`
		} `json:"delivered"`
	}
	return err == nil && json.Unmarshal(m.Data, &info) == nil && info.Delivered.Consumer > 0
}

// bundleBucket has the node make namespace ns's bundle bucket (as nex workload bundle
// does: without direct gets, which workloads may not make) and opens it on nc.
func bundleBucket(t *testing.T, nc *nats.Conn, ns string) jetstream.ObjectStore {
	t.Helper()
	var reply v1.BundleBucketReply
	if err := svcCall(nc, v1.ControlSubject(ns, v1.VerbBundleBucket), struct{}{}, &reply); err != nil {
		t.Fatalf("bundle bucket of %s: %v", ns, err)
	}
	js, _ := jetstream.New(nc)
	store, err := js.ObjectStore(context.Background(), reply.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// A replica group none of whose copies can be placed is seen and stopped by its owner,
// by its name, and by no other tenant (a tenant's attack: such groups were "not found"
// by name, shown by ID only as they were made, and "No workloads" said nothing of them).
// Run with the documented tenant rights on an operator-mode server.
func TestGroupWithoutCopiesIsSeenAndStopped(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a, b := op.tenant(t, u, url, "a", "alice"), op.tenant(t, u, url, "b", "bob")
	out := u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "nowhere",
		"--replicas", "2", "--tags", "zz=none", "--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...)
	gid := ""
	for _, f := range strings.Fields(out) {
		if g := strings.Trim(f, "[]():,"); strings.HasPrefix(g, v1.GroupIDPrefix) {
			gid = g
		}
	}
	if gid == "" || !strings.Contains(out, "created, no copy placed yet: 0 of 2 copies running") {
		t.Fatalf("the group's start named no group, or called itself a success:\n%s", out)
	}
	list := u.mustNex(append(a, "workload", "list")...)
	if !strings.Contains(list, "No workloads in namespace a.") || !strings.Contains(list, "Replica group "+gid+" (nowhere, namespace a): 0 of 2 copies placed: ") {
		t.Fatalf("a's list says nothing of its group without copies:\n%s", list)
	}
	if list := u.mustNex(append(b, "workload", "list")...); strings.Contains(list, gid) || strings.Contains(list, "nowhere") {
		t.Fatalf("b's list shows a's group:\n%s", list)
	}
	if out, errOut, code := u.nex(append(b, "workload", "stop", "nowhere")...); code == 0 || strings.Contains(out+errOut, gid) {
		t.Fatalf("b stopped a's group by its name: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := u.nex(append(b, "workload", "stop", gid)...); code == 0 {
		t.Fatalf("b stopped a's group by its ID: %s%s", out, errOut)
	}
	// a prefix of a's group is, to b, one no group has; an ID with a '.' is refused at once
	// (it was sent to another subject, and waited 15 s for a coordinator: a walk)
	for _, tc := range []struct{ id, want string }{
		{gid[:6], "replica group " + gid[:6] + " not found in namespace b: no group's ID begins so"},
		{"g-zzzz", "replica group g-zzzz not found in namespace b: no group's ID begins so"},
		{"g-a.b", `invalid subject token: replica group ID "g-a.b" contains '.'`},
	} {
		if out, errOut, code := u.nex(append(b, "workload", "info", tc.id)...); code == 0 || !strings.Contains(errOut, tc.want) {
			t.Fatalf("b's info of %s: exit %d\n%s%s", tc.id, code, out, errOut)
		}
	}
	// the tenant's GROUPS request names its own groups only, as b and as a
	nc := func(args []string) *nats.Conn {
		c, err := nats.Connect(url, nats.UserCredentials(args[3]), nats.CustomInboxPrefix(args[5]))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	var got []v1.GroupStatus
	if err := svcCall(nc(b), v1.ControlSubject("b", v1.VerbGroups), struct{}{}, &got); err != nil || len(got) != 0 {
		t.Fatalf("b's GROUPS: %+v %v", got, err)
	}
	if err := svcCall(nc(a), v1.ControlSubject("a", v1.VerbGroups), struct{}{}, &got); err != nil || len(got) != 1 || got[0].ID != gid || got[0].Replicas != 2 {
		t.Fatalf("a's GROUPS: %+v %v", got, err)
	}
	// a group ID of a's own making that the state store would refuse as a key is a bad
	// request, not "the state store did not answer" (and a warning in the node's log)
	for _, id := range []string{"g-ä", "g-a", "g-a=b"} {
		if err := svcCall(nc(a), v1.ControlSubject("a", v1.VerbGroup, id), v1.GroupRequest{Op: v1.GroupInfo}, &v1.GroupStatus{}); err == nil || !strings.HasPrefix(err.Error(), "400:") {
			t.Fatalf("a's GROUP with ID %q: %v", id, err)
		}
	}
	if m, err := nc(b).Request(v1.ControlSubject("a", v1.VerbGroups), []byte("{}"), 2*time.Second); err == nil {
		t.Fatalf("b asked a's GROUPS and was answered: %s", m.Data)
	}
	// a trigger of a's subject is refused by the server, and b is told so at once (it
	// waited out --timeout and said "no reply": a walk)
	if out, errOut, code := u.nex(append(b, "workload", "trigger", "a.greet", "x", "--timeout", "30s")...); code == 0 || !strings.Contains(errOut, "permission denied: this NATS user may not publish to a.greet") {
		t.Fatalf("b's trigger of a's subject: exit %d\n%s%s", code, out, errOut)
	}
	// scaled to 0 it holds a place of the quota: still listed (a walk: seen nowhere)
	u.mustNex(append(a, "workload", "scale", "nowhere", "0")...)
	if list := u.mustNex(append(a, "workload", "list")...); !strings.Contains(list, "Replica group "+gid+" (nowhere, namespace a): scaled to 0 (nex workload stop "+gid+" removes it)") {
		t.Fatalf("a's list says nothing of its group scaled to 0:\n%s", list)
	}
	// its owner stops it by name
	if out := u.mustNex(append(a, "workload", "stop", "nowhere")...); !strings.Contains(out, gid) {
		t.Fatalf("a's stop of its group by name:\n%s", out)
	}
	if list := u.mustNex(append(a, "workload", "list")...); strings.Contains(list, gid) {
		t.Fatalf("the stopped group is still listed:\n%s", list)
	}
	// system sees every namespace's, and stops one by its name (it said "not found in
	// namespace system" of a group it had just listed: a review)
	u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "elsewhere",
		"--replicas", "1", "--tags", "zz=none", "--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...)
	admin := []string{"-s", url, "--nats.creds-file", nodeCreds}
	if list := u.mustNex(append(admin, "workload", "list")...); !strings.Contains(list, "(elsewhere, namespace a): 0 of 1 copy placed") {
		t.Fatalf("system's list:\n%s", list)
	}
	if out, errOut, code := u.nex(append(admin, "workload", "stop", "elsewhere")...); code != 0 {
		t.Fatalf("system's stop of a's group by name: exit %d\n%s%s", code, out, errOut)
	}
	if list := u.mustNex(append(a, "workload", "list")...); strings.Contains(list, "elsewhere") {
		t.Fatalf("the group system stopped is still listed:\n%s", list)
	}
}
