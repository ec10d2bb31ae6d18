package test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexrun/nex/internal/testutil"
)

// IDs may be given by any unique prefix (lists show node IDs by their first 12
// characters); an ambiguous prefix is an error listing the matches.
func TestIDPrefixes(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	startNexd(t, u, url, filepath.Join(u.home, "data"))
	start := func(name string) string {
		out := u.mustNex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service",
			"--name", name, "--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)
		_, id := startedID(t, out)
		return id
	}
	a, b := start("a"), start("b")
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
	if out := u.mustNex("-s", url, "--namespace", "default", "workload", "stop", b[:common+1]); !strings.Contains(out, "Workload b ["+b+"] stopped") {
		t.Fatalf("stop by a unique prefix:\n%s", out)
	}
	list := u.workloads(t, url)
	node := list[0].NodeID
	if out := u.mustNex("-s", url, "node", "info", node[:12]); !strings.Contains(out, node) {
		t.Fatalf("node info by the 12 characters lists show:\n%s", out)
	}
}
