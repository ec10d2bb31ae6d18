package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// IDs may be given by any unique prefix (lists show node IDs by their first 12
// characters), and a node by its name; an ambiguous prefix or name is an error listing
// the matches.
func TestIDPrefixes(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	startNexd(t, u, url, filepath.Join(u.home, "data"))
	start := func(name string) string {
		return u.startNative(url, name, "service", `{"uri":"file:///bin/sleep","argv":["600"]}`)
	}
	// IDs are random: start workloads until two share a first character (62 are
	// possible, so at most 63 starts; about 10 on average)
	var a, b, bName string
	seen := map[byte]string{}
	for i := 0; a == ""; i++ {
		name := "w" + strconv.Itoa(i)
		id := start(name)
		if other, ok := seen[id[0]]; ok {
			a, b, bName = other, id, name
		}
		seen[id[0]] = id
	}
	common := 0
	for common < len(a) && a[common] == b[common] {
		common++
	}
	_, errs, code := u.nex("-s", url, "--namespace", "default", "workload", "info", a[:common])
	if code == 0 || !strings.Contains(errs, "is ambiguous") || !strings.Contains(errs, a) || !strings.Contains(errs, b) {
		t.Fatalf("an ambiguous prefix: exit %d: %s", code, errs)
	}
	if out := u.mustNex("-s", url, "--namespace", "default", "workload", "info", a[:common+1]); !strings.Contains(out, a) {
		t.Fatalf("info by a unique prefix:\n%s", out)
	}
	if out := u.mustNex("-s", url, "--namespace", "default", "workload", "stop", b[:common+1]); !strings.Contains(out, "Workload "+bName+" ["+b+"] stopped") {
		t.Fatalf("stop by a unique prefix:\n%s", out)
	}
	list := u.workloads(t, url)
	node := list[0].NodeID
	if out := u.mustNex("-s", url, "node", "info", node[:12]); !strings.Contains(out, node) {
		t.Fatalf("node info by the 12 characters lists show:\n%s", out)
	}
	if out := u.mustNex("-s", url, "node", "info", "durable"); !strings.Contains(out, node) {
		t.Fatalf("node info by the node's name:\n%s", out)
	}
	startNexdNamed(t, u, url, filepath.Join(u.home, "data2"), "durable")
	testutil.Eventually(t, 10*time.Second, "a second node named durable", func() bool {
		out, _, _ := u.nex("-s", url, "node", "list")
		return strings.Count(out, "\tdurable\t") == 2
	})
	if _, errs, code := u.nex("-s", url, "node", "info", "durable"); code == 0 || !strings.Contains(errs, `node name "durable" is ambiguous: 2 nodes have it`) {
		t.Fatalf("node info by a name two nodes have: exit %d: %s", code, errs)
	}
}

// nex workload bundle: an executable (or a directory) goes into the object store by its
// digest, once; the Nexfile it writes starts on a node that has never seen the files; a
// removed bundle or a wrong digest fails the start, saying which.
func TestWorkloadBundle(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	startNexd(t, u, url, filepath.Join(u.home, "data"))
	nex := func(args ...string) string {
		return u.mustNex(append([]string{"-s", url, "--namespace", "default"}, args...)...)
	}
	script := u.write("hello.sh", "#!/bin/sh\necho bundled hello\n", 0o755)
	out := nex("workload", "bundle", script, "--lifecycle", "job", "-o", "hello.nexfile")
	if !strings.Contains(out, "Bundled hello: 1 file into NEX_BUNDLES_default (1 new") {
		t.Fatalf("bundle:\n%s", out)
	}
	// the hint reaches the same server (a newcomer's walk: it named no server)
	if want := "Start it with: nex --nats.servers=" + url + " --namespace default workload start -f hello.nexfile\n"; !strings.HasSuffix(out, want) {
		t.Fatalf("bundle's hint:\n%s\nwant it to end %q", out, want)
	}
	if out := nex("workload", "bundle", script, "--lifecycle", "job", "-o", "again.nexfile"); !strings.Contains(out, "(0 new") {
		t.Fatalf("a second bundle of the same file stored it again:\n%s", out)
	}
	run := func(nexfile string) v1.WorkloadInfo {
		_, id := startedID(t, nex("workload", "start", "-f", nexfile))
		var w v1.WorkloadInfo
		testutil.Eventually(t, 10*time.Second, "the bundled job to finish", func() bool {
			for _, x := range u.workloads(t, url) {
				if x.ID == id {
					w = x
				}
			}
			return w.State == v1.StateStopped
		})
		return w
	}
	if w := run("hello.nexfile"); w.ExitCode == nil || *w.ExitCode != 0 {
		t.Fatalf("the bundled job: %+v", w)
	}

	// a directory: the executable, and a data file beside it as an artifact
	dir := filepath.Join(u.cwd, "app")
	_ = os.MkdirAll(filepath.Join(dir, "conf"), 0o755)
	u.write("app/run.sh", "#!/bin/sh\ngrep -q 42 conf/answer.txt\n", 0o755)
	u.write("app/conf/answer.txt", "42\n", 0o644)
	nex("workload", "bundle", dir, "--lifecycle", "job", "-o", "app.nexfile")
	if w := run("app.nexfile"); w.ExitCode == nil || *w.ExitCode != 0 {
		t.Fatalf("the bundled directory's job did not find its data file: %+v", w)
	}
	list := nex("workload", "bundle", "list")
	if !strings.Contains(list, "hello.sh") || !strings.Contains(list, "answer.txt") || !strings.Contains(list, "run.sh") {
		t.Fatalf("bundle list:\n%s", list)
	}

	// a wrong digest, then a removed bundle: the start fails and says why
	b, _ := os.ReadFile(filepath.Join(u.cwd, "hello.nexfile"))
	var nf map[string]any
	_ = json.Unmarshal(b, &nf)
	sr := nf["start_request"].(map[string]any)
	digest := sr["sha256"].(string)
	sr["sha256"] = strings.Repeat("0", 64)
	bad, _ := json.Marshal(nf)
	u.write("bad.nexfile", string(bad), 0o644)
	if _, errs, code := u.nex("-s", url, "--namespace", "default", "workload", "start", "-f", "bad.nexfile"); code == 0 || !strings.Contains(errs, "sha256 mismatch") {
		t.Fatalf("a wrong digest: exit %d: %s", code, errs)
	}
	nex("workload", "bundle", "rm", digest[:16])
	if _, errs, code := u.nex("-s", url, "--namespace", "default", "workload", "start", "-f", "hello.nexfile"); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("a removed bundle: exit %d: %s", code, errs)
	}
}

// A config file in a default place that the user cannot read is skipped with a warning,
// not a dead end: run as nobody, with ./config.json readable only by root.
func TestUnreadableDefaultConfigSkipped(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and setpriv to run nex as another user")
	}
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755) // nobody may enter, not read the config
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"namespace":"secret"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, _ := filepath.Abs(filepath.Join(binDir, "nex"))
	run := func(args ...string) (string, error) {
		cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		cmd.Dir = dir
		cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// (--check: a command that reads the configuration and asks no node; --version alone
	// reads none)
	out, err := run("--check")
	if err != nil || !strings.Contains(out, "warning: config config.json is not readable") {
		t.Fatalf("nex --check as nobody with an unreadable ./config.json: %v\n%s", err, out)
	}
	if out, err := run("--config", "config.json", "--check"); err == nil {
		t.Fatalf("an unreadable explicit --config was not an error:\n%s", out)
	}
}
