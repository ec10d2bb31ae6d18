package native_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native"
)

// TestMain lets the test binary act as a workload when NEX_TEST_WORKLOAD is set.
func TestMain(m *testing.M) {
	native.SandboxMain()
	if mode := os.Getenv("NEX_TEST_WORKLOAD"); mode != "" {
		os.Exit(fakeWorkload(mode, os.Args[1:]))
	}
	code := m.Run()
	if cHelper != "" {
		_ = os.RemoveAll(filepath.Dir(cHelper))
	}
	os.Exit(code)
}

func fakeWorkload(mode string, args []string) int {
	switch mode {
	case "lines": // print N lines, then a partial one, then exit with code args[1]
		n, _ := strconv.Atoi(args[0])
		w := bufio.NewWriter(os.Stdout)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "line %d\n", i)
		}
		fmt.Fprint(w, "partial")
		w.Flush()
		fmt.Fprintln(os.Stderr, "to stderr")
		code, _ := strconv.Atoi(args[1])
		return code
	case "env":
		for _, e := range os.Environ() {
			fmt.Println(e)
		}
		wd, _ := os.Getwd()
		fmt.Println("WD=" + wd)
		return 0
	case "stdin":
		b := make([]byte, 1024)
		n, _ := os.Stdin.Read(b)
		fmt.Printf("got:%s\n", b[:n])
		return 0
	case "serve": // run until SIGTERM
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		return 0
	case "stubborn": // ignore SIGTERM, fork a child that ignores it too, print its pid
		signal.Ignore(syscall.SIGTERM)
		child := exec.Command(os.Args[0], "stubborn-child")
		child.Env = []string{"NEX_TEST_WORKLOAD=stubborn-child"}
		if err := child.Start(); err != nil {
			return 1
		}
		fmt.Printf("child %d\n", child.Process.Pid)
		select {}
	case "stubborn-child":
		signal.Ignore(syscall.SIGTERM)
		select {}
	case "terms": // count the SIGTERMs of 1 s from the first in args[0]/terms
		c := make(chan os.Signal, 8)
		signal.Notify(c, syscall.SIGTERM)
		os.WriteFile(filepath.Join(args[0], "ready"), nil, 0o644)
		<-c
		n := 1
		for end := time.After(time.Second); ; {
			select {
			case <-c:
				n++
			case <-end:
				os.WriteFile(filepath.Join(args[0], "terms"), []byte(strconv.Itoa(n)), 0o644)
				return 0
			}
		}
	case "crash":
		return 7
	case "alloc": // allocate args[0] MiB and touch every page, then report
		n, _ := strconv.Atoi(args[0])
		b := make([]byte, n<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		fmt.Println("allocated", n, "MiB")
		return 0
	case "fn-echo":
		b, _ := io.ReadAll(os.Stdin)
		fmt.Printf("%s:%s", os.Getenv("NEX_TRIGGER_SUBJECT"), b)
		return 0
	case "hang":
		time.Sleep(time.Hour)
		return 0
	case "flaky": // fail until the third run, counting runs in a file of the workdir
		b, _ := os.ReadFile("runs")
		n := len(b) + 1
		os.WriteFile("runs", bytes.Repeat([]byte("x"), n), 0o644)
		fmt.Printf("run %d\n", n)
		if n < 3 {
			return 1
		}
		return 0
	}
	return 99
}

type env struct {
	t       *testing.T
	nc      *nats.Conn
	d       *native.Driver
	exe     string
	ctx     context.Context
	count   int
	server  *server.Server
	dataDir string
}

func newEnv(t *testing.T, tune ...func(*server.Options)) *env {
	return newEnvWith(t, nil, tune...)
}

// newEnvWith is newEnv with the driver's options changed by opts.
func newEnvWith(t *testing.T, opts func(*native.Options), tune ...func(*server.Options)) *env {
	s := testutil.StartServer(t, tune...)
	nc := testutil.Connect(t, s)
	dataDir := filepath.Join(t.TempDir(), "native")
	o := native.Options{NodeID: "NODE", NexletID: "native", DataDir: dataDir, NATSURL: s.ClientURL(), Conn: nc, DefaultGrace: 2 * time.Second}
	if opts != nil {
		opts(&o)
	}
	d, err := native.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown(context.Background()) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, nc: nc, d: d, exe: exe, ctx: context.Background(), server: s, dataDir: dataDir}
}

func (e *env) start(lifecycle, mode string, extra map[string]any, args ...string) (v1.WorkloadInfo, error) {
	e.count++
	sr := map[string]any{"uri": "file://" + e.exe, "argv": args, "environment": map[string]string{"NEX_TEST_WORKLOAD": mode}}
	for k, v := range extra {
		sr[k] = v
	}
	raw, _ := json.Marshal(sr)
	return e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: fmt.Sprintf("w%d", e.count), NodeID: "NODE", Definition: v1.WorkloadDefinition{
		Namespace: "default", Name: mode, Type: "native", Lifecycle: lifecycle, StartRequest: raw,
	}})
}

func (e *env) state(id string) v1.WorkloadInfo {
	info, err := e.d.Get(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

func TestJobLogsAndExitCode(t *testing.T) {
	e := newEnv(t)
	sub, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.w1")
	events, _ := e.nc.SubscribeSync("$NEX.FEED.default.event.w1")
	e.nc.Flush()
	w, err := e.start(v1.LifecycleJob, "lines", nil, "1000", "3")
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "job to stop", func() bool { return e.state(w.ID).State == v1.StateStopped })
	info := e.state(w.ID)
	if info.ExitCode == nil || *info.ExitCode != 3 {
		t.Fatalf("exit code %v", info.ExitCode)
	}
	var stdout []string
	stderr := 0
	for len(stdout) < 1001 || stderr < 1 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d stdout lines: %v", len(stdout), err)
		}
		l, _ := testutil.FeedLines(m)
		switch m.Header.Get(v1.HeaderStream) {
		case "stdout":
			stdout = append(stdout, l...)
		case "stderr":
			stderr += len(l)
		}
	}
	for i := 0; i < 1000; i++ {
		if stdout[i] != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d = %q", i, stdout[i])
		}
	}
	if stdout[1000] != "partial" {
		t.Fatalf("partial last line = %q", stdout[1000])
	}
	var types []string
	for len(types) < 2 {
		m, err := events.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ev v1.Event
		_ = json.Unmarshal(m.Data, &ev)
		types = append(types, ev.Type)
	}
	if types[0] != v1.EventStarted || types[1] != v1.EventExited {
		t.Fatalf("events %v", types)
	}
	// stopping a finished job removes it
	if _, err := e.d.Stop(e.ctx, w.ID, v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.Get(e.ctx, w.ID); !v1.IsNotFound(err) {
		t.Fatalf("job still listed: %v", err)
	}
}

func TestEnvironmentNotLeaked(t *testing.T) {
	e := newEnv(t)
	t.Setenv("NEX_SECRET_OF_HOST", "x")
	sub, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.w1")
	e.nc.Flush()
	if _, err := e.start(v1.LifecycleJob, "env", map[string]any{"environment": map[string]string{"NEX_TEST_WORKLOAD": "env", "A": "b"}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		done := false
		lines, _ := testutil.FeedLines(m)
		for _, l := range lines {
			k, v, _ := strings.Cut(l, "=")
			got[k] = v
			done = done || k == "WD"
		}
		if done {
			break
		}
	}
	if got["A"] != "b" || got["NEX_WORKLOAD_ID"] != "w1" || got["NEX_NAMESPACE"] != "default" || got["NATS_URL"] == "" {
		t.Fatalf("workload env %v", got)
	}
	if _, leaked := got["NEX_SECRET_OF_HOST"]; leaked {
		t.Fatal("host environment leaked into the workload")
	}
	if !strings.Contains(got["WD"], "workloads/w1") {
		t.Fatalf("workdir %q", got["WD"])
	}
}

func TestStdin(t *testing.T) {
	e := newEnv(t)
	sub, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.w1")
	e.nc.Flush()
	if _, err := e.start(v1.LifecycleJob, "stdin", map[string]any{"stdin": "hello"}); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "got:hello" {
		t.Fatalf("got %v %v", m, err)
	}
}

// startReady starts service program (of the test's programs) as w1 and waits for its
// first line (it prints one once its signal handling is in place), which it returns.
func (e *env) startReady(t *testing.T, program string) (v1.WorkloadInfo, string) {
	t.Helper()
	sub, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.w1")
	defer sub.Unsubscribe()
	e.nc.Flush()
	w, err := e.start(v1.LifecycleService, program, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return w, string(m.Data)
}

func TestStopService(t *testing.T) {
	e := newEnv(t)
	w, _ := e.startReady(t, "serve") // "ready": the signal handler is in place
	pid, _ := strconv.Atoi(w.Metadata["pid"])
	info, err := e.d.Stop(e.ctx, w.ID, v1.StopRequest{})
	if err != nil || info.State != v1.StateStopped {
		t.Fatalf("stop: %+v %v", info, err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still exists after stop: %v", pid, err)
	}
	if _, err := e.d.Stop(e.ctx, w.ID, v1.StopRequest{}); !v1.IsNotFound(err) {
		t.Fatalf("second stop on the driver: %v", err)
	}
}

func TestStopKillsStubbornGroup(t *testing.T) {
	e := newEnv(t)
	w, first := e.startReady(t, "stubborn")
	child, _ := strconv.Atoi(strings.TrimPrefix(first, "child "))
	pid, _ := strconv.Atoi(w.Metadata["pid"])
	if _, err := e.d.Stop(e.ctx, w.ID, v1.StopRequest{GracePeriod: v1.Duration(100 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{pid, child} {
		if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("process %d survived stop: %v", p, err)
		}
	}
}

// A stop of a workload that ignores SIGTERM, with a grace period of an hour, ends once
// its context does (the nexlet shutting down: its handlers' context) and kills the group:
// an attacker's 64 such stops kept a nexlet from exiting for as long as their grace.
func TestStopEndsWithItsContext(t *testing.T) {
	e := newEnv(t)
	w, _ := e.startReady(t, "stubborn") // it has set its trap
	pid, _ := strconv.Atoi(w.Metadata["pid"])
	ctx, cancel := context.WithCancel(e.ctx)
	time.AfterFunc(300*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := e.d.Stop(ctx, w.ID, v1.StopRequest{GracePeriod: v1.MaxGracePeriod})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stop waited out its grace period after its context ended")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d survived the stop: %v", pid, err)
	}
}

func TestServiceRestartsThenFails(t *testing.T) {
	e := newEnv(t)
	w, err := e.start(v1.LifecycleService, "crash", map[string]any{"restart": map[string]any{"max_restarts": 2, "initial_delay": "100ms"}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "service to fail", func() bool { return e.state(w.ID).State == v1.StateFailed })
	info := e.state(w.ID)
	if info.Metadata["restarts"] != "2" || info.Metadata["last_exit_code"] != "7" {
		t.Fatalf("metadata %v", info.Metadata)
	}
}

func TestBadURI(t *testing.T) {
	e := newEnv(t)
	tests := []struct{ uri, want string }{
		{"file:///does/not/exist", "not an executable"},
		{"file://" + notExec(t), "not an executable"},
		{"http://x/y", "invalid uri"},
	}
	for _, tt := range tests {
		raw, _ := json.Marshal(map[string]any{"uri": tt.uri})
		_, err := e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: "x", Definition: v1.WorkloadDefinition{Namespace: "default", Name: "x", Type: "native", Lifecycle: "job", StartRequest: raw}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("uri %s: error %v, want %q", tt.uri, err, tt.want)
		}
	}
	if l, _ := e.d.List(e.ctx, ""); len(l) != 0 {
		t.Fatalf("failed starts left %d workloads", len(l))
	}
}

func notExec(t *testing.T) string {
	p := t.TempDir() + "/plain"
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMillionLines(t *testing.T) {
	if testing.Short() {
		t.Skip("million-line output in -short mode")
	}
	// The subscriber has its own connection, allowed to fall far behind: a loaded test
	// machine must not turn it into a slow consumer that the server cuts off (which would
	// lose lines in the subscriber, not in the nexlet).
	e := newEnv(t, func(o *server.Options) { o.MaxPending = 1 << 30; o.WriteDeadline = time.Minute })
	srv := e.server
	const n = 1_000_000
	var got, outOfOrder int
	var partial bool
	done := make(chan struct{})
	var cut atomic.Int32
	subConn, err := nats.Connect(srv.ClientURL(), nats.DisconnectErrHandler(func(*nats.Conn, error) { cut.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	defer subConn.Close()
	sub, err := subConn.Subscribe("$NEX.FEED.default.logs.w1", func(m *nats.Msg) {
		if m.Header.Get(v1.HeaderStream) != "stdout" {
			return
		}
		lines, _ := testutil.FeedLines(m) // one line, or a burst of them
		for _, l := range lines {
			if l == "partial" {
				partial = true
				close(done)
				return
			}
			if l != "line "+strconv.Itoa(got) {
				outOfOrder++
			}
			got++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	subConn.Flush()
	if _, err := e.start(v1.LifecycleJob, "lines", nil, strconv.Itoa(n), "0"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("received %d of %d lines", got, n)
	}
	if got != n || outOfOrder != 0 || !partial {
		t.Fatalf("received %d lines (want %d), %d out of order, partial last line %v; subscriber cut off %d times, nexlet dropped %q",
			got, n, outOfOrder, partial, cut.Load(), e.state("w1").Metadata["dropped_lines"])
	}
	testutil.Eventually(t, 5*time.Second, "job to stop", func() bool { return e.state("w1").State == v1.StateStopped })
	if d := e.state("w1").Metadata["dropped_lines"]; d != "" && d != "0" {
		t.Fatalf("dropped %s lines", d)
	}
}

func TestFunctionRequestReply(t *testing.T) {
	e := newEnv(t)
	events, _ := e.nc.SubscribeSync("$NEX.FEED.default.event.w1")
	e.nc.Flush()
	w, err := e.start(v1.LifecycleFunction, "fn-echo", map[string]any{"triggers": []string{"orders.*"}, "concurrency": 2})
	if err != nil {
		t.Fatal(err)
	}
	if w.State != v1.StateRunning || w.Metadata["triggers"] != "orders.*" {
		t.Fatalf("function %+v", w)
	}
	for i := 0; i < 3; i++ {
		m, err := e.nc.Request("orders.new", []byte(fmt.Sprintf("p%d", i)), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != fmt.Sprintf("orders.new:p%d", i) || m.Header.Get(v1.HeaderExitCode) != "0" {
			t.Fatalf("reply %q %v", m.Data, m.Header)
		}
	}
	var triggered int
	for triggered < 3 {
		m, err := events.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ev v1.Event
		json.Unmarshal(m.Data, &ev)
		if ev.Type == v1.EventTriggered {
			if ev.ExitCode == nil || *ev.ExitCode != 0 || ev.Data["duration_ms"] == nil || ev.Data["subject"] != "orders.new" {
				t.Fatalf("triggered event %+v", ev)
			}
			triggered++
		}
	}
	if got := e.state(w.ID).Metadata["invocations"]; got != "3" {
		t.Fatalf("invocations %s", got)
	}
	if _, err := e.d.Stop(e.ctx, w.ID, v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.nc.Request("orders.new", nil, 200*time.Millisecond); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("after stop, request got %v", err)
	}
}

func TestFunctionTimeout(t *testing.T) {
	e := newEnv(t)
	if _, err := e.start(v1.LifecycleFunction, "hang", map[string]any{"triggers": []string{"slow"}, "timeout": "100ms"}); err != nil {
		t.Fatal(err)
	}
	m, err := e.nc.Request("slow", nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Header.Get(v1.HeaderError), "timed out") {
		t.Fatalf("reply headers %v", m.Header)
	}
}

func TestFunctionFieldChecks(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		lifecycle string
		extra     map[string]any
		want      string
	}{
		{v1.LifecycleFunction, nil, "needs at least one trigger"},
		{v1.LifecycleFunction, map[string]any{"triggers": []string{"$NEX.SVC.v1.x.control.LIST"}}, "reserved"},
		{v1.LifecycleFunction, map[string]any{"triggers": []string{"a..b"}}, "not a valid subject"},
		{v1.LifecycleService, map[string]any{"triggers": []string{"a"}}, "does not apply"},
		{v1.LifecycleJob, map[string]any{"restart": map[string]any{"max_restarts": 1}}, "restart.max_restarts does not apply"},
		{v1.LifecycleService, map[string]any{"retries": 2}, "does not apply"},
	}
	for _, tt := range tests {
		if _, err := e.start(tt.lifecycle, "fn-echo", tt.extra); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %v: error %v, want %q", tt.lifecycle, tt.extra, err, tt.want)
		}
	}
}

// A script whose #! interpreter is missing fails to start naming the interpreter, not
// with a bare "no such file or directory".
func TestMissingInterpreterNamed(t *testing.T) {
	e := newEnv(t)
	script := filepath.Join(t.TempDir(), "run.sh")
	if err := os.WriteFile(script, []byte("#!/no/such/shell -e\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(map[string]any{"uri": "file://" + script})
	_, err := e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: "shebang", NodeID: "NODE", Definition: v1.WorkloadDefinition{
		Namespace: "default", Name: "s", Type: "native", Lifecycle: v1.LifecycleJob, StartRequest: raw}})
	if !v1.IsCode(err, v1.CodeStartFailed) || !strings.Contains(err.Error(), "the interpreter /no/such/shell named in its first line (#!/no/such/shell -e) was not found") {
		t.Fatalf("start of a script with a missing interpreter: %v", err)
	}
}

// A restart delay below the floor is refused, naming the field: a 1ms crash loop only
// burns CPU.
func TestRestartDelayFloor(t *testing.T) {
	e := newEnv(t)
	for _, field := range []string{"initial_delay", "max_delay"} {
		_, err := e.start(v1.LifecycleService, "fast", map[string]any{"restart": map[string]any{field: "1ms"}})
		if !v1.IsCode(err, v1.CodeSchemaInvalid) || !strings.Contains(err.Error(), "start_request.restart."+field+": 1ms is below the floor of 100ms") {
			t.Fatalf("restart.%s 1ms: %v", field, err)
		}
	}
}

func TestJobRetriesAndTimeout(t *testing.T) {
	e := newEnv(t)
	w, err := e.start(v1.LifecycleJob, "flaky", map[string]any{"retries": 5, "restart": map[string]any{"initial_delay": "100ms"}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "flaky job to succeed", func() bool { return e.state(w.ID).State == v1.StateStopped })
	info := e.state(w.ID)
	if *info.ExitCode != 0 || info.Metadata["restarts"] != "2" {
		t.Fatalf("flaky job: exit %d, metadata %v", *info.ExitCode, info.Metadata)
	}

	w, err = e.start(v1.LifecycleJob, "hang", map[string]any{"timeout": "100ms", "grace_period": "100ms"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "hanging job to time out", func() bool { return e.state(w.ID).State == v1.StateStopped })
	info = e.state(w.ID)
	if *info.ExitCode != 128+int(syscall.SIGTERM) || !strings.Contains(info.Metadata["error"], "timed out after 100ms") {
		t.Fatalf("timed-out job: exit %d, metadata %v", *info.ExitCode, info.Metadata)
	}
}

// putObjects puts files (name: content) in a new object store, bucket.
func (e *env) putObjects(t *testing.T, bucket string, files map[string]string) {
	t.Helper()
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := js.CreateObjectStore(e.ctx, jetstream.ObjectStoreConfig{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if _, err := store.PutBytes(e.ctx, name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestArtifactsAndRemoteExecutable(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(t.TempDir(), "data.txt")
	os.WriteFile(src, []byte("payload"), 0o644)
	sum := sha256.Sum256([]byte("payload"))
	digest := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/file" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("from http"))
	}))
	defer srv.Close()
	e.putObjects(t, "bins", map[string]string{"hello.sh": "#!/bin/sh\ncat data.txt sub/web.txt obj.txt\n", "obj": "from nats"})
	logs, _ := e.nc.SubscribeSync("$NEX.FEED.default.logs.w1")
	e.nc.Flush()

	start := func(sr map[string]any) (v1.WorkloadInfo, error) {
		e.count++
		raw, _ := json.Marshal(sr)
		return e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: fmt.Sprintf("w%d", e.count), Definition: v1.WorkloadDefinition{Namespace: "default", Name: "a", Type: "native", Lifecycle: "job", StartRequest: raw}})
	}
	_, err := start(map[string]any{"uri": "nats://bins/hello.sh", "artifacts": []map[string]any{
		{"uri": "file://" + src, "sha256": digest},
		{"uri": srv.URL + "/file", "path": "sub/web.txt", "mode": "0600"},
		{"uri": "nats://bins/obj", "path": "obj.txt"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for len(lines) < 1 {
		m, err := logs.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(m.Data))
	}
	if lines[0] != "payloadfrom httpfrom nats" {
		t.Fatalf("output %q", lines)
	}

	bad := []struct {
		sr   map[string]any
		want string
	}{
		{map[string]any{"uri": "file:///bin/true", "artifacts": []map[string]any{{"uri": "file://" + src, "sha256": strings.Repeat("0", 64)}}}, "sha256 mismatch"},
		{map[string]any{"uri": "file:///bin/true", "artifacts": []map[string]any{{"uri": srv.URL + "/missing"}}}, "404"},
		{map[string]any{"uri": "file:///bin/true", "artifacts": []map[string]any{{"uri": "file://" + src, "path": "../escape"}}}, "inside the workdir"},
		{map[string]any{"uri": "nats://nobucket/x"}, "object store nobucket"},
		{map[string]any{"uri": "nats://bins/absent"}, "not found"},
	}
	for _, b := range bad {
		if _, err := start(b.sr); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%v: error %v, want %q", b.sr, err, b.want)
		}
	}
}

func TestExposePorts(t *testing.T) {
	e := newEnv(t)
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	taken := l.Addr().(*net.TCPAddr).Port
	l.Close()
	w, err := e.start(v1.LifecycleService, "serve", map[string]any{"expose_ports": []int{taken}})
	if err != nil {
		t.Fatal(err)
	}
	if w.Metadata["ports"] != strconv.Itoa(taken) {
		t.Fatalf("metadata %v", w.Metadata)
	}
	if _, err := e.start(v1.LifecycleService, "serve", map[string]any{"expose_ports": []int{taken}}); err == nil || !strings.Contains(err.Error(), "already exposed by workload "+w.ID) {
		t.Fatalf("second claim: %v", err)
	}
	// another namespace is told the port is taken, not by which workload
	raw, _ := json.Marshal(map[string]any{"uri": "file://" + e.exe, "expose_ports": []int{taken}})
	_, err = e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: "other1", NodeID: "NODE", Definition: v1.WorkloadDefinition{
		Namespace: "other", Name: "serve", Type: "native", Lifecycle: v1.LifecycleService, StartRequest: raw}})
	if err == nil || !strings.Contains(err.Error(), "already exposed by workload of another namespace") || strings.Contains(err.Error(), w.ID) {
		t.Fatalf("another namespace's claim: %v", err)
	}
	if _, err := e.d.Stop(e.ctx, w.ID, v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	l, err = net.Listen("tcp", ":"+strconv.Itoa(taken))
	if err != nil {
		t.Skipf("port %d was taken by someone else meanwhile", taken)
	}
	defer l.Close()
	if _, err := e.start(v1.LifecycleService, "serve", map[string]any{"expose_ports": []int{taken}}); err == nil || !strings.Contains(err.Error(), "in use on this host") {
		t.Fatalf("port in use: %v", err)
	}
}

// A definition's first-class expose_ports, which the start request does not repeat, are
// native's too: it reserves the port (resources and grace_period are taken the same way).
func TestFirstClassFieldsReachNative(t *testing.T) {
	e := newEnv(t)
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	raw, _ := json.Marshal(map[string]any{"uri": "file://" + e.exe, "environment": map[string]string{"NEX_TEST_WORKLOAD": "serve"}})
	w, err := e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: "first-class", NodeID: "NODE", Definition: v1.WorkloadDefinition{
		Namespace: "default", Name: "serve", Type: "native", Lifecycle: v1.LifecycleService, StartRequest: raw,
		ExposePorts: []int{port}, GracePeriod: v1.Duration(3 * time.Second),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if w.Metadata["ports"] != strconv.Itoa(port) {
		t.Fatalf("metadata %v: want ports %d", w.Metadata, port)
	}
	if _, err := e.start(v1.LifecycleService, "serve", map[string]any{"expose_ports": []int{port}}); err == nil || !strings.Contains(err.Error(), "already exposed by workload "+w.ID) {
		t.Fatalf("a second claim of the first-class port: %v", err)
	}
}

// A stop while the workload is still fetching its artifacts ends the fetch and returns.
func TestStopWhileStarting(t *testing.T) {
	e := newEnv(t)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	raw, _ := json.Marshal(map[string]any{"uri": "file:///bin/true", "artifacts": []map[string]any{{"uri": hang.URL + "/slow"}}})
	errc := make(chan error, 1)
	go func() {
		_, err := e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: "slow", Definition: v1.WorkloadDefinition{Namespace: "default", Name: "s", Type: "native", Lifecycle: "job", StartRequest: raw}})
		errc <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the workload to be starting", func() bool {
		w, err := e.d.Get(e.ctx, "slow")
		return err == nil && w.State == v1.StateStarting
	})
	info, err := e.d.Stop(e.ctx, "slow", v1.StopRequest{})
	if err != nil || info.State != v1.StateStopped {
		t.Fatalf("stop while starting: %+v %v", info, err)
	}
	if err := <-errc; err == nil {
		t.Fatal("the interrupted start reported success")
	}
	if l, _ := e.d.List(e.ctx, ""); len(l) != 0 {
		t.Fatalf("left behind: %+v", l)
	}
}

// A digest is no key to what another namespace fetched: b names a's private artifact by
// its digest, with an address that has nothing (or an object of its own bucket), and
// gets nothing from the nexlet's cache. It got a's content, which a had fetched before.
func TestArtifactCacheIsPerNamespace(t *testing.T) {
	e := newEnv(t)
	secret := "a's private build"
	sum := sha256.Sum256([]byte(secret))
	digest := hex.EncodeToString(sum[:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/private" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(secret))
	}))
	defer srv.Close()
	e.putObjects(t, "bins", map[string]string{"mine": "b's own object"})
	start := func(ns string, artifact map[string]any) error {
		e.count++
		raw, _ := json.Marshal(map[string]any{"uri": "file:///bin/true", "artifacts": []map[string]any{artifact}})
		_, err := e.d.Start(e.ctx, v1.StartWorkloadRequest{WorkloadID: fmt.Sprintf("w%d", e.count), Definition: v1.WorkloadDefinition{Namespace: ns, Name: "a", Type: "native", Lifecycle: "job", StartRequest: raw}})
		return err
	}
	if err := start("a", map[string]any{"uri": srv.URL + "/private", "sha256": digest}); err != nil {
		t.Fatal(err)
	}
	if err := start("b", map[string]any{"uri": srv.URL + "/nothing-here", "sha256": digest}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("b named a's artifact by its digest at an empty address: %v, want the fetch's 404", err)
	}
	if err := start("b", map[string]any{"uri": "nats://bins/mine", "sha256": digest}); err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("b named a's artifact by its digest with an object of its own: %v, want a mismatch", err)
	}
	if err := start("a", map[string]any{"uri": srv.URL + "/nothing-here", "sha256": digest}); err != nil {
		t.Fatalf("a's own cache entry: %v", err)
	}
}

// Stops of one workload asked at once (a node back from a pause stops it on two or three
// paths) send it one SIGTERM: each sent its own (three within 0.4 s in a walk), and a
// program that takes a second one for "exit now" skipped its graceful shutdown.
func TestStopsAtOnceSendOneSIGTERM(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w, err := e.start(v1.LifecycleService, "terms", nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the workload to handle SIGTERM", func() bool {
		_, err := os.Stat(filepath.Join(dir, "ready"))
		return err == nil
	})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := e.d.Stop(e.ctx, w.ID, v1.StopRequest{GracePeriod: v1.Duration(5 * time.Second)}); err != nil && !v1.IsNotFound(err) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	b, err := os.ReadFile(filepath.Join(dir, "terms"))
	if err != nil || string(b) != "1" {
		t.Fatalf("SIGTERMs the workload got from 3 stops at once: %q %v", b, err)
	}
}
