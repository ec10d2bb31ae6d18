package native_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native"
)

// needLimits skips a test on a machine where this process cannot make cgroups.
func needLimits(t *testing.T, e *env, names ...string) {
	t.Helper()
	kind, limits := e.d.Cgroups()
	for _, n := range names {
		if !strings.Contains(strings.Join(limits, ","), n) {
			t.Skipf("this machine has no writable %s cgroup (nex.cgroups=%s, limits %v): run as root with cgroups v1 or a delegated v2 cgroup", n, kind, limits)
		}
	}
}

func (e *env) startScript(id, lifecycle, script string, extra map[string]any) (v1.WorkloadInfo, error) {
	sr := map[string]any{"uri": "file:///bin/sh", "argv": []string{"-c", script}}
	for k, v := range extra {
		sr[k] = v
	}
	raw, _ := json.Marshal(sr)
	return e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: id, NodeID: "NODE", Definition: v1.WorkloadDefinition{
		Namespace: "default", Name: id, Type: "native", Lifecycle: lifecycle, StartRequest: raw,
	}})
}

// nextEvent waits for the next event of type typ on sub.
func nextEvent(t *testing.T, sub *nats.Subscription, typ string) v1.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		var ev v1.Event
		_ = json.Unmarshal(m.Data, &ev)
		if ev.Type == typ {
			return ev
		}
	}
	t.Fatalf("no %s event (%s)", typ, sub.Subject)
	return v1.Event{}
}

// A workload that allocates 200 MB under a 64 MiB limit is killed by the kernel; it
// ends oom_killed (info and the exited event say so) and, as a service, is restarted.
func TestMemoryLimitOOMKilled(t *testing.T) {
	e := newEnv(t)
	needLimits(t, e, v1.ResourceMemory)
	events, _ := e.nc.SubscribeSync("$NEX.FEED.default.event.w1")
	e.nc.Flush()
	w, err := e.start(v1.LifecycleService, "alloc", map[string]any{"resources": map[string]any{"memory": "64MiB"},
		"restart": map[string]any{"initial_delay": "100ms", "max_delay": "100ms"}}, "200")
	if err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, events, v1.EventExited)
	if ev.Data["reason"] != v1.ExitOOMKilled || ev.ExitCode == nil || *ev.ExitCode != 128+int(syscall.SIGKILL) {
		t.Fatalf("exited event %+v, want reason oom_killed and code 137", ev)
	}
	nextEvent(t, events, v1.EventRestarted)
	testutil.Eventually(t, 10*time.Second, "info to show the reason", func() bool {
		info := e.state(w.ID)
		return info.ExitReason == v1.ExitOOMKilled && info.Metadata["last_exit_reason"] == v1.ExitOOMKilled && strings.Contains(info.Metadata["error"], "64 MiB")
	})
	// a job that stays under its limit is not touched
	j, err := e.start(v1.LifecycleJob, "alloc", map[string]any{"resources": map[string]any{"memory": 256 << 20}}, "100")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "the job to finish", func() bool { return e.state(j.ID).State == v1.StateStopped })
	if info := e.state(j.ID); *info.ExitCode != 0 || info.ExitReason != "" {
		t.Fatalf("job under its limit ended %d %q", *info.ExitCode, info.ExitReason)
	}
}

// pids: 10 stops a fork loop at 10 processes.
func TestPIDsLimit(t *testing.T) {
	e := newEnv(t)
	needLimits(t, e, v1.ResourcePIDs)
	logs, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.forks")
	e.nc.Flush()
	w, err := e.startScript("forks", v1.LifecycleService, "for i in $(seq 1 40); do sleep 600 & done; echo done; exec sleep 600", map[string]any{"resources": map[string]any{"pids": 10}})
	if err != nil {
		t.Fatal(err)
	}
	forkFailed := false
	for !forkFailed {
		m, err := logs.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal("the fork loop never failed to fork")
		}
		forkFailed = strings.Contains(strings.ToLower(string(m.Data)), "fork")
	}
	pid, _ := strconv.Atoi(e.state(w.ID).Metadata["pid"])
	if n := len(groupMembers(pid)); n > 10 || n < 5 {
		t.Fatalf("%d processes in the workload's group, want at most 10 (and the loop to have forked some)", n)
	}
}

// groupMembers lists the processes of process group pgid.
func groupMembers(pgid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// A busy loop under cpu: 0.2 uses at most 0.3 cores over 5 s.
func TestCPULimit(t *testing.T) {
	e := newEnv(t)
	needLimits(t, e, v1.ResourceCPU)
	w, err := e.startScript("spin", v1.LifecycleService, "while :; do :; done", map[string]any{"resources": map[string]any{"cpu": 0.2}})
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(w.Metadata["pid"])
	before, t0 := cpuTime(t, pid), time.Now()
	time.Sleep(5 * time.Second) // the measurement window, not a wait for an event
	used := (cpuTime(t, pid) - before).Seconds() / time.Since(t0).Seconds()
	t.Logf("busy loop under cpu 0.2 used %.3f cores", used)
	if used > 0.3 {
		t.Fatalf("busy loop used %.2f cores under a limit of 0.2", used)
	}
}

// cpuTime is the user+system time pid has used.
func cpuTime(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return time.Duration(u+s) * time.Second / 100 // USER_HZ
}

// A nexlet that cannot enforce limits refuses a workload that asks for them, saying why,
// and runs it unlimited never.
func TestLimitsRefusedWithoutCgroups(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	d, err := native.New(native.Options{NodeID: "NODE", NexletID: "native", DataDir: t.TempDir(), Conn: nc, NoCgroups: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown(context.Background()) })
	if kind, limits := d.Cgroups(); kind != v1.CgroupsNone || len(limits) != 1 || limits[0] != v1.ResourceDisk { // disk is the nexlet's own check
		t.Fatalf("cgroups %s %v", kind, limits)
	}
	_, err = d.Start(context.Background(), v1.StartWorkloadRequest{WorkloadID: "w", NodeID: "NODE", Definition: v1.WorkloadDefinition{
		Namespace: "default", Name: "w", Type: "native", Lifecycle: v1.LifecycleService,
		StartRequest: []byte(`{"uri":"file:///bin/sleep","argv":["600"],"resources":{"memory":"64MiB"}}`)}})
	if err == nil || !strings.Contains(err.Error(), "cannot enforce resources.memory") {
		t.Fatalf("start with a limit here: %v", err)
	}
	for _, bad := range []string{`{"memory":"lots"}`, `{"memory":1024}`, `{"memory":"99999999TiB"}`, `{"memory":0}`, `{"memory":"0MiB"}`, `{"cpu":-1}`, `{"pids":-3}`, `{"pids":99999999999}`} {
		_, err = d.Start(context.Background(), v1.StartWorkloadRequest{WorkloadID: "x", NodeID: "NODE", Definition: v1.WorkloadDefinition{
			Namespace: "default", Name: "x", Type: "native", Lifecycle: v1.LifecycleService,
			StartRequest: []byte(`{"uri":"file:///bin/sleep","argv":["600"],"resources":` + bad + `}`)}})
		if err == nil || !strings.Contains(err.Error(), "resources") {
			t.Errorf("resources %s: %v", bad, err)
		}
	}
}

// An exec health check: the service is starting until its first pass (failures in the
// start period do not count), healthy after, and when the check fails `failures` times in a row it is unhealthy and restarted.
func TestExecHealthCheckRestarts(t *testing.T) {
	e := newEnv(t)
	events, _ := e.nc.SubscribeSync("$NEX.FEED.default.event.hc")
	e.nc.Flush()
	w, err := e.startScript("hc", v1.LifecycleService, "sleep 0.5; touch healthy; exec sleep 600", map[string]any{
		"health":  map[string]any{"exec": map[string]any{"argv": []string{"/bin/sh", "-c", "test -f healthy || { echo no file; exit 3; }"}}, "interval": "200ms", "failures": 2, "start_period": "10s"},
		"restart": map[string]any{"initial_delay": "100ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if w.State != v1.StateStarting || w.Health != v1.WorkloadHealthStarting {
		t.Fatalf("just started: state %s health %s, want starting", w.State, w.Health)
	}
	nextEvent(t, events, v1.EventHealthy)
	if info := e.state(w.ID); info.State != v1.StateRunning || info.Health != v1.WorkloadHealthHealthy {
		t.Fatalf("after a pass: state %s health %s", info.State, info.Health)
	}
	if err := os.Remove(filepath.Join(e.state(w.ID).Metadata["workdir"], "healthy")); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, events, v1.EventUnhealthy)
	if !strings.Contains(ev.Message, "2 health checks failed") || !strings.Contains(ev.Message, "no file") {
		t.Fatalf("unhealthy event message %q", ev.Message)
	}
	if ex := nextEvent(t, events, v1.EventExited); ex.Data["reason"] != v1.ExitUnhealthy {
		t.Fatalf("exited event %+v, want reason unhealthy", ex)
	}
	nextEvent(t, events, v1.EventRestarted)
	nextEvent(t, events, v1.EventHealthy)
	// healthy again: no stale error; why it last ended stays
	if info := e.state(w.ID); info.Metadata["restarts"] != "1" || info.Health != v1.WorkloadHealthHealthy ||
		info.Metadata["error"] != "" || info.Metadata["last_exit_reason"] != v1.ExitUnhealthy {
		t.Fatalf("after the restart: %+v", info)
	}
	// the same as fields, which a rollout's gate reads whatever the nexlet type
	if info := e.state(w.ID); info.Restarts != 1 || info.LastExitCode == nil || info.Error != "" {
		t.Fatalf("typed fields after the restart: restarts %d, last exit code %v, error %q", info.Restarts, info.LastExitCode, info.Error)
	}
}

// TCP and HTTP checks probe 127.0.0.1.
func TestTCPAndHTTPHealthChecks(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	events, _ := e.nc.SubscribeSync("$NEX.FEED.default.event.>")
	e.nc.Flush()
	if _, err := e.startScript("tcp", v1.LifecycleService, "exec sleep 600", map[string]any{
		"health": map[string]any{"tcp": map[string]any{"port": port}, "interval": "200ms", "failures": 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.startScript("http", v1.LifecycleService, "exec sleep 600", map[string]any{
		"health": map[string]any{"http": map[string]any{"port": port, "path": "/healthz"}, "interval": "200ms", "failures": 1}}); err != nil {
		t.Fatal(err)
	}
	// the listener accepts (tcp passes) but speaks no HTTP (http fails)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	seen := map[string]string{}
	for seen["tcp"] != v1.EventHealthy || seen["http"] != v1.EventUnhealthy {
		m, err := events.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("events so far %v", seen)
		}
		var ev v1.Event
		_ = json.Unmarshal(m.Data, &ev)
		if ev.Type == v1.EventHealthy || ev.Type == v1.EventUnhealthy {
			seen[ev.WorkloadID] = ev.Type
		}
	}
	_ = ln.Close()
	for _, bad := range []map[string]any{{}, {"tcp": map[string]any{"port": 0}}, {"exec": map[string]any{"argv": []string{"test"}}}, {"tcp": map[string]any{"port": 80}, "interval": "1ms"},
		{"exec": map[string]any{"argv": []string{"/no/such/check"}}},
		// the sandbox helper keeps what lies under /tmp by the path's text, as root
		{"exec": map[string]any{"argv": []string{"/tmp/../bin/true"}}}, {"exec": map[string]any{"argv": []string{"/bin//true"}}}} {
		if _, err := e.startScript("bad", v1.LifecycleService, "exec sleep 600", map[string]any{"health": bad}); err == nil || !strings.Contains(err.Error(), "start_request.health") {
			t.Errorf("health %v: %v", bad, err)
		}
	}
	if _, err := e.startScript("job", v1.LifecycleJob, "true", map[string]any{"health": map[string]any{"tcp": map[string]any{"port": port}}}); err == nil {
		t.Error("a job took a health check")
	}
}

// user: nobody runs the workload as UID 65534, with its workdir, HOME and USER, where the
// operator's policy lists it for the namespace; root, groups it does not list (shadow,
// root), and other namespaces are refused.
func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a workload runs as another user only when the nexlet is root")
	}
	policy, err := native.ParseRunAs([]string{"default=nobody"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(o *native.Options) { o.RunAs = policy })
	if err := os.Chmod(filepath.Dir(filepath.Dir(e.state0())), 0o755); err != nil {
		t.Fatal(err)
	}
	logs, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.nobody")
	e.nc.Flush()
	w, err := e.startScript("nobody", v1.LifecycleService, `echo "id=$(id -u):$(id -g) home=$HOME user=$USER"; exec sleep 600`, map[string]any{"user": "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(w.Metadata["pid"])
	if uid := processUID(pid); uid != 65534 {
		t.Fatalf("runs as UID %d, want 65534", uid)
	}
	m, err := logs.NextMsg(5 * time.Second)
	if err != nil || !strings.HasPrefix(string(m.Data), "id=65534:65534 ") || !strings.Contains(string(m.Data), "user=nobody") {
		t.Fatalf("workload says %v (%v)", m, err)
	}
	st, err := os.Stat(w.Metadata["workdir"])
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Fatalf("workdir %v owned by %v", err, st)
	}
	for _, c := range []struct {
		extra map[string]any
		want  string
	}{
		{map[string]any{"user": "root"}, "namespace default may not run as root (UID 0)"},
		{map[string]any{"user": "0"}, "namespace default may not run as root (UID 0)"},
		{map[string]any{"user": "daemon"}, "namespace default may not run as daemon"},
		{map[string]any{"user": "nobody", "group": "shadow"}, "may not run as group shadow"},
		{map[string]any{"user": "nobody", "group": "0"}, "may not run as group root (GID 0)"},
		{map[string]any{"user": "no-such-user-here"}, `no user "no-such-user-here"`},
		{map[string]any{"group": "nogroup"}, "needs start_request.user"},
		{map[string]any{"user": "nobody", "group": "no-such-group-here"}, `no group "no-such-group-here"`},
	} {
		if _, err := e.startScript("bad", v1.LifecycleService, "exec sleep 600", c.extra); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.extra, err, c.want)
		}
	}
}

// state0 is the data dir's workloads directory of the env's driver.
func (e *env) state0() string { return e.dataDir }

// Waiting for workloads takes no OS thread each: 300 services, a handful of threads.
func TestNoThreadPerWorkload(t *testing.T) {
	e := newEnv(t)
	for i := range 300 {
		if _, err := e.startScript("s"+strconv.Itoa(i), v1.LifecycleService, "exec sleep 600", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := threads(t); n > 60 {
		t.Fatalf("%d OS threads with 300 services running", n)
	}
}

func threads(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// The operator's limits: a workload that asks for none gets --default-limits (a fork
// loop stops at 10 processes), and one that asks above --max-limits is declined with the
// field and the ceiling.
func TestOperatorLimits(t *testing.T) {
	needLimits(t, newEnv(t), v1.ResourcePIDs, v1.ResourceMemory)
	defaults, _ := v1.ParseResources("pids=10")
	ceiling, err := v1.ParseResources("memory=128MiB,pids=50")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(o *native.Options) { o.DefaultLimits, o.MaxLimits = defaults, ceiling })
	logs, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.bomb")
	e.nc.Flush()
	w, err := e.startScript("bomb", v1.LifecycleService, "for i in $(seq 1 40); do sleep 600 & done; echo done; exec sleep 600", nil)
	if err != nil {
		t.Fatal(err)
	}
	for forkFailed := false; !forkFailed; {
		m, err := logs.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal("a workload that asked for no limits forked without bound")
		}
		forkFailed = strings.Contains(strings.ToLower(string(m.Data)), "fork")
	}
	pid, _ := strconv.Atoi(e.state(w.ID).Metadata["pid"])
	if n := len(groupMembers(pid)); n > 10 {
		t.Fatalf("%d processes under a default of pids=10", n)
	}
	for _, c := range []struct {
		res  map[string]any
		want string
	}{
		{map[string]any{"pids": 100}, "start_request.resources.pids: 100 is above this node's ceiling of 50"},
		{map[string]any{"memory": "1GiB"}, "start_request.resources.memory: 1 GiB is above this node's ceiling of 128 MiB"},
	} {
		if _, err := e.startScript("greedy", v1.LifecycleService, "exec sleep 600", map[string]any{"resources": c.res}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.res, err, c.want)
		}
	}
}

// A workload whose workdir outgrows resources.disk is stopped for good (a service is not
// started again on the same full workdir), saying why; below it, its usage shows.
func TestDiskLimit(t *testing.T) {
	e := newEnv(t)
	w, err := e.startScript("small", v1.LifecycleService, `head -c 1048576 /dev/zero > "$PWD/one"; exec sleep 600`, map[string]any{"resources": map[string]any{"disk": "8MiB"}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the small workload's usage", func() bool {
		return e.state(w.ID).Metadata["disk_used"] != "" && e.state(w.ID).Metadata["disk_used"] != "0 B"
	})
	if st := e.state(w.ID); st.State != v1.StateRunning {
		t.Fatalf("a workload under its disk limit: %+v", st)
	}
	big, err := e.startScript("big", v1.LifecycleService, `head -c 20971520 /dev/zero > "$PWD/fill"; exec sleep 600`, map[string]any{"resources": map[string]any{"disk": "8MiB"}})
	if err != nil {
		t.Fatal(err)
	}
	var info v1.WorkloadInfo
	testutil.Eventually(t, 15*time.Second, "the workload over its disk limit to be stopped", func() bool {
		info = e.state(big.ID)
		return info.State == v1.StateFailed
	})
	if info.ExitReason != v1.ExitDiskLimit || !strings.Contains(info.Metadata["error"], "over its disk limit of 8 MiB") || info.Metadata["restarts"] != "0" {
		t.Fatalf("after going over its disk limit: %+v", info)
	}
	// what a walk of the workdir does not see counts too (an attacker's walk held 900 MB
	// in removed files under a limit of 256 MiB, and 170,000 empty files counted as nothing)
	for name, script := range map[string]string{
		"removed": `exec 3>"$PWD/gone"; head -c 20971520 /dev/zero >&3; rm "$PWD/gone"; exec sleep 600`,
		"inodes":  `mkdir "$PWD/d" && cd "$PWD/d" && seq 1 4000 | xargs touch; exec sleep 600`,
	} {
		w, err := e.startScript(name, v1.LifecycleService, script, map[string]any{"resources": map[string]any{"disk": "8MiB"}})
		if err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 15*time.Second, name+" over its disk limit to be stopped", func() bool { return e.state(w.ID).State == v1.StateFailed })
		if info := e.state(w.ID); info.ExitReason != v1.ExitDiskLimit {
			t.Fatalf("%s: %+v", name, info)
		}
	}
	// a disk limit alone makes no cgroup (one with no controllers wrote "tasks" files and
	// workload-named directories into the nexlet's working directory)
	for _, p := range []string{"tasks", w.ID, big.ID} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was made in the working directory", p)
		}
	}
}

// exec beside a workload: its output, exit code and workdir; with TTY on a terminal of
// its own, which it leads.
func TestExecBeside(t *testing.T) {
	e := newEnv(t)
	w, err := e.startScript("ex", v1.LifecycleService, "exec sleep 600", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.d.Exec(e.ctx, w.ID, v1.ExecRequest{Argv: []string{"sh", "-c", "pwd; echo err >&2; test -t 1 || echo no terminal; exit 4"}, Timeout: v1.DefaultExecTimeout})
	if err != nil || r.ExitCode != 4 || !strings.Contains(string(r.Stdout), "no terminal") || string(r.Stderr) != "err\n" {
		t.Fatalf("exec: %+v %v", r, err)
	}
	r, err = e.d.Exec(e.ctx, w.ID, v1.ExecRequest{Argv: []string{"sh", "-c", "test -t 0 && test -t 1 && test -t 2 && echo terminal; tty; exit 5"}, Timeout: v1.DefaultExecTimeout, TTY: true})
	if err != nil || r.ExitCode != 5 || !strings.Contains(string(r.Stdout), "terminal\r\n/dev/pts/") {
		t.Fatalf("exec with a terminal: %+v %v (stdout %q)", r, err, r.Stdout)
	}
	// the sandbox helper keeps what lies under /tmp by the path's text, as root: a path
	// that is not clean is refused before anything runs
	for _, argv0 := range []string{"/tmp/../bin/true", "/bin//true", "/bin/./true"} {
		r, err = e.d.Exec(e.ctx, w.ID, v1.ExecRequest{Argv: []string{argv0}, Timeout: v1.DefaultExecTimeout})
		if err != nil || r.ExitCode != 127 || !strings.Contains(string(r.Stderr), "give a clean absolute path") {
			t.Fatalf("exec of %s: %+v %v", argv0, r, err)
		}
	}
}

// Prune removes the workdirs of workloads neither kept nor known, and nothing else.
func TestPruneWorkdirs(t *testing.T) {
	e := newEnv(t)
	w, err := e.startScript("runs", v1.LifecycleService, "exec sleep 600", nil)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(e.state(w.ID).Metadata["workdir"])
	for _, id := range []string{"leftover", "recorded"} {
		if err := os.MkdirAll(filepath.Join(root, id, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := e.d.Prune(e.ctx, []string{"recorded"})
	if err != nil || !slices.Equal(removed, []string{"leftover"}) {
		t.Fatalf("prune: %v %v", removed, err)
	}
	for id, want := range map[string]bool{"leftover": false, "recorded": true, w.ID: true} {
		if _, err := os.Stat(filepath.Join(root, id)); (err == nil) != want {
			t.Errorf("workdir %s: exists %v, want %v", id, err == nil, want)
		}
	}
}

// A lent workdir is one workload's at a time, and none lies in or holds another's; the
// workload that has it is named to its own namespace only (another tenant learned its
// ID, and could have a workdir lent inside it, swap its own directories there for
// symlinks and have root's disk walk measure where they point).
func TestLentWorkdirsApart(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"w1/sub", "w2"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnvWith(t, func(o *native.Options) { o.WorkdirRoots = []string{root} })
	lend := func(ns, id, wd string) error {
		raw, _ := json.Marshal(map[string]any{"uri": "file://" + e.exe, "workdir": wd, "environment": map[string]string{"NEX_TEST_WORKLOAD": "serve"}})
		_, err := e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: id, NodeID: "NODE", Definition: v1.WorkloadDefinition{
			Namespace: ns, Name: id, Type: "native", Lifecycle: v1.LifecycleService, StartRequest: raw}})
		return err
	}
	w1 := filepath.Join(root, "w1")
	if err := lend("default", "first", w1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ns, wd, want string }{
		{"default", w1, "is already lent to workload first"},
		{"default", filepath.Join(w1, "sub"), "holds or lies in " + w1 + ", lent to workload first"},
		{"default", root, "holds or lies in " + w1 + ", lent to workload first"},
		{"other", w1, "lent to a workload of another namespace"},
		{"other", filepath.Join(w1, "sub"), "lent to a workload of another namespace"},
	} {
		err := lend(c.ns, "second", c.wd)
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.ns == "other" && (strings.Contains(err.Error(), "first") || strings.Contains(err.Error(), w1+","))) {
			t.Errorf("namespace %s lent %s: %v, want %q", c.ns, c.wd, err, c.want)
		}
	}
	if err := lend("other", "third", filepath.Join(root, "w2")); err != nil {
		t.Fatalf("a workdir beside the lent one: %v", err)
	}
}
