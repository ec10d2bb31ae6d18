package native_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/sandbox"
	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
	"golang.org/x/sys/unix"
)

// A workload of its own user runs in a sandbox of its own: a /tmp and /dev/shm nobody
// else sees, a /proc with only its own processes, SysV IPC of its own, no_new_privs and no
// capabilities; its workdir and executable are where they were, even under /tmp.
// Both helpers are checked: nex-sandbox (C), which nexlet-native runs, and the Go helper
// it runs when nex-sandbox is missing (here the test binary).
func TestSandbox(t *testing.T) {
	for _, h := range sandboxHelpers(t) {
		t.Run(h.name, func(t *testing.T) { testSandbox(t, h.exe) })
	}
}

func testSandbox(t *testing.T, helper string) {
	e, base := sandboxedOrSkip(t, 300200, func(o *native.Options) { o.SandboxExe = helper })
	marker := filepath.Join("/tmp", "nex-sandbox-marker-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(marker, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(marker)
	script := filepath.Join(base, "probe.sh") // under /tmp, as the executable
	if err := os.WriteFile(script, []byte(`#!/bin/sh
if [ -e `+marker+` ]; then echo "SHARED tmp"; else echo "PRIVATE tmp"; fi
if [ -d /proc/`+strconv.Itoa(os.Getpid())+` ]; then echo "SEES nexlet"; else echo "HIDDEN nexlet"; fi
echo "PROCS $(ls /proc | grep -c '^[0-9]')"
echo "PARENT $PPID"
echo hi > "$HOME/file" && echo "WORKDIR ok"
ipcmk -M 4096 >/dev/null && echo "SHM made"
grep -E '^(NoNewPrivs|CapEff)' /proc/self/status
echo END
exec sleep 600
`), 0o755); err != nil {
		t.Fatal(err)
	}
	logs, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.box")
	e.nc.Flush()
	w, err := e.d.Start(context.Background(), v1.StartWorkloadRequest{WorkloadID: "box", NodeID: "NODE", Definition: v1.WorkloadDefinition{
		Namespace: "default", Name: "box", Type: "native", Lifecycle: v1.LifecycleService, StartRequest: []byte(`{"uri":"file://` + script + `"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	testutil.Eventually(t, 10*time.Second, "the probe's report", func() bool {
		for {
			m, err := logs.NextMsg(10 * time.Millisecond)
			if err != nil {
				break
			}
			out.Write(m.Data)
			out.WriteByte('\n')
		}
		return strings.Contains(out.String(), "END")
	})
	got := out.String()
	if b, err := os.ReadFile("/proc/" + w.Metadata["pid"] + "/status"); err == nil { // the sandbox's init
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "RssAnon") || strings.HasPrefix(l, "Threads") {
				t.Log("sandbox init:", l)
			}
			if n, ok := strings.CutPrefix(l, "Threads:\t"); ok && filepath.Base(helper) == "nex-sandbox" && n != "1" {
				t.Errorf("nex-sandbox's init runs %s threads, not 1", n)
			}
		}
	}
	for _, want := range []string{"PRIVATE tmp", "HIDDEN nexlet", "PARENT 1", "WORKDIR ok", "SHM made", "NoNewPrivs:\t1", "CapEff:\t0000000000000000"} {
		if !strings.Contains(got, want) {
			t.Errorf("the sandboxed workload does not say %q:\n%s", want, got)
		}
	}
	if b, _ := os.ReadFile("/proc/sysvipc/shm"); strings.Contains(string(b), " 4096 ") {
		t.Errorf("the workload's shared memory segment shows outside its sandbox:\n%s", b)
	}
}

// An executable fetched into a workdir under /tmp runs in the sandbox: the workdir's bind
// shows it (it is not bound on its own, which made its mount point as root through the
// tenant's workdir), with both helpers.
func TestSandboxRunsAnExecutableFromItsWorkdir(t *testing.T) {
	for _, h := range sandboxHelpers(t) {
		t.Run(h.name, func(t *testing.T) {
			e, _ := sandboxedOrSkip(t, 300480, func(o *native.Options) { o.SandboxExe = h.exe })
			e.putObjects(t, "bins", map[string]string{"run.sh": "#!/bin/sh\necho \"RAN $(pwd) $0\"\n"})
			if got := e.firstJobLine(t, "fetched", map[string]any{"uri": "nats://bins/run.sh"}); !strings.HasPrefix(got, "RAN /tmp/") {
				t.Fatalf("the fetched executable said %q", got)
			}
		})
	}
}

// A workload's argv and env may together pass what one environment string holds (128
// KiB), which the sandbox helper's spec is carried in: it spans several (a newcomer's
// 200 arguments of 1,000 bytes failed with "fork/exec nex-sandbox: argument list too long").
func TestSandboxTakesALongArgv(t *testing.T) {
	for _, h := range sandboxHelpers(t) {
		t.Run(h.name, func(t *testing.T) {
			e, _ := sandboxedOrSkip(t, 300500, func(o *native.Options) { o.SandboxExe = h.exe })
			argv := []string{"-c", "echo ARGS $#", "sh"}
			for range 200 {
				argv = append(argv, strings.Repeat("x", 1000))
			}
			if got := e.firstJobLine(t, "long", map[string]any{"uri": "file:///bin/sh", "argv": argv}); got != "ARGS 200" {
				t.Fatalf("a workload with 200 KB of arguments said %q", got)
			}
		})
	}
}

// A nex-sandbox that fails its probe (one of another build, left by an upgrade without a
// C compiler) does not leave workloads unsandboxed: the nexlet sandboxes through its
// fallback, itself.
func TestBrokenSandboxHelperFallsBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads are sandboxed only when the nexlet is root")
	}
	broken := filepath.Join(t.TempDir(), "nex-sandbox")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'nex sandbox: bad spec: version' >&2\nexit 127\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if err := spawn.ProbeSandbox(exe); err != nil {
		t.Skipf("this machine does not let the nexlet sandbox workloads: %v", err)
	}
	alone, _ := sandboxedEnv(t, 300440, func(o *native.Options) { o.SandboxExe = broken })
	if alone.d.Sandbox() != v1.SandboxNone {
		t.Fatalf("a broken helper and no fallback: nex.sandbox=%s", alone.d.Sandbox())
	}
	e, _ := sandboxedEnv(t, 300460, func(o *native.Options) { o.SandboxExe, o.SandboxFallback = broken, exe })
	if e.d.Sandbox() != v1.SandboxNamespaces {
		t.Fatalf("a broken helper with the nexlet itself to fall back on: nex.sandbox=%s", e.d.Sandbox())
	}
	if got := e.firstJobLine(t, "fb", map[string]any{"uri": "file:///bin/sh", "argv": []string{"-c", "echo PARENT $PPID"}}); got != "PARENT 1" {
		t.Fatalf("a workload sandboxed through the fallback said %q", got)
	}
}

// A workload run as a user it shares (run-as) gets a sandbox of its own all the same, a
// PID namespace included: a stop's SIGTERM reaches it, and what it left running outside
// its process group (a daemon, setsid) ends with it, though a UID sweep cannot tell its
// processes from those of other workloads of that user.
func TestSandboxEndsASharedUsersDaemons(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads are sandboxed only when the nexlet is root")
	}
	policy, err := native.ParseRunAs([]string{"default=nobody"})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := sandboxedEnv(t, 300240, func(o *native.Options) { o.RunAs = policy })
	if e.d.Sandbox() != v1.SandboxNamespaces {
		t.Skipf("this machine does not let the nexlet sandbox workloads (nex.sandbox=%s)", e.d.Sandbox())
	}
	logs, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.shared")
	e.nc.Flush()
	marker := strconv.Itoa(7000 + os.Getpid()%1000)
	w, err := e.startScript("shared", v1.LifecycleService, `setsid sleep `+marker+` & trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done`, map[string]any{"user": "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the daemon started", func() bool { return len(sleepers(marker)) == 1 })
	info, err := e.d.Stop(e.ctx, w.ID, v1.StopRequest{GracePeriod: v1.Duration(20 * time.Second)})
	if err != nil || info.State != v1.StateStopped {
		t.Fatalf("stop: %+v %v", info, err)
	}
	testutil.Eventually(t, 5*time.Second, "the daemon gone with its workload", func() bool { return len(sleepers(marker)) == 0 })
	var said []string
	for m, err := logs.NextMsg(time.Second); err == nil; m, err = logs.NextMsg(100 * time.Millisecond) {
		l, _ := testutil.FeedLines(m)
		said = append(said, l...)
	}
	if !slices.Contains(said, "bye") {
		t.Fatalf("the workload's TERM handler did not run (said %q)", said)
	}
}

// sleepers lists the processes running `sleep arg`.
func sleepers(arg string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		if b, err := os.ReadFile("/proc/" + en.Name() + "/cmdline"); err == nil && string(b) == "sleep\x00"+arg+"\x00" {
			pid, _ := strconv.Atoi(en.Name())
			pids = append(pids, pid)
		}
	}
	return pids
}

// A file:// artifact is taken only from where the workload could read it itself: not a
// FIFO (which would hold the start forever), not the nexlet's /proc (its /proc/self, other
// users' command lines), not the host's /tmp or /dev/shm of a sandboxed workload; and an
// artifact path must name a file in the workdir, not the workdir itself.
func TestArtifactsOutOfView(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads are users of their own only when the nexlet is root")
	}
	e, base := sandboxedEnv(t, 300220)
	fifo := filepath.Join(base, "fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	shm := filepath.Join("/dev/shm", "nex-artifact-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(shm, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(shm)
	cases := []struct{ artifact, want string }{
		{`{"uri":"file://` + fifo + `"}`, "is not a regular file"},
		{`{"uri":"file:///proc/self/status"}`, "under /proc"},
		{`{"uri":"file:///dev/stdin"}`, "goes through one of /proc's links into a process"},
		{`{"uri":"file:///etc/hostname","path":"."}`, "inside the workdir"},
	}
	if e.d.Sandbox() == v1.SandboxNamespaces {
		cases = append(cases, struct{ artifact, want string }{`{"uri":"file://` + shm + `"}`, "private to each workload's sandbox"})
	}
	for i, c := range cases {
		done := make(chan error, 1)
		go func() {
			_, err := e.d.Start(context.Background(), v1.StartWorkloadRequest{WorkloadID: "a" + strconv.Itoa(i), NodeID: "NODE", Definition: v1.WorkloadDefinition{
				Namespace: "default", Name: "a", Type: "native", Lifecycle: v1.LifecycleJob, StartRequest: []byte(`{"uri":"file:///bin/true","artifacts":[` + c.artifact + `]}`)}})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("artifact %s: %v, want %q", c.artifact, err, c.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("artifact %s held the start", c.artifact)
		}
	}
}

// sandboxedOrSkip is sandboxedEnv, or skips the test where the nexlet cannot sandbox
// workloads (not root, or a machine that refuses the namespaces).
func sandboxedOrSkip(t *testing.T, first uint32, tune ...func(*native.Options)) (*env, string) {
	if os.Geteuid() != 0 {
		t.Skip("workloads are sandboxed only when the nexlet is root")
	}
	e, base := sandboxedEnv(t, first, tune...)
	if e.d.Sandbox() != v1.SandboxNamespaces {
		t.Skipf("this machine does not let the nexlet sandbox workloads (nex.sandbox=%s)", e.d.Sandbox())
	}
	return e, base
}

// sandboxedEnv is an env whose workloads run as users of their own (20 UIDs from first)
// through nex-sandbox, the sandbox helper nexlet-native runs (the test binary where no C
// compiler could build it, outside CI); base is a directory workloads can reach.
func sandboxedEnv(t *testing.T, first uint32, tune ...func(*native.Options)) (*env, string) {
	helpers := sandboxHelpers(t)
	exe := helpers[0].exe
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(o *native.Options) {
		o.DataDir = filepath.Join(base, "native")
		o.UIDs, o.UIDLockDir, o.SandboxExe = &native.UIDRange{First: first, Last: first + 19}, t.TempDir(), exe
		for _, f := range tune {
			f(o)
		}
	})
	return e, base
}

// Fetched artifacts are cached within a bound, least recently used dropped first, and no
// one download may be larger: a tenant's downloads cannot fill the node's disk.
func TestArtifactCacheBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		_, _ = w.Write([]byte(strings.Repeat(r.URL.Query().Get("c"), n)))
	}))
	defer srv.Close()
	e := newEnvWith(t, func(o *native.Options) { o.CacheMaxBytes = 1 << 20 })
	start := func(id, artifact string) error {
		_, err := e.d.Start(context.Background(), v1.StartWorkloadRequest{WorkloadID: id, NodeID: "NODE", Definition: v1.WorkloadDefinition{
			Namespace: "default", Name: id, Type: "native", Lifecycle: v1.LifecycleJob,
			StartRequest: []byte(`{"uri":"file:///bin/true","artifacts":[{"uri":"` + srv.URL + artifact + `","path":"f"}]}`)}})
		return err
	}
	if err := start("big", "/2097152?c=x"); err == nil || !strings.Contains(err.Error(), "larger than half this nexlet's artifact cache of 1 MiB") {
		t.Fatalf("a 2 MiB artifact under a 1 MiB cache: %v", err)
	}
	for i, c := range []string{"a", "b", "c"} {
		if err := start("s"+strconv.Itoa(i), "/500000?c="+c); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	entries, _ := os.ReadDir(filepath.Join(e.dataDir, "cache"))
	for _, en := range entries {
		if info, err := en.Info(); err == nil {
			total += info.Size()
		}
	}
	if total > 1<<20 {
		t.Fatalf("the cache holds %d bytes over its bound of 1 MiB", total)
	}
}

// The sandbox's init runs in the workload's cgroup, and its threads count as tasks: the
// workload still has the processes its pids limit gives it.
func TestSandboxLeavesThePIDsLimitToTheWorkload(t *testing.T) {
	e, _ := sandboxedOrSkip(t, 300280)
	needLimits(t, e, v1.ResourcePIDs)
	logs, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.forks")
	e.nc.Flush()
	if _, err := e.startScript("forks", v1.LifecycleService, "exec 2>&1; for i in $(seq 1 8); do sleep 600 & done; echo FORKED; exec sleep 600", map[string]any{"resources": map[string]any{"pids": 10}}); err != nil {
		t.Fatal(err)
	}
	m, err := logs.NextMsg(10 * time.Second)
	if err != nil || string(m.Data) != "FORKED" {
		t.Fatalf("a sandboxed workload with pids=10 forking 8: %v %v", m, err)
	}
}

// A sandboxed start returns once the workload's own process runs, not when its sandbox's
// helper does: a drain stopped a service's old copy before the sandbox had started the
// new one's process, and for a moment neither ran (a CI run, under load).
func TestSandboxedStartReturnsOnceTheWorkloadRuns(t *testing.T) {
	e, _ := sandboxedOrSkip(t, 300400)
	arg := "600." + strconv.Itoa(os.Getpid()) // a command line no other process has; sh stays (no exec), so its command line holds it from its start on
	for i := range 5 {
		id, mine := "ready"+strconv.Itoa(i), arg+strconv.Itoa(i)
		w, err := e.startScript(id, v1.LifecycleService, "sleep "+mine, nil)
		if err != nil {
			t.Fatal(err)
		}
		// at once, no waiting: the workload's process (the child of the sandbox's init, whose
		// PID the start gives) shows the workload's command line; or none, for the few
		// microseconds between its exec's closing of the ready pipe, which the start waits
		// for, and the kernel's setting up of the new program's arguments (seen 106 times in
		// 2,000 in C with vfork, 0 with fork). A process that has not exec'd yet shows the
		// helper's.
		if len(testutil.Processes("sleep", mine)) == 0 {
			init, _ := strconv.Atoi(w.Metadata["pid"])
			kids := childrenOf(init)
			if len(kids) != 1 {
				t.Fatalf("start %d returned before the workload's process was started: the sandbox's init %d has children %v", i, init, kids)
			}
			if b, err := os.ReadFile("/proc/" + strconv.Itoa(kids[0]) + "/cmdline"); err != nil || len(b) > 0 && !strings.Contains(string(b), mine) {
				t.Fatalf("start %d returned before the workload's process ran: its command line is %q (%v)", i, b, err)
			}
			testutil.Eventually(t, 5*time.Second, "the workload's command line", func() bool { return len(testutil.Processes("sleep", mine)) > 0 })
		}
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	var kids []int
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		b, err := os.ReadFile("/proc/" + en.Name() + "/stat")
		if err != nil {
			continue
		}
		rest := string(b[bytes.LastIndexByte(b, ')')+1:]) // after the command's name: " S ppid ..."
		if f := strings.Fields(rest); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kid, _ := strconv.Atoi(en.Name())
			kids = append(kids, kid)
		}
	}
	return kids
}

// firstJobLine starts a job with the start request sr and returns the first line of its
// output (fatal when it does not start, or says nothing within 10 s).
func (e *env) firstJobLine(t *testing.T, id string, sr map[string]any) string {
	t.Helper()
	logs, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs." + id)
	defer logs.Unsubscribe()
	e.nc.Flush()
	raw, _ := json.Marshal(sr)
	w, err := e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: id, NodeID: "NODE", Definition: v1.WorkloadDefinition{
		Namespace: "default", Name: id, Type: "native", Lifecycle: v1.LifecycleJob, StartRequest: raw}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := logs.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no output from job %s (%v): %v", id, w.Metadata, err)
	}
	return string(m.Data)
}

type sandboxHelper struct{ name, exe string }

var (
	cHelperOnce sync.Once
	cHelper     string // nex-sandbox built for this test binary, or ""
	cHelperErr  error
)

// sandboxHelpers are the helpers to sandbox through, nex-sandbox (C) first when a C
// compiler could build it (CI fails without one), then the test binary (the Go helper).
func sandboxHelpers(t *testing.T) []sandboxHelper {
	exe, _ := os.Executable()
	cHelperOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nex-sandbox-")
		if err == nil {
			err = testutil.BuildSandboxHelper("../../..", dir)
		}
		if p := filepath.Join(dir, "nex-sandbox"); err == nil && spawn.ExecutableFile(p) {
			cHelper = p
		}
		cHelperErr = err
	})
	if cHelperErr != nil {
		t.Fatal(cHelperErr)
	}
	if cHelper == "" {
		return []sandboxHelper{{"go", exe}}
	}
	return []sandboxHelper{{"c", cHelper}, {"go", exe}}
}

// The helper opens what it binds back over a private directory (an executable or a
// workdir under /tmp) as the workload's user: a symlink there that points at a file
// behind a directory the workload may not enter does not lend it that file (it did, as
// root, for a tenant that swapped a checked executable for such a symlink). Both helpers.
func TestSandboxKeepsOnlyWhatTheWorkloadReaches(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root")
	}
	for _, h := range sandboxHelpers(t) {
		t.Run(h.name, func(t *testing.T) {
			if err := spawn.ProbeSandbox(h.exe); err != nil {
				t.Skipf("cannot sandbox here: %v", err)
			}
			closed := t.TempDir() // root's, 0700: the workload may not enter it
			tool := filepath.Join(closed, "tool")
			if err := os.WriteFile(tool, []byte("#!/bin/sh\necho behind a closed door\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			open, err := os.MkdirTemp("", "nex-keep-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(open)
			if err := os.Chmod(open, 0o755); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(open, "run")
			if err := os.Symlink(tool, link); err != nil {
				t.Fatal(err)
			}
			// a path whose text lies under /tmp and is elsewhere: refused as it stands
			for _, path := range []string{"/tmp/.." + tool, "/tmp//" + strings.TrimPrefix(link, "/tmp/"), link + "/."} {
				spec := sandbox.Spec{UID: 300290, GID: 300290, Path: path, Argv: []string{path}, Dir: "/"}
				if out, err := sandboxed(h.exe, spec); err == nil || !strings.Contains(string(out), "must be clean absolute paths") {
					t.Fatalf("the helper took %s: %v\n%s", path, err, out)
				}
			}
			// a magic link (another workload user's process's executable): the helper's
			// CAP_SYS_PTRACE, which the workload lacks, let it through
			other := exec.Command("/bin/sleep", "60")
			other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 300291, Gid: 300291}}
			if err := other.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
			magic := filepath.Join(open, "exe")
			if err := os.Symlink("/proc/"+strconv.Itoa(other.Process.Pid)+"/exe", magic); err != nil {
				t.Fatal(err)
			}
			mspec := sandbox.Spec{UID: 300290, GID: 300290, Path: magic, Argv: []string{magic}, Dir: "/"}
			mcmd := exec.Command(h.exe)
			mcmd.Args = []string{sandbox.Arg}
			mcmd.Env = mspec.Environ()
			mcmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: sandbox.Flags}
			if out, err := mcmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "open "+magic+" as UID 300290: too many levels of symbolic links") {
				t.Fatalf("the helper opened %s (a magic link) as the workload: %v\n%s", magic, err, out)
			}
			spec := sandbox.Spec{UID: 300290, GID: 300290, Path: link, Argv: []string{link}, Dir: "/"}
			out, err := sandboxed(h.exe, spec)
			if strings.Contains(string(out), "closed door") || err == nil {
				t.Fatalf("the workload ran a file it may not reach, through a symlink under /tmp: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "permission denied") {
				t.Fatalf("refused, but not for the workload's rights: %v\n%s", err, out)
			}
		})
	}
}

// A sandboxed workload gets pseudo-terminals from a devpts of its own, at most
// sandbox.PTYMax of them: the host's pool (kernel.pty.max, one for the whole machine) was
// every workload's to use up, operators' logins and every tenant's exec --tty with it (a
// review's walk: one job held 300). Both helpers.
func TestSandboxHasPTYsOfItsOwn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root")
	}
	grab := testutil.BuildC(t, "grab", `#include <fcntl.h>
#include <stdio.h>
int main(void) {
	int n = 0;
	while (n < 200 && open("/dev/ptmx", O_RDWR | O_NOCTTY) >= 0)
		n++;
	printf("%d\n", n);
	return 0;
}
`)
	for _, h := range sandboxHelpers(t) {
		t.Run(h.name, func(t *testing.T) {
			if err := spawn.ProbeSandbox(h.exe); err != nil {
				t.Skipf("cannot sandbox here: %v", err)
			}
			spec := sandbox.Spec{UID: 300292, GID: 300292, Path: grab, Argv: []string{grab}, Dir: "/"}
			out, err := sandboxed(h.exe, spec)
			if err != nil {
				t.Fatalf("the sandboxed job: %v\n%s", err, out)
			}
			if n := strings.TrimSpace(string(out)); n != strconv.Itoa(sandbox.PTYMax) {
				t.Fatalf("a sandboxed job opened %s pseudo-terminals, want %d", n, sandbox.PTYMax)
			}
		})
	}
}

// A sandboxed workload connects to no abstract unix socket made outside its sandbox (a
// Landlock scope, where the kernel has it): sandboxes share the host's network namespace,
// and a tenant's jobs passed their /dev/shm files, with the memory in them, over one to a
// workload of the tenant's that outlived them (a review's walk). Both helpers.
func TestSandboxReachesNoAbstractSocketOutside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root")
	}
	if abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, 1); errno != 0 || abi < 6 {
		t.Skip("no Landlock scopes here (Linux 6.12)")
	}
	name := "nex-test-" + strconv.Itoa(os.Getpid())
	ln, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dial := testutil.BuildC(t, "dial", `#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t n = strlen(argv[1]);
	memcpy(a.sun_path + 1, argv[1], n);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(s, (struct sockaddr *)&a, sizeof(sa_family_t) + 1 + n) == 0)
		puts("connected");
	else
		printf("refused: %s\n", strerror(errno));
	return 0;
}
`)
	for _, h := range sandboxHelpers(t) {
		t.Run(h.name, func(t *testing.T) {
			if err := spawn.ProbeSandbox(h.exe); err != nil {
				t.Skipf("cannot sandbox here: %v", err)
			}
			spec := sandbox.Spec{UID: 300293, GID: 300293, Path: dial, Argv: []string{dial, name}, Dir: "/"}
			out, err := sandboxed(h.exe, spec)
			if err != nil || !strings.Contains(string(out), "refused") {
				t.Fatalf("a sandboxed job dialling an abstract socket outside its sandbox: %v\n%s", err, out)
			}
		})
	}
}

// sandboxed runs spec through the sandbox helper exe, as nexlet-native starts it (in new
// namespaces), and returns its output.
func sandboxed(exe string, spec sandbox.Spec) ([]byte, error) {
	cmd := exec.Command(exe)
	cmd.Args = []string{sandbox.Arg}
	cmd.Env = spec.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: sandbox.Flags}
	return cmd.CombinedOutput()
}

// A probe of the sandbox helper passes by what the helper says, not by its exit status
// alone: nexlet-native reaps its children with wait4(-1) (spawn.BecomeSubreaper), and
// took a probe's status before the probe's own wait, which then failed with ECHILD; the
// helper that had passed was taken for failed, and workloads went through the Go one (a
// CI dry run). Here a loop reaps every child as it ends, as the reaper does.
func TestProbeSurvivesTheReaper(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root")
	}
	helpers := sandboxHelpers(t)
	if err := spawn.ProbeSandbox(helpers[0].exe); err != nil {
		t.Skipf("cannot sandbox here: %v", err)
	}
	stop := make(chan struct{})
	reaped := make(chan int, 1)
	go func() {
		n := 0
		defer func() { reaped <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var ws syscall.WaitStatus
			if pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid > 0 {
				n++
			}
		}
	}()
	for i := range 10 {
		for _, h := range helpers {
			if err := spawn.ProbeSandbox(h.exe); err != nil {
				close(stop)
				t.Fatalf("probe %d of the %s helper, its status reaped by another: %v", i, h.name, err)
			}
		}
	}
	close(stop)
	if n := <-reaped; n == 0 {
		t.Log("the reaper took no probe's status this time")
	}
}

// A file with execute bits that is no program (text without #!), or a script whose
// interpreter is missing, fails to start, saying why, through either helper: the helper
// execs it after the start has been answered, and the workload was "started", then
// restarted with exit 127 for good (a newcomer's walk of /etc/hostname, mode 0755). The
// helper reports its failed exec through the ready pipe. Both helpers.
func TestSandboxedStartOfNoProgramFails(t *testing.T) {
	for i, h := range sandboxHelpers(t) {
		t.Run(h.name, func(t *testing.T) {
			e, base := sandboxedOrSkip(t, uint32(300540+20*i), func(o *native.Options) { o.SandboxExe = h.exe })
			for _, c := range []struct{ content, want string }{
				{"hello\n", "exec format error (not a program this machine can run"},
				{"#!/no/such/interpreter\necho hi\n", "the interpreter /no/such/interpreter named in its first line"},
				{"#!/bin/sh\r\necho hi\r\n", "ends in a carriage return (DOS line endings"},
				{"#!/usr\necho hi\n", "the interpreter /usr named in its first line (#!/usr) is not a program"},
			} {
				p := filepath.Join(base, "noprog")
				if err := os.WriteFile(p, []byte(c.content), 0o755); err != nil {
					t.Fatal(err)
				}
				raw, _ := json.Marshal(map[string]any{"uri": "file://" + p})
				_, err := e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: "noprog", Definition: v1.WorkloadDefinition{Namespace: "default", Name: "noprog", Type: "native", Lifecycle: v1.LifecycleService, StartRequest: raw}})
				if !v1.IsCode(err, v1.CodeStartFailed) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("a start of %q: %v, want start_failed saying %q", c.content, err, c.want)
				}
				if l, _ := e.d.List(e.ctx, ""); len(l) != 0 {
					t.Fatalf("a failed start left %+v", l)
				}
			}
		})
	}
}
