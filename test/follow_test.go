package test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
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
	exact := numbered // the start's headline goes to stderr with --follow: stdout is the workload's output alone
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

// A job printing 1,000,000 lines reaches every reader whole, in order and complete: a plain
// NATS subscriber of its feed (batched messages read as docs/api-v1.md says), `logs -f`
// (started while the job waits, so it follows the lines live), and the history `logs`
// reads once it has ended. (`start --follow` of the same is in TestFollowIsExact.)
func TestMillionLinesEveryWay(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	startNexd(t, u, url, filepath.Join(u.home, "data"))
	const n = 1_000_000
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	var subscriber []string
	sub, err := nc.Subscribe(v1.LogSubject("default", ">"), func(m *nats.Msg) {
		lines, _ := testutil.FeedLines(m)
		mu.Lock()
		subscriber = append(subscriber, lines...)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	id := u.startNative(url, "million", "job", `{"uri":"file:///bin/sh","argv":["-c","sleep 1; seq 1 1000000"]}`)
	ns := []string{"-s", url, "--namespace", "default"}
	follow, errOut, code := u.nex(append(ns, "workload", "logs", id, "-f")...)
	if err := numbered(follow, n); err != nil || code != 0 {
		t.Fatalf("logs -f: %v, exit %d, stderr %q", err, code, errOut)
	}
	testutil.Eventually(t, 10*time.Second, "the subscriber to have every line", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(subscriber) >= n
	})
	mu.Lock()
	err = numbered(strings.Join(subscriber, "\n")+"\n", n)
	mu.Unlock()
	if err != nil {
		t.Fatalf("a plain NATS subscriber: %v", err)
	}
	history, errOut, code := u.nex(append(ns, "workload", "logs", id)...)
	if err := numbered(history, n); err != nil || code != 0 {
		t.Fatalf("logs (history): %v, exit %d, stderr %q", err, code, errOut)
	}
}

// numbered says how out differs from the numbers 1..n, a line each, in order.
func numbered(out string, n int) error {
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
