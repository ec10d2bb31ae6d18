package test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
)

// NATS checks who may publish to a subject, never the reply subject a message carries,
// and lets a client with allow_responses answer a message it received on that reply
// subject, whatever it is. A review's walk, with the documented tenant rights of
// namespace a:
//   - a's own USAGE request, its reply subject the system namespace's LAMEDUCK of the
//     node: the node published its answer there and took it for the operator's lameduck;
//     every namespace's workloads stopped (TestTenantCannotMakeTheNodeAnswerElsewhere);
//   - a's own function (cat), triggered with that reply subject and a body of a's: the
//     same, with a lameduck delay of a's choosing (TestTenantFunctionAnswersOnInboxesOnly);
//   - a's own service (a relay) answering a's requests on their reply subjects with a
//     reply subject of its own: a listed every namespace's workloads, ran commands in
//     b's and read b's sealed values (TestTenantServiceCannotRelay).
// Endpoints answer inboxes only (svc.InboxReply), and tenants and workloads have no
// allow_responses: a workload answers on inboxes (creds.WorkloadPermissions).

// lameduckOf says whether the node of the test's cluster is in lameduck, as the operator
// sees it.
func lameduckOf(t *testing.T, u *user, url, nodeCreds string) bool {
	out, _, _ := u.nex("-s", url, "--nats.creds-file", nodeCreds, "node", "list", "--json")
	var nodes []v1.NodeInfo
	_ = json.Unmarshal([]byte(out), &nodes)
	return len(nodes) > 0 && nodes[0].State == v1.NodeLameduck
}

func tenantConn(t *testing.T, u *user, url, user string) *nats.Conn {
	nc, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, user+".creds")), nats.CustomInboxPrefix(creds.UserInboxPrefix(user)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestTenantCannotMakeTheNodeAnswerElsewhere(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	node := startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	op.tenant(t, u, url, "a", "alice")
	tenant := tenantConn(t, u, url, "alice")
	m, err := tenant.Request(v1.ControlSubject("a", v1.VerbUsage), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	id := m.Header.Get(v1.HeaderNodeID)
	if err := tenant.PublishMsg(&nats.Msg{Subject: v1.ControlSubject("a", v1.VerbUsage), Reply: v1.SystemSubject(v1.VerbLameduck, id)}); err != nil {
		t.Fatal(err)
	}
	_ = tenant.Flush()
	testutil.Eventually(t, 15*time.Second, "the node to drop the request, or to go lameduck", func() bool {
		return strings.Contains(node.bg.out.String(), "reply subject is not an inbox") || lameduckOf(t, u, url, nodeCreds)
	})
	if lameduckOf(t, u, url, nodeCreds) {
		t.Fatal("a tenant's request, its reply subject the node's LAMEDUCK, put the node in lameduck")
	}
}

func TestTenantFunctionAnswersOnInboxesOnly(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a := op.tenant(t, u, url, "a", "alice")
	startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "function", "--name", "echo",
		"--start-request", `{"uri":"file:///bin/cat","triggers":["a.echo"]}`)...))
	// the CLI's trigger is answered (on the namespace's workload inbox)
	if out := u.mustNex(append(a, "workload", "trigger", "a.echo", "hello")...); !strings.Contains(out, "hello") {
		t.Fatalf("a's trigger of its own function: %q", out)
	}
	tenant := tenantConn(t, u, url, "alice")
	m, err := tenant.Request(v1.ControlSubject("a", v1.VerbUsage), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lameduck := v1.SystemSubject(v1.VerbLameduck, m.Header.Get(v1.HeaderNodeID))
	if err := tenant.PublishMsg(&nats.Msg{Subject: "a.echo", Reply: lameduck, Data: []byte(`{"delay":"1s"}`)}); err != nil {
		t.Fatal(err)
	}
	// the invocation is told in a's events: wait for it, then for a second one after it
	testutil.Eventually(t, 15*time.Second, "the forged invocation and one more", func() bool {
		if out, _, _ := u.nex(append(a, "workload", "trigger", "a.echo", "after")...); !strings.Contains(out, "after") {
			return false
		}
		events, _, _ := u.nex(append(a, "events")...)
		return strings.Count(events, "triggered") >= 3
	})
	if lameduckOf(t, u, url, nodeCreds) {
		t.Fatal("a function's answer, on the reply subject its tenant chose, put the node in lameduck")
	}
}

func TestTenantServiceCannotRelay(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a, b := op.tenant(t, u, url, "a", "alice"), op.tenant(t, u, url, "b", "bob")
	_, victim := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "victim",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...))
	defer u.mustNex(append(b, "workload", "stop", victim)...)
	dir := t.TempDir()
	bin := filepath.Join(dir, "relay")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/relay").CombinedOutput(); err != nil {
		t.Fatalf("build the relay: %v %s", err, out)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} { // workloads run as users of their own
		_ = os.Chmod(d, 0o755)
	}
	_, relay := startedID(t, u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "relay",
		"--start-request", `{"uri":"file://`+bin+`"}`)...))
	defer u.mustNex(append(a, "workload", "stop", relay)...)
	logs := func() string { out, _, _ := u.nex(append(a, "workload", "logs", relay)...); return out }
	testutil.Eventually(t, 15*time.Second, "the relay to be ready", func() bool { return strings.Contains(logs(), "relay ready") })
	tenant := tenantConn(t, u, url, "alice")
	if err := tenant.PublishMsg(&nats.Msg{Subject: "a.relay", Reply: v1.SystemSubject(v1.VerbList), Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	_ = tenant.Flush()
	testutil.Eventually(t, 15*time.Second, "the relay's publish to be denied, or the system list to come back", func() bool {
		out := logs()
		return strings.Contains(out, "DENIED") || strings.Contains(out, "LOOT")
	})
	if out := logs(); strings.Contains(out, "LOOT") || strings.Contains(out, victim) {
		t.Fatalf("a's service relayed a request into the system namespace and read the answer:\n%s", out)
	}
}

// Tenant a describes its workload with escape sequences: `nex workload info`, run by the
// operator, wrote them to the operator's terminal (retitled it, cleared it, forged a
// status line: a review's walk). A description with control characters other than newline
// and tab is refused, by the CLI and by the node (a's raw DEPLOY), and text the cluster
// gives is printed with such characters escaped.
func TestTenantDescriptionCannotDriveATerminal(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a := op.tenant(t, u, url, "a", "alice")
	forged := "\x1b]0;OWNED\a\x1b[2J\x1b[HState: healthy (forged)"
	_, errs, code := u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "esc", "--description", forged,
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...)
	if code == 0 || !strings.Contains(errs, "control character") || strings.Contains(errs, "\x1b") {
		t.Fatalf("a start described with escape sequences: exit %d %q", code, errs)
	}
	tenant := tenantConn(t, u, url, "alice")
	var bid v1.AuctionReply
	if err := svcCall(tenant, v1.ControlSubject("a", v1.VerbAuction), v1.AuctionRequest{Type: "native", Lifecycle: v1.LifecycleService}, &bid); err != nil || bid.Bid == nil {
		t.Fatalf("a's auction: %+v %v", bid, err)
	}
	def := v1.WorkloadDefinition{Namespace: "a", Name: "esc", Type: "native", Lifecycle: v1.LifecycleService, Description: forged,
		StartRequest: json.RawMessage(`{"uri":"file:///bin/sleep","argv":["600"]}`)}
	var info v1.WorkloadInfo
	if err := svcCall(tenant, v1.ControlSubject("a", v1.VerbDeploy, bid.Bid.BidID), v1.DeployRequest{Workload: def}, &info); err == nil || !strings.Contains(err.Error(), "control character") {
		t.Fatalf("a's raw deploy described with escape sequences: %+v %v", info, err)
	}
	if out := u.mustNex(append(a, "workload", "list", "--json")...); strings.Contains(out, `"esc"`) {
		t.Fatalf("a's workloads after the refused starts: %s", out)
	}
}

// Tenant a stores a node's announcement in its bundle bucket and has JetStream publish it
// on the node announcement subject: with a direct get (its answer, the stored bytes, with
// no headers when asked so, goes to the reply subject the asker chose) or a pull
// consumer's MSG.NEXT (its delivery goes there too). Nodes took the ghost for a member: a
// killed node re-announced so was never taken for lost, 2,000 ghosts slowed every
// fan-out, and a ghost's xkey passed a clone's reseal_for (a review's walk). Tenants may
// make no direct get, and a node hears only announcements published on their node's
// subject, with no reply subject and no JetStream header.
func TestTenantCannotAnnounceANode(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a := op.tenant(t, u, url, "a", "alice")
	script := u.write("hi.sh", "#!/bin/sh\necho bundled\n", 0o755)
	u.mustNex(append(a, "workload", "bundle", script, "--lifecycle", "job", "-o", filepath.Join(u.home, "hi.nexfile"))...) // a's bucket, made by the node
	tenant := tenantConn(t, u, url, "alice")
	js, _ := jetstream.New(tenant)
	ctx := context.Background()
	bucket, chunks := "OBJ_"+v1.BundleBucket("a"), "$O."+v1.BundleBucket("a")+".C.forged"
	ann, _ := json.Marshal(v1.Announce{NodeID: "GHOST", Name: "ghost"})
	if _, err := js.Publish(ctx, chunks, ann); err != nil {
		t.Fatal(err)
	}
	// a direct get, without headers, answered on the announcement subject: refused
	_ = tenant.PublishMsg(&nats.Msg{Subject: "$JS.API.DIRECT.GET." + bucket, Reply: v1.AnnounceSubject("GHOST"), Data: []byte(`{"last_by_subj":"` + chunks + `","no_hdr":true}`)})
	_ = tenant.Flush()
	testutil.Eventually(t, 5*time.Second, "the direct get to be refused, or answered", func() bool {
		err := tenant.LastError()
		return err != nil && strings.Contains(err.Error(), "DIRECT.GET") || strings.Contains(peersOf(t, tenant), "GHOST")
	})
	// a pull consumer's delivery to the announcement subject: refused (tenants may not
	// pull their bucket: TestTenantCannotPurgeAnothersBucket), or delivered and not heard
	cfg, _ := json.Marshal(map[string]any{"stream_name": bucket, "config": map[string]any{"name": "puller", "ack_policy": "none", "filter_subject": chunks}})
	if m, err := tenant.Request("$JS.API.CONSUMER.CREATE."+bucket+".puller."+chunks, cfg, 3*time.Second); err != nil || strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("a's pull consumer: %v", err)
	}
	_ = tenant.PublishMsg(&nats.Msg{Subject: "$JS.API.CONSUMER.MSG.NEXT." + bucket + ".puller", Reply: v1.AnnounceSubject("GHOST"), Data: []byte(`{"batch":1}`)})
	testutil.Eventually(t, 10*time.Second, "JetStream to deliver the stored announcement, or the pull to be refused", func() bool {
		if err := tenant.LastError(); err != nil && strings.Contains(err.Error(), "MSG.NEXT") {
			return true
		}
		return delivered(tenant, bucket, "puller")
	})
	for range 5 { // the node answers from what it has heard: asked a few times over
		if peers := peersOf(t, tenant); strings.Contains(peers, "GHOST") {
			t.Fatalf("a's stored announcement made the node take a ghost for a member: peers %s", peers)
		}
	}
}

// peersOf is the peers the node names in its answer to a's USAGE.
func peersOf(t *testing.T, nc *nats.Conn) string {
	m, err := nc.Request(v1.ControlSubject("a", v1.VerbUsage), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get(v1.HeaderPeers)
}
