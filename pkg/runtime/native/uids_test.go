package native_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native"
)

// processUID reads the effective UID of pid, or -1 when it is gone.
func processUID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	return -1
}

// pidsOf lists the processes whose effective UID is uid.
func pidsOf(uid int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && processUID(pid) == uid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Each workload runs as a user of its own: its processes, workdir and credentials are
// that user's; a stop ends every process of that user, also one that left the
// workload's process group (setsid), and removes its files.
func TestWorkloadsAsTheirOwnUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("workloads run as users of their own only when the nexlet is root")
	}
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil { // let workloads pass, as /var/lib does
		t.Fatal(err)
	}
	data := filepath.Join(base, "native")
	d, err := native.New(native.Options{NodeID: "NODE", NexletID: "native", DataDir: data, NATSURL: s.ClientURL(), Conn: nc,
		DefaultGrace: 2 * time.Second, UIDs: &native.UIDRange{First: 300100, Last: 300199}, UIDLockDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown(context.Background()) })
	if d.Isolation() != v1.IsolationUID {
		t.Fatalf("isolation %q", d.Isolation())
	}
	start := func(id, script string) v1.WorkloadInfo {
		t.Helper()
		w, err := d.Start(context.Background(), v1.StartWorkloadRequest{WorkloadID: id, NodeID: "NODE", Creds: []byte("-----creds-----"),
			Definition: v1.WorkloadDefinition{Namespace: "default", Name: id, Type: "native", Lifecycle: v1.LifecycleService,
				StartRequest: []byte(`{"uri":"file:///bin/sh","argv":["-c",` + strconv.Quote(script) + `]}`)}})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	a := start("a", "setsid sleep 601 & exec sleep 600")
	b := start("b", "exec sleep 600")
	pidA, _ := strconv.Atoi(a.Metadata["pid"])
	pidB, _ := strconv.Atoi(b.Metadata["pid"])
	uidA, uidB := processUID(pidA), processUID(pidB)
	if uidA < 300100 || uidA > 300199 || uidB < 300100 || uidB > 300199 || uidA == uidB {
		t.Fatalf("workloads run as UIDs %d and %d", uidA, uidB)
	}
	// the workdir is the workload's; its credentials the nexlet's, readable by its group
	for _, c := range []struct {
		path     string
		uid, gid int
		mode     os.FileMode
	}{
		{filepath.Join(data, "workloads", "a"), uidA, uidA, 0o700},
		{filepath.Join(data, "workloads", "a", ".nex"), 0, uidA, 0o750},
		{filepath.Join(data, "workloads", "a", ".nex", "nats.creds"), 0, uidA, 0o640},
	} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if sys := st.Sys().(*syscall.Stat_t); int(sys.Uid) != c.uid || int(sys.Gid) != c.gid || st.Mode().Perm() != c.mode {
			t.Errorf("%s: %d:%d mode %04o, want %d:%d %04o", c.path, sys.Uid, sys.Gid, st.Mode().Perm(), c.uid, c.gid, c.mode)
		}
	}
	testutil.Eventually(t, 5*time.Second, "the setsid child to run", func() bool { return len(pidsOf(uidA)) == 2 })
	if _, err := d.Stop(context.Background(), "a", v1.StopRequest{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "every process of the stopped workload's user to end", func() bool { return len(pidsOf(uidA)) == 0 })
	if _, err := os.Stat(filepath.Join(data, "workloads", "a")); !os.IsNotExist(err) {
		t.Fatalf("workdir left: %v", err)
	}
	if processUID(pidB) != uidB {
		t.Fatal("the other workload was stopped too")
	}
}

func TestParseUIDRange(t *testing.T) {
	if r, err := native.ParseUIDRange(native.DefaultUIDs); err != nil || r.First != 200000 || r.Last != 265535 {
		t.Fatalf("%s: %v %v", native.DefaultUIDs, r, err)
	}
	for _, bad := range []string{"", "200000", "a-b", "300000-200000", "300000-300000", "0-100", "500-70000", "200000-4294967295"} {
		if _, err := native.ParseUIDRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
