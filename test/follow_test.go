package test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
)

// `workload start --follow` prints every line a job wrote, in order, and exits with the
// job's exit code, saying how it ended on stderr; `logs -f` of a running job ends when
// the job has ended; `events -f` shows new events only.
func TestFollowIsExact(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	startNexd(t, u, url, filepath.Join(u.home, "data"))
	ns := []string{"-s", url, "--namespace", "default"}
	startJob := func(name, sr string) (string, string, int) {
		return u.nex(append(ns, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", name, "--start-request", sr, "--follow")...)
	}
	// exact checks that out is the numbers 1..n, each once, in order (the start's headline
	// goes to stderr with --follow: stdout is the workload's output alone)
	exact := func(out string, n int) error {
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != n {
			return fmt.Errorf("%d lines, want %d", len(lines), n)
		}
		for i, l := range lines {
			if l != strconv.Itoa(i+1) {
				return fmt.Errorf("line %d is %q", i+1, l)
			}
		}
		return nil
	}
	for run := range 3 {
		out, errOut, code := startJob("seq", `{"uri":"file:///usr/bin/seq","argv":["1","100000"]}`)
		if err := exact(out, 100000); err != nil || code != 0 || !strings.Contains(errOut, "exited 0") || !startedRE.MatchString(errOut) {
			t.Fatalf("run %d of start --follow of seq 1 100000: %v, exit %d, stderr %q", run, err, code, errOut)
		}
	}
	out, errOut, code := startJob("seq1m", `{"uri":"file:///usr/bin/seq","argv":["1","1000000"]}`)
	if err := exact(out, 1000000); err != nil || code != 0 {
		t.Fatalf("start --follow of seq 1 1000000: %v, exit %d, stderr %q", err, code, errOut)
	}
	out, errOut, code = startJob("fails", `{"uri":"file:///bin/sh","argv":["-c","seq 1 1000; exit 3"]}`)
	if err := exact(out, 1000); err != nil || code != 3 || !strings.Contains(errOut, "exited 3") {
		t.Fatalf("start --follow of a job that exits 3: %v, exit %d, stderr %q", err, code, errOut)
	}

	// logs -f of a running job ends with it
	id := u.startNative(url, "slow", "job", `{"uri":"file:///bin/sh","argv":["-c","echo first; sleep 2; echo last; exit 4"]}`)
	out, errOut, code = u.nex(append(ns, "workload", "logs", id, "-f")...)
	if out != "first\nlast\n" || code != 4 || !strings.Contains(errOut, "exited 4") {
		t.Fatalf("logs -f of a running job: %q, exit %d, stderr %q", out, code, errOut)
	}

	// --timestamps leads each line with its time
	out = u.mustNex(append(ns, "workload", "logs", id, "--timestamps")...)
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		ts, line, _ := strings.Cut(l, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || (line != "first" && line != "last") {
			t.Fatalf("logs --timestamps: %q", out)
		}
	}

	// events -f shows what happens from now on, not the history
	bg := u.start("nex", append(ns, "events", "-f")...)
	var fresh []string // the follow subscribes at its own pace: start jobs until it shows one
	testutil.Eventually(t, 10*time.Second, "events -f to show a new workload's start", func() bool {
		fresh = append(fresh, u.startNative(url, "fresh", "job", `{"uri":"file:///bin/true"}`))
		return strings.Contains(bg.out.String(), fresh[len(fresh)-1])
	})
	if strings.Contains(bg.out.String(), id) {
		t.Fatalf("events -f printed the history of an earlier workload:\n%s", bg.out.String())
	}
}
