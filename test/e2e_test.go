// Package test holds end-to-end tests: they build the real nex, nexd and nexlet-native
// binaries and drive them as a user following docs/running-workloads.md would.
package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nex-e2e-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	ldflags := os.Getenv("NEX_LDFLAGS")
	if ldflags == "" {
		ldflags = "-X github.com/nexrun/nex/internal/version.Version=0.1.0-e2e -X github.com/nexrun/nex/internal/version.Commit=e2e"
	}
	if err := testutil.BuildBinaries("..", dir, ldflags); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// user is a shell: a home directory, a working directory and an environment.
type user struct {
	t    *testing.T
	home string
	cwd  string
	env  []string
	// wrap runs a binary through a command: wrap["nexd"] = {"setpriv", ...} runs
	// setpriv ... <bin>/nexd <args>.
	wrap map[string][]string
}

func newUser(t *testing.T) *user {
	home := t.TempDir()
	// as root, workloads run as users of their own: they must be able to pass through
	// the test's directories to their workdirs and scripts (as under /var/lib or $HOME)
	for _, dir := range []string{filepath.Dir(home), home} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &user{t: t, home: home, cwd: home, env: []string{
		"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"PATH=" + binDir + ":/usr/local/bin:/usr/bin:/bin",
	}}
}

func (u *user) cmd(name string, args ...string) *exec.Cmd {
	path := filepath.Join(binDir, name)
	if w := u.wrap[name]; len(w) > 0 {
		path, args = w[0], append(append(slices.Clone(w[1:]), path), args...)
	}
	c := exec.Command(path, args...)
	c.Dir = u.cwd
	c.Env = u.env
	return c
}

// nex runs the CLI and returns stdout, stderr and the exit code.
func (u *user) nex(args ...string) (string, string, int) {
	u.t.Helper()
	c := u.cmd("nex", args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		u.t.Fatalf("run nex %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mustNex runs the CLI and fails the test on a non-zero exit.
func (u *user) mustNex(args ...string) string {
	u.t.Helper()
	out, errs, code := u.nex(args...)
	if code != 0 {
		u.t.Fatalf("nex %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (u *user) write(name, content string, mode os.FileMode) string {
	u.t.Helper()
	p := filepath.Join(u.cwd, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		u.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		u.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // the mode asked for, whatever the umask
		u.t.Fatal(err)
	}
	return p
}

// background starts a long-running command in its own process group and stops it
// (SIGINT, then SIGKILL) when the test ends.
type background struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (u *user) start(name string, args ...string) *background {
	u.t.Helper()
	c := u.cmd(name, args...)
	bg := &background{cmd: c, out: &syncBuffer{}, done: make(chan struct{})}
	c.Stdout, c.Stderr = bg.out, bg.out
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Its children (nexlet-native) share the output pipe and may outlive it on purpose.
	c.WaitDelay = time.Second
	if err := c.Start(); err != nil {
		u.t.Fatal(err)
	}
	go func() { _ = c.Wait(); close(bg.done) }()
	u.t.Cleanup(func() {
		bg.stop(u.t, 20*time.Second)
		if u.t.Failed() {
			u.t.Logf("%s output:\n%s", name, bg.out.String())
		}
	})
	return bg
}

// stop interrupts the process as Ctrl+C would and waits; the whole group is killed
// if it does not stop in time.
func (bg *background) stop(t *testing.T, timeout time.Duration) {
	_ = bg.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-bg.done:
	case <-time.After(timeout):
		t.Errorf("%s did not stop within %s after SIGINT", bg.cmd.Path, timeout)
	}
	_ = syscall.Kill(-bg.cmd.Process.Pid, syscall.SIGKILL)
}

// startNative starts a native workload in namespace default on the node at url through
// the CLI, and returns its ID; extra flags (--tags ...) come last.
func (u *user) startNative(url, name, lifecycle, startRequest string, extra ...string) string {
	u.t.Helper()
	out := u.mustNex(append([]string{"-s", url, "--namespace", "default", "workload", "start", "--type", "native",
		"--lifecycle", lifecycle, "--name", name, "--start-request", startRequest}, extra...)...)
	_, id := startedID(u.t, out)
	return id
}

var startedRE = regexp.MustCompile(`^Workload (\S+) \[(\S+)\] successfully started`)

func startedID(t *testing.T, out string) (name, id string) {
	t.Helper()
	m := startedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("unexpected start output %q", out)
	}
	return m[1], m[2]
}

func TestVersions(t *testing.T) {
	u := newUser(t)
	for _, bin := range []string{"nex", "nexd", "nexlet-native"} {
		out, err := u.cmd(bin, "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), bin+" ") || !strings.Contains(string(out), "(") {
			t.Errorf("%s --version: %q %v", bin, out, err)
		}
	}
}

// TestUserGuide walks docs/running-workloads.md from its first command to its last.
func TestUserGuide(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)

	// Prerequisites: a NATS CLI context, selected with `nats context use nex-dev`.
	u.write(".config/nats/context/nex-dev.json", fmt.Sprintf(`{"description":"dev","url":%q}`, s.ClientURL()), 0o600)
	u.write(".config/nats/context.txt", "nex-dev", 0o600)

	// Node access: nex --namespace system node up --nats.context nex-dev
	node := u.start("nex", "--namespace", "system", "node", "up", "--nats.context", "nex-dev",
		"--tags", "region=lab", "--data-dir", filepath.Join(u.home, "nexdata"), "--node-name", "lab1")
	var nodeList string
	testutil.Eventually(t, 10*time.Second, "node list to show the node with its native nexlet", func() bool {
		out, _, code := u.nex("--namespace", "system", "node", "list")
		nodeList = out
		return code == 0 && strings.Contains(out, "lab1") && strings.Contains(out, "native(native,healthy)")
	})
	if !strings.Contains(nodeList, "RUNNING") {
		t.Fatalf("node list:\n%s", nodeList)
	}

	// Subscribe to the feeds as `nats sub "$NEX.FEED.default.logs.>"` would.
	nc := testutil.Connect(t, s)
	logs := subscribe(t, nc, "$NEX.FEED.default.logs.>")
	events := subscribe(t, nc, "$NEX.FEED.default.event.>")

	// A config file with reusable settings, and a workload executable.
	u.write("config.json", `{"nats": {"context": "nex-dev"}}`, 0o644)
	port := freePort(t)
	svcPath := u.write("bin/hello-service", "#!/bin/sh\necho \"hello-service $1\"\necho \"ready\" >&2\nexec sleep 600\n", 0o755)
	u.write("Nexfile", `name: hello-exec
description: simple native service
type: native
lifecycle: service
tags:
  region: lab
start_request:
  uri: "file://`+svcPath+`"
  argv: ["--listen=:8080"]
  environment:
    LOG_LEVEL: info
  expose_ports: [`+strconv.Itoa(port)+`]
`, 0o644)

	// Start a workload: the namespace list, then start from the Nexfile.
	if out := u.mustNex("--namespace", "default", "workload", "list"); !strings.Contains(out, "No workloads") {
		t.Fatalf("empty list: %q", out)
	}
	out := u.mustNex("--config", "./config.json", "--namespace", "default", "workload", "start", "--nexfile", "Nexfile")
	name, svcID := startedID(t, out)
	if name != "hello-exec" {
		t.Fatalf("name %q", name)
	}

	// Overrides: auto-discovered ./Nexfile, --name and --tags from flags. (This project's
	// Nexfile exposes no port: two workloads cannot expose the same one on a node.)
	u.cwd = filepath.Join(u.home, "api")
	u.write("Nexfile", "name: api-default\ntype: native\nlifecycle: service\nstart_request:\n  uri: \"file://"+svcPath+"\"\n", 0o644)
	out = u.mustNex("--namespace", "default", "workload", "start", "--name", "api", "--tags", "region=lab", "--tags", "nex.os=linux")
	apiName, apiID := startedID(t, out)
	if apiName != "api" {
		t.Fatalf("override name: %q", apiName)
	}

	// Inline start request, without a Nexfile (from a directory that has none).
	u.cwd = t.TempDir()
	out = u.mustNex("--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "onetime-task",
		"--start-request", `{"uri":"file:///bin/echo","argv":["--once"]}`)
	_, jobID := startedID(t, out)

	// A function: each request on its trigger runs the executable; stdout is the reply.
	out = u.mustNex("--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "function", "--name", "greeter",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo hello $(cat) from $NEX_TRIGGER_SUBJECT"],"triggers":["greet.*"]}`)
	_, fnID := startedID(t, out)
	reply, err := nc.Request("greet.world", []byte("ada"), 5*time.Second)
	if err != nil || string(reply.Data) != "hello ada from greet.world\n" {
		t.Fatalf("function reply %v %v", reply, err)
	}
	u.mustNex("--namespace", "default", "workload", "stop", fnID)

	// Inspect: the job lists as stopped with exit code 0; metadata has the pid.
	var list []v1.WorkloadInfo
	testutil.Eventually(t, 10*time.Second, "the job to list as stopped", func() bool {
		list = nil
		out := u.mustNex("--namespace", "default", "workload", "list", "--show-metadata", "--json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("list --json: %v\n%s", err, out)
		}
		for _, w := range list {
			if w.ID == jobID {
				return w.State == v1.StateStopped && w.ExitCode != nil && *w.ExitCode == 0
			}
		}
		return false
	})
	if len(list) != 3 {
		t.Fatalf("want 3 workloads, got %+v", list)
	}
	var svcPid int
	for _, w := range list {
		if w.ID == svcID {
			svcPid, _ = strconv.Atoi(w.Metadata["pid"])
			if w.Metadata["ports"] != strconv.Itoa(port) || w.Tags["region"] != "lab" {
				t.Fatalf("service metadata %+v", w)
			}
		}
	}
	if svcPid == 0 || !pidAlive(svcPid) {
		t.Fatalf("service pid %d not running", svcPid)
	}
	table := u.mustNex("--namespace", "default", "workload", "ls", "--type", "native")
	for _, want := range []string{"hello-exec", "api", "onetime-task", "stopped (exit 0)", "running"} {
		if !strings.Contains(table, want) {
			t.Errorf("workload ls lacks %q:\n%s", want, table)
		}
	}

	// Logs and events arrived on the feed subjects.
	testutil.Eventually(t, 5*time.Second, "service output on the logs feed", func() bool {
		return logs.find(func(m *nats.Msg) bool {
			return m.Subject == "$NEX.FEED.default.logs."+svcID && hasLine(m, "hello-service --listen=:8080") && m.Header.Get("Nex-Stream") == "stdout"
		}) && logs.find(func(m *nats.Msg) bool {
			return m.Subject == "$NEX.FEED.default.logs."+svcID && hasLine(m, "ready") && m.Header.Get("Nex-Stream") == "stderr"
		}) && logs.find(func(m *nats.Msg) bool {
			return m.Subject == "$NEX.FEED.default.logs."+jobID && hasLine(m, "--once")
		})
	})
	// The same lines from the history: `nex workload logs`, by stream, and a wrong ID named.
	testutil.Eventually(t, 5*time.Second, "the job's output in its history", func() bool {
		return u.mustNex("--namespace", "default", "workload", "logs", jobID) == "--once\n"
	})
	// following a finished job prints what it printed and ends, rather than waiting forever
	if out, errOut, code := u.nex("--namespace", "default", "workload", "logs", jobID, "-f"); code != 0 || out != "--once\n" || !strings.Contains(errOut, "has finished") {
		t.Errorf("logs -f of a finished job: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if out, errOut, code := u.nex("--namespace", "default", "workload", "logs", svcID, "--stderr"); code != 0 || out != "" || !strings.Contains(errOut, "ready") || strings.Contains(errOut, "hello-service") {
		t.Errorf("logs --stderr: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if _, errOut, code := u.nex("--namespace", "default", "workload", "logs", "NoSuchWorkload"); code == 0 || !strings.Contains(errOut, "workload NoSuchWorkload not found in namespace default") {
		t.Errorf("logs of an unknown workload: exit %d %q", code, errOut)
	}
	testutil.Eventually(t, 5*time.Second, "started event", func() bool {
		return events.find(func(m *nats.Msg) bool {
			return m.Subject == "$NEX.FEED.default.event."+svcID && eventOf(m).Type == v1.EventStarted
		})
	})

	// Stop: the reply comes when the process is gone.
	if out := u.mustNex("--namespace", "default", "workload", "stop", svcID); !strings.Contains(out, "stopped") {
		t.Fatalf("stop output %q", out)
	}
	if pidAlive(svcPid) {
		t.Fatalf("service process %d survived stop", svcPid)
	}
	testutil.Eventually(t, 5*time.Second, "stopped event", func() bool {
		return events.find(func(m *nats.Msg) bool {
			return m.Subject == "$NEX.FEED.default.event."+svcID && eventOf(m).Type == v1.EventStopped
		})
	})
	u.mustNex("--namespace", "default", "workload", "stop", jobID) // a finished job is removed

	// Clone with --stop and --name: the clone starts, then the original stops.
	out = u.mustNex("--namespace", "default", "workload", "clone", apiID, "--tags", "region=lab", "--stop", "--name", "api2")
	_, cloneID := startedID(t, out)
	var after []v1.WorkloadInfo
	if err := json.Unmarshal([]byte(u.mustNex("--namespace", "default", "workload", "list", "--json", "--show-metadata")), &after); err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].ID != cloneID || after[0].Name != "api2" {
		t.Fatalf("after clone --stop: %+v", after)
	}

	// No agents: a tag nobody has; the error comes fast and says why per node.
	begin := time.Now()
	_, errOut, code := u.nex("--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "x",
		"--tags", "region=prod", "--start-request", `{"uri":"file:///bin/true"}`)
	if code == 0 || !strings.Contains(errOut, "no agents available for workload placement") || !strings.Contains(errOut, "tag region=prod not matched (node has region=lab)") {
		t.Fatalf("no-agents: exit %d, stderr %q", code, errOut)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("no-agents error took %s", d)
	}

	// A schema error names the field, and nothing is started.
	_, errOut, code = u.nex("--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "bad",
		"--start-request", `{"uri": 5}`)
	if code == 0 || !strings.Contains(errOut, "start_request.uri") {
		t.Fatalf("schema error: exit %d, stderr %q", code, errOut)
	}
	// Bad tokens are refused before anything is sent.
	_, errOut, code = u.nex("--namespace", "de.fault", "workload", "list")
	if code == 0 || !strings.Contains(errOut, "namespace") {
		t.Fatalf("bad namespace: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = u.nex("--namespace", "default", "workload", "stop", "no-such-workload")
	if code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("unknown stop: exit %d, stderr %q", code, errOut)
	}

	// Ctrl+C on the node stops its workloads; nothing is left running.
	var clonePid int
	for _, w := range after {
		clonePid, _ = strconv.Atoi(w.Metadata["pid"])
	}
	node.stop(t, 20*time.Second)
	if clonePid == 0 {
		t.Fatal("clone has no pid in its metadata")
	}
	if pidAlive(clonePid) {
		t.Fatalf("workload %d survived the node's shutdown", clonePid)
	}
}

// feed collects messages from the feed subjects, as `nats sub` would show them.
type feed struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func subscribe(t *testing.T, nc *nats.Conn, subject string) *feed {
	f := &feed{}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		f.mu.Lock()
		f.msgs = append(f.msgs, m)
		f.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *feed) find(pred func(*nats.Msg) bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.msgs {
		if pred(m) {
			return true
		}
	}
	return false
}

func eventOf(m *nats.Msg) v1.Event {
	var ev v1.Event
	_ = json.Unmarshal(m.Data, &ev)
	return ev
}

func pidAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hasLine says whether a live log message holds line (one line, or one of a burst).
func hasLine(m *nats.Msg, line string) bool {
	lines, _ := testutil.FeedLines(m)
	return slices.Contains(lines, line)
}
