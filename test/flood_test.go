package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/runtime/native/cgroups"
)

// A tenant holding the documented rights of namespace a starts a service that ignores
// SIGTERM, then sends 300 stops of it with a long grace period and 300 long execs beside
// it, without waiting for the answers. Each stop and each exec held one of the node's 256
// slots of its endpoint until it ended, and once they were all held every namespace's
// stops and execs, the operator's too, waited behind them: b's stop of its own workload
// got "no reply in time" (an attacker's walk). Now a namespace holds at most a quarter of
// an endpoint's slots, the next request is answered 503 at once, the system namespace's
// requests wait behind no tenant's, and a grace period is at most an hour.
func TestTenantCannotHoldUpOthersStopsAndExecs(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a, b := op.tenant(t, u, url, "a", "alice"), op.tenant(t, u, url, "b", "bob")
	admin := []string{"-s", url, "--nats.creds-file", nodeCreds, "--namespace", v1.SystemNamespace}
	service := func(who []string, name, sr string) string {
		_, id := startedID(t, u.mustNex(append(who, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", name, "--start-request", sr)...))
		return id
	}
	trapper := service(a, "trapper", `{"uri":"file:///bin/sh","argv":["-c","trap '' TERM; while :; do sleep 1; done"]}`)
	victim := service(b, "victim", `{"uri":"file:///bin/sleep","argv":["600"]}`)
	other := service(b, "other", `{"uri":"file:///bin/sleep","argv":["600"]}`)

	nc, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, "alice.creds")), nats.CustomInboxPrefix(creds.UserInboxPrefix("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var out struct{}
	if err := svcCall(nc, v1.ControlSubject("a", v1.VerbStop, trapper), v1.StopRequest{GracePeriod: v1.Duration(1000 * time.Hour)}, &out); err == nil || !strings.Contains(err.Error(), "between 0 and 1h0m0s") {
		t.Fatalf("a stop with a grace period of 1000h: %v", err)
	}
	// the flood: requests sent, answers collected, nothing waited for
	var mu sync.Mutex
	busy := map[string]int{}
	inbox := nc.NewRespInbox()
	sub, err := nc.Subscribe(inbox, func(m *nats.Msg) {
		var e v1.Error
		if json.Unmarshal(m.Data, &e) == nil && strings.Contains(e.Message, "requests in flight on this node") {
			mu.Lock()
			busy[strings.Fields(e.Message)[4]]++ // "namespace a has 64 STOP requests in flight ..."
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	flood := func(subject string, req any) {
		data, _ := json.Marshal(req)
		for range 300 {
			if err := nc.PublishRequest(subject, inbox, data); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	flood(v1.ControlSubject("a", v1.VerbStop, trapper), v1.StopRequest{GracePeriod: v1.Duration(59 * time.Minute)})
	flood(v1.ControlSubject("a", v1.VerbExec, trapper), v1.ExecRequest{Argv: []string{"/bin/sleep", "300"}, Timeout: v1.Duration(5 * time.Minute)})
	testutil.Eventually(t, 30*time.Second, "a's flood to meet its share of the node", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return busy[v1.VerbStop] > 0 && busy[v1.VerbExec] > 0
	})

	// b's requests, and the operator's, are answered as if a had sent nothing
	if got, errOut, code := u.nex(append(b, "workload", "exec", "--no-tty", victim, "--", "/bin/echo", "b's exec")...); code != 0 || !strings.Contains(got, "b's exec") {
		t.Fatalf("b's exec while a floods: exit %d %q %s", code, got, errOut)
	}
	if _, errOut, code := u.nex(append(b, "workload", "stop", victim)...); code != 0 {
		t.Fatalf("b's stop while a floods: exit %d %s", code, errOut)
	}
	if _, errOut, code := u.nex(append(admin, "workload", "stop", other)...); code != 0 {
		t.Fatalf("the operator's stop while a floods: exit %d %s", code, errOut)
	}
}

// A tenant with the documented rights of namespace a, under a memory quota of 512 MiB,
// asks the node for bids and never deploys them: each unused bid held its memory for 30 s
// whatever the quota, four of 1 GiB held a node of 4 GiB, and b's starts were declined
// ("0 B free"). Unused bids now hold no more than the namespace's quota, and b starts.
func TestTenantCannotHoldANodeWithBids(t *testing.T) {
	if os.Geteuid() != 0 || !slices.Contains(cgroups.Probe(), v1.ResourceMemory) {
		t.Skip("bids for memory need a nexlet that enforces it: root, and the memory cgroup")
	}
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account,
		"--memory", "4GiB", "--reserve-memory", "0", "--namespace-quota", "a=memory=512MiB")
	op.tenant(t, u, url, "a", "alice") // alice's credentials: the test asks with them directly
	b := op.tenant(t, u, url, "b", "bob")
	nc, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, "alice.creds")), nats.CustomInboxPrefix(creds.UserInboxPrefix("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	bids := 0
	for _, mem := range []string{"1GiB", "1GiB", "1GiB", "1GiB", "256MiB", "256MiB", "256MiB", "256MiB"} {
		var reply v1.AuctionReply
		req := json.RawMessage(`{"type":"native","lifecycle":"service","resources":{"memory":"` + mem + `"}}`)
		if err := svcCall(nc, v1.ControlSubject("a", v1.VerbAuction), req, &reply); err != nil {
			t.Fatal(err)
		}
		if reply.Bid != nil {
			bids++
		}
	}
	if bids != 2 {
		t.Fatalf("a holds %d unused bids under a quota of 512 MiB, want 2 of 256 MiB", bids)
	}
	if _, errOut, code := u.nex(append(b, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "room",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"],"resources":{"memory":"3GiB"}}`)...); code != 0 {
		t.Fatalf("b's start of 3 GiB while a holds its bids: exit %d %s", code, errOut)
	}
}

// A tenant's start request that is wrong item by item (256 KiB of argv items that are not
// strings) is refused at once, in a few words: the node's schema check took 0.6 s of CPU
// and 177 MB for each, and its error, 9.7 MB, was past what NATS carries, so the tenant's
// DEPLOY went unanswered while it held the node (five a second held both cores). Run as
// the tenant, with the documented tenant rights, on an operator-mode server.
func TestTenantCannotMakeTheNodeValidateForLong(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	op.tenant(t, u, url, "a", "alice")
	nc, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, "alice.creds")), nats.CustomInboxPrefix(creds.UserInboxPrefix("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	bad := json.RawMessage(`{"uri":"file:///bin/true","argv":[` + strings.TrimSuffix(strings.Repeat("1,", 131000), ",") + `]}`)
	for range 3 {
		var reply v1.AuctionReply
		if err := svcCall(nc, v1.ControlSubject("a", v1.VerbAuction), json.RawMessage(`{"type":"native","lifecycle":"job"}`), &reply); err != nil || reply.Bid == nil {
			t.Fatalf("auction: %+v %v", reply, err)
		}
		began := time.Now()
		err := svcCall(nc, v1.ControlSubject("a", v1.VerbDeploy, reply.Bid.BidID), v1.DeployRequest{Workload: v1.WorkloadDefinition{
			Name: "wrong", Type: "native", Lifecycle: v1.LifecycleJob, StartRequest: bad}}, nil)
		if err == nil || !strings.Contains(err.Error(), "more than 4096 members") || len(err.Error()) > 8<<10 {
			t.Fatalf("the deploy of a start request wrong item by item: %.300v", err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Fatalf("the refusal took %v", took)
		}
	}
}

// A tenant's flood of empty lines does not grow nexlet-native without bound: each line's
// bookkeeping counts against the output queue's 8 MiB (empty lines counted nothing, and
// a review's four flooding workloads grew the nexlet by 200 MB a second, for the OOM
// killer to take it with every namespace's workloads). Run as the tenant, with the
// documented tenant rights, on an operator-mode server.
func TestTenantLogFloodBoundsTheNexlet(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	data := filepath.Join(u.home, "data")
	startNexd(t, u, url, data, "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a := op.tenant(t, u, url, "a", "alice")
	nexlets := testutil.Processes("nexlet-native", data)
	if len(nexlets) != 1 {
		t.Fatalf("%d nexlet-native processes of this node", len(nexlets))
	}
	var ids []string
	for i := range 3 {
		_, id := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "flood"+strconv.Itoa(i),
			"--start-request", `{"uri":"file:///bin/sh","argv":["-c","tr '\\0' '\\n' </dev/zero"]}`)...))
		ids = append(ids, id)
	}
	peak := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		peak = max(peak, rssMiB(nexlets[0]))
		if peak > 1024 {
			break
		}
	}
	for _, id := range ids {
		u.mustNex(append(a, "workload", "stop", id)...)
	}
	if peak > 512 {
		t.Fatalf("nexlet-native grew to %d MiB under a tenant's flood of empty lines", peak)
	}
	t.Logf("nexlet-native at most %d MiB during 10 s of three workloads' empty lines", peak)
}

// rssMiB is the resident memory of process pid in MiB (0 when it cannot be read).
func rssMiB(pid int) int {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb >> 10
		}
	}
	return 0
}

// A tenant's workload that writes as fast as it can (`yes`) made nexlet-native, which
// splits and publishes its output, use 1.25 cores: the node's CPU, outside the tenant's
// own limits. With --output-rate a workload's stdout takes no more than the rate (each
// line 32 bytes more): its writes wait as on a full pipe, and the nexlet's CPU for it is
// a sliver.
func TestTenantOutputPaced(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	data := filepath.Join(u.home, "data")
	startNexd(t, u, url, data, "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account, "--output-rate", "256KiB")
	a := op.tenant(t, u, url, "a", "alice")
	nexlets := testutil.Processes("nexlet-native", data)
	if len(nexlets) != 1 {
		t.Fatalf("%d nexlet-native processes of this node", len(nexlets))
	}
	_, id := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "yes",
		"--start-request", `{"uri":"file:///usr/bin/yes"}`)...))
	defer u.mustNex(append(a, "workload", "stop", id)...)
	// a's own output, read as a would: at most a second's burst and the rate after it
	nc, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, "alice.creds")), nats.CustomInboxPrefix(creds.UserInboxPrefix("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var lines atomic.Int64
	sub, err := nc.Subscribe(v1.LogSubject("a", id), func(m *nats.Msg) {
		l, _ := testutil.FeedLines(m)
		lines.Add(int64(len(l)))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	testutil.Eventually(t, 10*time.Second, "yes's first lines", func() bool { return lines.Load() > 0 })
	cpu0, began := cpuTicks(nexlets[0]), time.Now()
	n0 := lines.Load()
	testutil.Eventually(t, 20*time.Second, "4 s of yes", func() bool { return time.Since(began) > 4*time.Second })
	ticks, took, n := cpuTicks(nexlets[0])-cpu0, time.Since(began), lines.Load()-n0
	perLine := int64(len("y") + 32)
	if most := (256<<10)/perLine*int64(took/time.Second+2) + (256<<10)/perLine; n > most {
		t.Fatalf("%d lines of yes in %s at --output-rate 256KiB, want at most %d", n, took.Round(time.Millisecond), most)
	}
	// clock ticks are 10 ms: a quarter of a core over 4 s is 100
	if ticks > 100 {
		t.Fatalf("nexlet-native used %d clock ticks in %s for one paced yes (a quarter of a core is 100)", ticks, took.Round(time.Millisecond))
	}
	t.Logf("yes at --output-rate 256KiB: %d lines in %s; nexlet-native %d clock ticks", n, took.Round(time.Millisecond), ticks)
}

// cpuTicks is the user and system CPU time of process pid in clock ticks (0 when it
// cannot be read).
func cpuTicks(pid int) int64 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:]) // state is f[0]; utime and stime the 12th and 13th
		if len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			return ut + st
		}
	}
	return 0
}
