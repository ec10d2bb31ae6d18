package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// nexdNode runs the real nexd against an external NATS server.
type nexdNode struct {
	u       *user
	url     string
	dataDir string
	bg      *background
}

func startNexd(t *testing.T, u *user, url, dataDir string, extra ...string) *nexdNode {
	return startNexdNamed(t, u, url, dataDir, "durable", extra...)
}

func startNexdNamed(t *testing.T, u *user, url, dataDir, name string, extra ...string) *nexdNode {
	cli := []string{"-s", url}
	for i, a := range extra {
		if a == "--nats.creds-file" && i+1 < len(extra) {
			cli = append(cli, a, extra[i+1])
		}
	}
	// nodes of that name up with a healthy nexlet: this one is up when there is one more
	// (a second node of a name once passed on the first's, and the test's end stopped its
	// nexlet before it had registered)
	up := func() int {
		out, _, code := u.nex(append(cli, "node", "list", "--json")...)
		var nodes []v1.NodeInfo
		if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil {
			return -1
		}
		n := 0
		for _, node := range nodes {
			if node.Name == name && len(node.Nexlets) == 1 && node.Nexlets[0].Health == v1.HealthHealthy {
				n++
			}
		}
		return n
	}
	before := max(up(), 0)
	args := append([]string{"-s", url, "--data-dir", dataDir, "--node-name", name, "--state", "kv", "--nexlet-wait", "10s"}, extra...)
	n := &nexdNode{u: u, url: url, dataDir: dataDir, bg: u.start("nexd", args...)}
	// A nexlet that outlived a killed nexd is nobody's child: end it with the test.
	t.Cleanup(func() {
		for _, pid := range processes("nexlet-native", dataDir) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			testutil.Eventually(t, 20*time.Second, "a leftover nexlet to exit", func() bool { return syscall.Kill(pid, 0) != nil })
		}
	})
	testutil.Eventually(t, 10*time.Second, "nexd and its nexlet to be up", func() bool { return up() > before })
	return n
}

func (n *nexdNode) kill9(t *testing.T) {
	if err := n.bg.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n.bg.done
}

func (u *user) workloads(t *testing.T, url string) []v1.WorkloadInfo {
	t.Helper()
	var list []v1.WorkloadInfo
	out := u.mustNex("-s", url, "--namespace", "default", "workload", "list", "--show-metadata", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return list
}

// processes lists the PIDs whose command line contains every one of words.
func processes(words ...string) []int { return testutil.Processes(words...) }

func isZombie(pid int) bool { return testutil.IsZombie(pid) }

// nexd killed with SIGKILL: the workloads keep running, and the restarted nexd (same ID
// from its data dir) takes the nexlet back and adopts them with no restart and no duplicate.
func TestNexdKilledWorkloadsAdopted(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	data := filepath.Join(u.home, "data")
	n := startNexd(t, u, url, data)
	marker := "nexd-kill-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	out := u.mustNex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "survivor",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","sleep 600; : `+marker+`"]}`)
	_, id := startedID(t, out)
	before := u.workloads(t, url)
	pid := before[0].Metadata["pid"]

	n.kill9(t)
	if len(processes(marker)) != 1 {
		t.Fatalf("the workload did not survive nexd's death: %v", processes(marker))
	}
	again := startNexd(t, u, url, data)
	var after []v1.WorkloadInfo
	testutil.Eventually(t, 10*time.Second, "the workload to be adopted", func() bool {
		after = u.workloads(t, url)
		return len(after) == 1
	})
	if after[0].ID != id || after[0].Metadata["pid"] != pid || after[0].Metadata["restarts"] != "0" {
		t.Fatalf("adopted %+v, want id %s pid %s with no restart", after[0], id, pid)
	}
	if p := processes(marker); len(p) != 1 {
		t.Fatalf("%d copies of the workload run", len(p))
	}
	nodeID := after[0].NodeID
	if p := processes("nexlet-native", nodeID); len(p) != 1 {
		t.Fatalf("%d nexlet-native processes for the node, want the one adopted", len(p))
	}
	// the adopted nexlet's stderr is the dead nexd's pipe: it logs to a file the docs name
	testutil.Eventually(t, 10*time.Second, "the adopted nexlet to log to <data>/native/nexlet.log", func() bool {
		b, _ := os.ReadFile(filepath.Join(data, "native", "nexlet.log"))
		return strings.Contains(string(b), "logging here")
	})
	u.mustNex("-s", url, "--namespace", "default", "workload", "stop", id)
	if p := processes(marker); len(p) != 0 {
		t.Fatalf("workload still running after stop: %v", p)
	}
	// a graceful stop ends the adopted nexlet too: nexd signals the PID its registration
	// names once that process is the nexlet it started (environment and executable)
	again.bg.stop(t, 30*time.Second)
	testutil.Eventually(t, 5*time.Second, "the adopted nexlet to stop with nexd", func() bool {
		return len(processes("nexlet-native", data)) == 0
	})
}

// nexlet-native killed with SIGKILL: its workloads die with it (parent-death signal), nexd
// restarts it, and the desired workloads come back exactly once under their IDs; a job
// that already ran and a service that was stopped stay gone.
func TestNexletKilledWorkloadsRestored(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	data := filepath.Join(u.home, "data")
	startNexd(t, u, url, data)
	marker := "nexlet-kill-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := func(name, lifecycle, sr string) string { return u.startNative(url, name, lifecycle, sr) }
	svc := start("svc", "service", `{"uri":"file:///bin/sh","argv":["-c","sleep 600; : `+marker+`"]}`)
	stopped := start("stopped", "service", `{"uri":"file:///bin/sh","argv":["-c","sleep 600; : `+marker+`-stopped"]}`)
	// each run of the job prints a line (its history counts runs: a sandboxed job's /tmp is its own)
	job := start("job", "job", `{"uri":"file:///bin/sh","argv":["-c","echo ran-`+marker+`"]}`)
	u.mustNex("-s", url, "--namespace", "default", "workload", "stop", stopped)
	testutil.Eventually(t, 10*time.Second, "the job to finish", func() bool {
		for _, w := range u.workloads(t, url) {
			if w.ID == job {
				return w.State == v1.StateStopped
			}
		}
		return false
	})
	list := u.workloads(t, url)
	var oldPid string
	for _, w := range list {
		if w.ID == svc {
			oldPid = w.Metadata["pid"]
		}
	}
	nexlets := processes("nexlet-native", list[0].NodeID)
	if len(nexlets) != 1 {
		t.Fatalf("nexlet-native processes: %v", nexlets)
	}
	if err := syscall.Kill(nexlets[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the workload to die with its nexlet", func() bool {
		pid, _ := strconv.Atoi(oldPid)
		return syscall.Kill(pid, 0) != nil || isZombie(pid)
	})
	var after []v1.WorkloadInfo
	byID := map[string]v1.WorkloadInfo{}
	testutil.Eventually(t, 15*time.Second, "the service to come back", func() bool {
		after = u.workloads(t, url)
		for _, w := range after {
			byID[w.ID] = w
		}
		return len(after) == 2 && byID[svc].State == v1.StateRunning
	})
	// the service came back as a restart of the same workload; the job stays listed as it ended
	if byID[svc].Metadata["pid"] == oldPid || byID[svc].Metadata["restarts"] != "1" || byID[job].State != v1.StateStopped {
		t.Fatalf("after the nexlet's death: %+v", after)
	}
	// one copy (a shell's fork before its exec of sleep carries the marker for a moment)
	testutil.Eventually(t, 5*time.Second, "exactly one copy of the service", func() bool { return len(processes(marker)) == 1 })
	if logs := u.mustNex("-s", url, "--namespace", "default", "workload", "logs", job); strings.Count(logs, "ran-"+marker) != 1 {
		t.Fatalf("the finished job ran again (or its run is not in its history):\n%s", logs)
	}
	u.mustNex("-s", url, "--namespace", "default", "workload", "stop", svc)
}
