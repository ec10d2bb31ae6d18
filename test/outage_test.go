package test

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// restartableServer is a JetStream server that can be shut down and started again on
// the same port and store (a NATS outage).
type restartableServer struct {
	t    *testing.T
	opts server.Options
	s    *server.Server
}

func newRestartableServer(t *testing.T) *restartableServer {
	r := &restartableServer{t: t, opts: server.Options{ServerName: "outage", Host: "127.0.0.1", Port: freePort(t), NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir()}}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *restartableServer) start() {
	o := r.opts
	s, err := server.NewServer(&o)
	if err != nil {
		r.t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		r.t.Fatal("nats-server not ready")
	}
	r.s = s
}

func (r *restartableServer) stop() {
	if r.s != nil {
		r.s.Shutdown()
		r.s.WaitForShutdown()
		r.s = nil
	}
}

// kill -9 of nexd, a restart that adopts the running nexlet, then a NATS outage: nexd
// took the adopted nexlet's silence for death about a second into the outage, started
// new nexlets that failed on its data dir, gave up, and killed every workload of the
// nexlet that still ran them (a chaos run: 15 of 15 killed, then run twice once the
// cluster had moved them). Now the workloads ride the outage out under the same PIDs, and
// the adopted nexlet is still supervised afterwards.
func TestAdoptedNexletRidesOutANATSOutage(t *testing.T) {
	srv := newRestartableServer(t)
	u := newUser(t)
	url := srv.s.ClientURL()
	data := filepath.Join(u.home, "data")
	n := startNexd(t, u, url, data)
	marker := "outage-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := range 3 {
		u.mustNex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "s"+strconv.Itoa(i),
			"--start-request", `{"uri":"file:///bin/sh","argv":["-c","sleep 600; : `+marker+`"]}`)
	}
	testutil.Eventually(t, 10*time.Second, "3 services", func() bool { return len(processes(marker)) == 3 })
	pids := processes(marker)
	n.kill9(t)
	startNexd(t, u, url, data) // adopts the nexlet
	nexlet := processes("nexlet-native", data)
	if len(nexlet) != 1 {
		t.Fatalf("%d nexlets", len(nexlet))
	}

	srv.stop()
	// through 8 s of outage, nothing is killed (sampled: this checks that something holds)
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got := processes(marker); len(got) != 3 {
			t.Fatalf("%.1f s into the outage %d of 3 services run", 8-time.Until(end).Seconds(), len(got))
		}
	}
	srv.start()
	testutil.Eventually(t, 30*time.Second, "the services listed running after the outage", func() bool {
		out, _, code := u.nex("-s", url, "--namespace", "default", "workload", "list", "--json")
		return code == 0 && len(u.workloads(t, url)) == 3 && !strings.Contains(out, `"unknown"`)
	})
	if got := processes(marker); !samePIDs(got, pids) {
		t.Fatalf("the services run as %v, were %v", got, pids)
	}
	if got := processes("nexlet-native", data); !samePIDs(got, nexlet) {
		t.Fatalf("nexlets %v after the outage, was %v", got, nexlet)
	}
	// still supervised: killed, the nexlet comes back, and so do its services
	_ = syscall.Kill(nexlet[0], syscall.SIGKILL)
	testutil.Eventually(t, 30*time.Second, "a new nexlet and the 3 services again", func() bool {
		l := u.workloads(t, url)
		running := 0
		for _, w := range l {
			if w.State == v1.StateRunning {
				running++
			}
		}
		return running == 3 && len(processes(marker)) == 3
	})
}

func samePIDs(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[int]bool{}
	for _, p := range a {
		seen[p] = true
	}
	for _, p := range b {
		if !seen[p] {
			return false
		}
	}
	return true
}

// ownerOf is the node of nodes (by name) that runs workload id, nil when none does.
func ownerOf(t *testing.T, u *user, url string, nodes map[string]*nexdNode, id string) *nexdNode {
	t.Helper()
	var info []v1.NodeInfo
	_ = json.Unmarshal([]byte(u.mustNex("-s", url, "node", "list", "--json")), &info)
	for _, w := range u.workloads(t, url) {
		for _, n := range info {
			if w.ID == id && n.NodeID == w.NodeID {
				return nodes[n.Name]
			}
		}
	}
	return nil
}

// A stop while the workload's node is silent (its nexd restarting, paused, cut off) says
// so, and does nothing: it said "not found" (a chaos run: 10 stops of 92, every one of a
// workload that existed and ran on).
func TestStopWhileItsNodeIsSilent(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	nodes := map[string]*nexdNode{}
	for _, name := range []string{"quiet-a", "quiet-b"} {
		nodes[name] = startNexdNamed(t, u, url, filepath.Join(u.home, name), name)
	}
	_, id := startedID(t, u.mustNex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "held",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`))
	owner := ownerOf(t, u, url, nodes, id)
	if owner == nil {
		t.Fatal("no owner found")
	}
	_ = owner.bg.cmd.Process.Signal(syscall.SIGSTOP)
	_, errOut, code := u.nex("-s", url, "--namespace", "default", "workload", "stop", id)
	_ = owner.bg.cmd.Process.Signal(syscall.SIGCONT)
	if code == 0 || strings.Contains(errOut, "not found") || !strings.Contains(errOut, "may have it") {
		t.Fatalf("a stop while the owner is silent: exit %d %s", code, errOut)
	}
	u.mustNex("-s", url, "--namespace", "default", "workload", "stop", id)
}

// A stop of a workload whose node is away for good (paused past the node-loss window),
// and which cannot move (its environment is sealed for that node's nexlet, and the nodes
// have no secrets key), is recorded: the stop answers "stopping", nothing starts it
// elsewhere, and the node stops it once it is back, with the stop's grace period. It
// answered "try again once it is back" for as long as the node was away (a newcomer's
// walk, session 29); then the grace was lost once the node counted as lost (a walk,
// session 30: SIGKILL 10 s after SIGTERM where the stop gave 30 s).
func TestStopOfAWorkloadThatCannotMoveIsDoneWhenItsNodeIsBack(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	nodes := map[string]*nexdNode{}
	for _, name := range []string{"away-a", "away-b"} {
		nodes[name] = startNexdNamed(t, u, url, filepath.Join(u.home, name), name, "--node-loss-window", "3s")
	}
	// its SIGTERM trap takes 12 s, more than the default grace of 10 s
	script := `trap 'sleep 12; echo done-4271; exit 0' TERM; echo up-4271; while :; do sleep 1; done`
	argv, _ := json.Marshal([]string{"-c", script})
	_, id := startedID(t, u.mustNex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "sealed",
		"--start-request", `{"uri":"file:///bin/sh","argv":`+string(argv)+`,"environment":{"SECRET":"kept"}}`))
	owner := ownerOf(t, u, url, nodes, id)
	copies := func() int { return len(processes("up-4271")) }
	if owner == nil || copies() != 1 {
		t.Fatalf("no owner found, or not one copy: %d", copies())
	}
	_ = owner.bg.cmd.Process.Signal(syscall.SIGSTOP)
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = owner.bg.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	var out, errOut string
	testutil.Eventually(t, 40*time.Second, "the stop to be recorded while its node is away", func() bool {
		var code int
		out, errOut, code = u.nex("-s", url, "--namespace", "default", "workload", "stop", id, "--grace", "30s")
		return code == 0
	})
	if !strings.Contains(out, "stopping") || !strings.Contains(out, "is not heard from") {
		t.Fatalf("the stop of a workload whose node is away: %q %q", out, errOut)
	}
	// past the window the other node counts the owner lost: the workload starts nowhere
	// else, is not listed, and its info says the stop is recorded
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		if n := copies(); n != 1 {
			t.Fatalf("%d copies while the owner is away (its own, paused, is 1)", n)
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, w := range u.workloads(t, url) {
		if w.ID == id {
			t.Fatalf("a stopped workload listed: %+v", w)
		}
	}
	if _, errOut, _ := u.nex("-s", url, "--namespace", "default", "workload", "info", id); !strings.Contains(errOut, "a stop was recorded") {
		t.Fatalf("info of a workload whose stop is recorded, past the window: %s", errOut)
	}
	// a second stop is fine
	if out, errOut, code := u.nex("-s", url, "--namespace", "default", "workload", "stop", id); code != 0 || !strings.Contains(out, "stopping") {
		t.Fatalf("a second stop: exit %d %s %s", code, out, errOut)
	}
	resume()
	testutil.Eventually(t, 40*time.Second, "the node back to stop its copy", func() bool { return copies() == 0 })
	logs, _, _ := u.nex("-s", url, "--namespace", "default", "workload", "logs", id)
	if !strings.Contains(logs, "done-4271") {
		t.Fatalf("the stop's grace of 30 s was not given (the trap's 12 s did not finish): %q", logs)
	}
	end = time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		if n := copies(); n != 0 {
			t.Fatalf("the stopped workload runs again: %d copies", n)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if out, errOut, code := u.nex("-s", url, "--namespace", "default", "workload", "stop", id); code != 0 {
		t.Fatalf("a stop once it is stopped: exit %d %s %s", code, out, errOut)
	}
}
