package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
)

// runOnce runs a binary to its end (bounded) and returns its output and exit code.
func (u *user) runOnce(t *testing.T, timeout time.Duration, name string, args ...string) (string, int) {
	t.Helper()
	cmd := u.cmd(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan []byte, 1)
	go func() { out, _ := cmd.CombinedOutput(); done <- out }()
	select {
	case out := <-done:
		return string(out), cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("%s %s still ran after %s", name, strings.Join(args, " "), timeout)
		return "", -1
	}
}

// A second node (or nexlet) started on a data dir in use exits at once, naming the dir
// and the PID that holds it, and the first node's workloads run on untouched.
func TestSecondNodeOnSameDataDir(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	data := filepath.Join(u.home, "data")
	first := startNexd(t, u, url, data)
	marker := "datadir-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	u.mustNex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "keep",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","sleep 600; : `+marker+`"]}`)
	pids := processes(marker)
	if len(pids) != 1 {
		t.Fatalf("workload processes: %v", pids)
	}
	seed, _ := os.ReadFile(filepath.Join(data, "node.seed"))

	// as the port error suggests: another node up on the same data dir, another port
	out, code := u.runOnce(t, 20*time.Second, "nex", "node", "up", "--embedded", "--embedded.listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--data-dir", data)
	want := fmt.Sprintf("%s is locked by pid %d (nexd)", data, first.bg.cmd.Process.Pid)
	if code == 0 || !strings.Contains(out, want) {
		t.Fatalf("second node on the same data dir: exit %d, want an error naming %q:\n%s", code, want, out)
	}
	out, code = u.runOnce(t, 20*time.Second, "nexd", "-s", url, "--data-dir", data)
	if code == 0 || !strings.Contains(out, want) {
		t.Fatalf("second nexd on the same data dir: exit %d:\n%s", code, out)
	}
	// a second nexlet-native on the first one's dir
	native := filepath.Join(data, "native")
	out, code = u.runOnce(t, 20*time.Second, "nexlet-native", "--node-id", "NOTHERE", "-s", url, "--data-dir", native)
	if code == 0 || !strings.Contains(out, native+" is locked by pid") || !strings.Contains(out, "(nexlet-native)") {
		t.Fatalf("second nexlet-native on the same data dir: exit %d:\n%s", code, out)
	}

	if now := processes(marker); len(now) != 1 || now[0] != pids[0] {
		t.Fatalf("the first node's workload was touched: %v, was %v", now, pids)
	}
	if _, err := os.Stat(filepath.Join(data, "jetstream")); err == nil {
		t.Fatal("the refused node made a JetStream store in the data dir")
	}
	if after, _ := os.ReadFile(filepath.Join(data, "node.seed")); string(after) != string(seed) {
		t.Fatal("the refused node changed the node seed")
	}
	if list := u.workloads(t, url); len(list) != 1 || list[0].State != "running" {
		t.Fatalf("the first node's list after the refusals: %+v", list)
	}
}
