package test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The everyday CLI: names and 8-character prefixes address workloads, groups and nodes;
// list filters, -q, -o json|yaml|wide and --format; node names in lists.
func TestEverydayCLI(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	startNexdNamed(t, u, url, filepath.Join(u.home, "data"), "lab1")
	ns := []string{"-s", url, "--namespace", "default"}
	nex := func(args ...string) string { t.Helper(); return u.mustNex(append(ns, args...)...) }
	sleep := `{"uri":"file:///bin/sleep","argv":["600"]}`
	web := u.startNative(url, "web", "service", sleep)
	u.startNative(url, "twin", "service", sleep)
	u.startNative(url, "twin", "service", sleep)
	out := nex("workload", "start", "--type", "native", "--lifecycle", "service", "--name", "api", "--start-request", sleep, "--replicas", "2")
	gid := strings.Fields(out[strings.Index(out, "[")+1:])[0]
	gid = strings.TrimSuffix(gid, "]")
	if !strings.HasPrefix(gid, v1.GroupIDPrefix) {
		t.Fatalf("group start said %q", out)
	}

	// a name and an 8-character prefix address a workload
	for _, arg := range []string{"web", web[:8]} {
		var w v1.WorkloadInfo
		if err := json.Unmarshal([]byte(nex("--json", "workload", "info", arg)), &w); err != nil || w.ID != web {
			t.Fatalf("workload info %s: %+v %v", arg, w, err)
		}
	}
	if out := nex("workload", "info", "web"); !strings.Contains(out, "Node:        lab1 (") {
		t.Fatalf("workload info names the node: %s", out)
	}
	// ... and a group, by its name or a prefix of its ID
	for _, arg := range []string{"api", gid[:10]} {
		if out := nex("workload", "info", arg); !strings.Contains(out, gid) || !strings.Contains(out, "replica group of 2") {
			t.Fatalf("workload info %s: %s", arg, out)
		}
	}
	if _, errOut, code := u.nex(append(ns, "workload", "info", "twin")...); code == 0 || !strings.Contains(errOut, `name "twin" is shared by 2 workloads`) {
		t.Fatalf("a name two workloads share: exit %d: %s", code, errOut)
	}
	nex("workload", "scale", "api", "1")
	testutil.Eventually(t, 10*time.Second, "the group scaled to 1", func() bool {
		return strings.Count(nex("workload", "list", "--group", gid[:10], "--state", "running", "-q"), "\n") == 1
	})

	// filters, -q, and the output forms
	if got := nex("workload", "list", "--name", "web", "-q"); got != web+"\n" {
		t.Fatalf("list --name web -q: %q", got)
	}
	if got := nex("workload", "list", "--node", "lab1", "--name", "twin", "--format", "{{.Name}}={{.State}}"); got != "twin=running\ntwin=running\n" {
		t.Fatalf("list --format: %q", got)
	}
	var all []v1.WorkloadInfo
	if err := json.Unmarshal([]byte(nex("workload", "list", "-o", "json", "--state", "running")), &all); err != nil || len(all) != 4 {
		t.Fatalf("list -o json --state running: %d workloads, %v", len(all), err)
	}
	if got := nex("workload", "list", "-o", "yaml", "--name", "web"); !strings.Contains(got, "name: web") {
		t.Fatalf("list -o yaml: %s", got)
	}
	if got := nex("workload", "list", "--name", "web"); !strings.Contains(got, "\tlab1") || strings.Contains(got, web) {
		t.Fatalf("the table shows the node's name and short IDs: %s", got)
	}
	if got := nex("workload", "list", "-o", "wide", "--name", "web"); !strings.Contains(got, web) {
		t.Fatalf("-o wide shows whole IDs: %s", got)
	}
	if got := nex("workload", "list", "--tag", "zone=nowhere"); !strings.Contains(got, "that match the filters") {
		t.Fatalf("an empty filtered list: %q", got)
	}
	// a filter that cannot match is an error, not an empty list
	if _, errOut, code := u.nex(append(ns, "workload", "list", "--state", "runing")...); code == 0 || !strings.Contains(errOut, "--state runing: not a state") {
		t.Fatalf("list --state runing: exit %d: %s", code, errOut)
	}
	if _, errOut, code := u.nex(append(ns, "workload", "list", "--node", "nosuch")...); code == 0 || !strings.Contains(errOut, "--node nosuch: no node") {
		t.Fatalf("list --node nosuch: exit %d: %s", code, errOut)
	}
	// a node by its name
	if out := u.mustNex("-s", url, "node", "info", "lab1"); !strings.Contains(out, "lab1") {
		t.Fatalf("node info lab1: %s", out)
	}
	// every list command has the same shape: -q, -o json|yaml|wide and --format
	if got := u.mustNex("-s", url, "node", "list", "--format", "{{.Name}}"); got != "lab1\n" {
		t.Fatalf("node list --format: %q", got)
	}
	if got := u.mustNex("-s", url, "node", "list", "-q"); !strings.HasPrefix(got, "N") || strings.Count(got, "\n") != 1 {
		t.Fatalf("node list -q: %q", got)
	}
	if got := u.mustNex("-s", url, "node", "list", "-o", "yaml"); !strings.Contains(got, "name: lab1") {
		t.Fatalf("node list -o yaml: %s", got)
	}
	if got := nex("workload", "bundle", "list", "-o", "json"); got != "[]\n" {
		t.Fatalf("bundle list -o json of no bundles: %q", got)
	}
	// an inline start ignores a Nexfile that lies in the directory; a bare start reads it, saying so
	u.write("Nexfile", "name: fromfile\ntype: native\nlifecycle: job\ntags:\n  region: prod\nstart_request:\n  uri: file:///bin/true\n", 0o644)
	if _, errOut, code := u.nex(append(ns, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "inline", "--start-request", `{"uri":"file:///bin/true"}`)...); code != 0 || strings.Contains(errOut, "Nexfile") {
		t.Fatalf("an inline start beside a Nexfile: exit %d: %s", code, errOut)
	}
	if _, errOut, code := u.nex(append(ns, "workload", "start")...); code == 0 || !strings.Contains(errOut, "starting the workload of ./Nexfile") || !strings.Contains(errOut, "region") {
		t.Fatalf("a bare start with a Nexfile of region=prod: exit %d: %s", code, errOut)
	}
	// a request ID used again for another definition returns the first workload, and says so
	rid := func(name string) (string, string, int) {
		return u.nex(append(ns, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", name, "--request-id", "same-key", "--start-request", sleep)...)
	}
	if _, errOut, code := rid("rid-a"); code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("the first start with a request ID: exit %d: %s", code, errOut)
	}
	if out, errOut, code := rid("rid-b"); code != 0 || !strings.Contains(out, "was started before") || !strings.Contains(errOut, `another definition (name "rid-a", not "rid-b")`) {
		t.Fatalf("a request ID used again for another definition: exit %d: %s %s", code, out, errOut)
	}
	if _, errOut, _ := rid("rid-a"); strings.Contains(errOut, "warning") {
		t.Fatalf("the same start again warns: %s", errOut)
	}

	// --wait-healthy: returns once the check passes, or fails with its last failure
	checked := func(name, check string) (string, string, int) {
		return u.nex(append(ns, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", name, "--wait-healthy", "20s",
			"--start-request", `{"uri":"file:///bin/sleep","argv":["600"],"health":{"exec":{"argv":["/bin/sh","-c","`+check+`"]},"interval":"1s","failures":1}}`)...)
	}
	if _, errOut, code := checked("ok", "true"); code != 0 || !strings.Contains(errOut, "is healthy") {
		t.Fatalf("--wait-healthy of a passing check: exit %d: %s", code, errOut)
	}
	if _, errOut, code := checked("sick", "echo no database; exit 1"); code == 0 || !strings.Contains(errOut, "unhealthy") || !strings.Contains(errOut, "no database") {
		t.Fatalf("--wait-healthy of a failing check: exit %d: %s", code, errOut)
	}

	// stats: what a busy workload uses
	busy := u.startNative(url, "busy", "service", `{"uri":"file:///bin/sh","argv":["-c","sleep 600 & while :; do :; done"]}`)
	var st struct {
		CPU    float64 `json:"cpu_percent"`
		Memory int64   `json:"memory_bytes"`
		PIDs   int     `json:"pids"`
	}
	if err := json.Unmarshal([]byte(nex("--json", "workload", "stats", "busy")), &st); err != nil || st.CPU < 5 || st.Memory <= 0 || st.PIDs < 2 {
		t.Fatalf("stats of a busy loop with a sleep beside it: %+v %v", st, err)
	}
	if out := nex("workload", "stats", busy[:8]); !strings.Contains(out, "CPU %") || !strings.Contains(out, "busy") {
		t.Fatalf("stats table: %s", out)
	}
	// exec: a command beside it, its output and exit code as the command's
	out, errOut, code := u.nex(append(ns, "workload", "exec", "busy", "--", "sh", "-c", "echo out $NEX_WORKLOAD_NAME; pwd; echo err >&2; exit 3")...)
	if code != 3 || !strings.HasPrefix(out, "out busy\n") || !strings.Contains(out, busy) || errOut != "err\n" {
		t.Fatalf("exec: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := u.nex(append(ns, "workload", "exec", "busy", "--timeout", "1s", "--", "sleep", "30")...); code == 0 || !strings.Contains(errOut, "killed after 1s") {
		t.Fatalf("exec past its timeout: exit %d: %s", code, errOut)
	}
	nex("workload", "stop", busy)
	if _, errOut, code := u.nex(append(ns, "workload", "exec", busy, "--", "true")...); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("exec beside a stopped workload: exit %d: %s", code, errOut)
	}

	// restart: a workload is replaced by a new copy, a group copy by copy
	out = nex("workload", "restart", "web")
	_, web2 := startedID(t, strings.Replace(out, "restarted", "successfully started", 1))
	if web2 == web || !strings.Contains(out, "replaces "+web) {
		t.Fatalf("restart web: %s", out)
	}
	if got := nex("workload", "list", "--name", "web", "--state", "running", "-q"); got != web2+"\n" {
		t.Fatalf("after the restart, running as web: %q", got)
	}
	before := nex("workload", "list", "--group", "api", "-q", "--state", "running")
	if out := nex("workload", "restart", "api"); !strings.Contains(out, "restarted: 1 copy of version 2 running") {
		t.Fatalf("restart of a group: %s", out)
	}
	if after := nex("workload", "list", "--group", "api", "-q", "--state", "running"); after == before || strings.Count(after, "\n") != 1 {
		t.Fatalf("the group's copy before the restart %q, after %q", before, after)
	}
	// a group stopped twice, and the bundle list of a namespace that bundled nothing
	nex("workload", "stop", gid)
	if _, errOut, _ := u.nex(append(ns, "workload", "stop", gid)...); !strings.Contains(errOut, "stopped already, or never started") {
		t.Fatalf("a group stopped twice: %s", errOut)
	}
	if out := nex("workload", "bundle", "list"); !strings.Contains(out, "No bundles in") {
		t.Fatalf("bundle list of a namespace that bundled nothing: %s", out)
	}
	if out := nex("workload", "stop", "web"); !strings.Contains(out, "stopped") {
		t.Fatalf("stop by name: %s", out)
	}
}
