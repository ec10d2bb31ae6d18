package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// JetStream answers a request, and acknowledges a publish, on the reply subject its asker
// chose, without checking that subject against anyone's permissions, and a stream stores
// whatever reaches its subjects. A review's walk, with nothing but tenant a's documented
// credentials: a's own $JS.API.INFO, its reply subject $KV.NEX_STATE.<node>.<b's
// workload>, wrote the answer over b's workload's record (the node, restarted, no longer
// knew b's service); the same reached the coordinator's lease and b's secrets, and an
// acknowledgement of a's own bundle chunk did as well. The node's state is in an account
// of its own now (--state.creds-file), where no tenant's request is answered.
func TestTenantCannotWriteTheState(t *testing.T) {
	op, u, url, nodeCreds, nodeArgs := secretsSetup(t)
	data := filepath.Join(u.home, "data")
	node := startNexd(t, u, url, data, nodeArgs...)
	op.tenant(t, u, url, "a", "alice")
	b := op.tenant(t, u, url, "b", "bob")
	u.mustNex(append(b, "secret", "put", "pw", "hunter2")...)
	_, id := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "keep",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo pw=$PW; exec sleep 600"],"environment":{"PW":"secret://pw"}}`)...))
	var nodeID string
	for _, w := range listOf(t, u, b) {
		nodeID = w.NodeID
	}
	if nodeID == "" {
		t.Fatal("b's service is not listed")
	}
	tenant := tenantConn(t, u, url, "alice")
	bundleBucket(t, tenant, "a") // a's bucket made: a's publishes to it are acknowledged
	targets := []string{"$KV.NEX_STATE." + nodeID + "." + id, "$KV.NEX_LEASES.coordinator", "$KV.NEX_SECRETS.b.pw"}
	for _, target := range targets {
		// an answer to a's own request, and an acknowledgement of a's own publish
		if err := tenant.PublishRequest("$JS.API.INFO", target, nil); err != nil {
			t.Fatal(err)
		}
		if err := tenant.PublishRequest("$O."+v1.BundleBucket("a")+".C.forged", target, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tenant.Request("$JS.API.INFO", nil, 5*time.Second); err != nil { // the attack's requests are answered
		t.Fatal(err)
	}
	if err := tenant.Flush(); err != nil {
		t.Fatal(err)
	}
	// whatever the buckets hold, b's service is known after a restart of the node, its
	// secret opens, and no stored value is JetStream's
	node.kill9(t)
	startNexd(t, u, url, data, nodeArgs...)
	testutil.Eventually(t, 15*time.Second, "b's service to run after the node's restart", func() bool {
		for _, w := range listOf(t, u, b) {
			if w.ID == id && w.State == v1.StateRunning {
				return true
			}
		}
		return false
	})
	_, id2 := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "again",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo pw=$PW"],"environment":{"PW":"secret://pw"}}`)...))
	testutil.Eventually(t, 15*time.Second, "b's job to print its secret", func() bool {
		out, _, _ := u.nex(append(b, "workload", "logs", id2)...)
		return strings.Contains(out, "pw=hunter2")
	})
	for _, creds := range []string{nodeCreds, filepath.Join(u.home, "state.creds")} {
		nc, err := nats.Connect(url, nats.UserCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		for _, target := range targets {
			parts := strings.SplitN(strings.TrimPrefix(target, "$KV."), ".", 2)
			kv, err := js.KeyValue(context.Background(), parts[0])
			if err != nil {
				continue
			}
			if e, err := kv.Get(context.Background(), parts[1]); err == nil && (strings.HasPrefix(string(e.Value()), `{"type":"io.nats.jetstream`) || strings.HasPrefix(string(e.Value()), `{"stream":`)) {
				nc.Close()
				t.Fatalf("a tenant had JetStream write %s: %.120s", target, e.Value())
			}
		}
		nc.Close()
	}
}

// secretsSetup is issuerSetup with the flags of a node that mints with the signing key
// and has a secrets key.
func secretsSetup(t *testing.T) (*operatorEnv, *user, string, string, []string) {
	op, u, url, nodeCreds := issuerSetup(t)
	xk, _ := nkeys.CreateCurveKeys()
	xseed, _ := xk.Seed()
	return op, u, url, nodeCreds, []string{"--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account, "--secrets-key", u.write("secrets.seed", string(xseed), 0o600)}
}

// nexdRefuses runs nexd with args and data dir <home>/<name>, and fails the test unless it
// exits non-zero within 20 s naming want (one that serves instead is killed).
func nexdRefuses(t *testing.T, u *user, name string, args []string, want string) {
	t.Helper()
	dir := filepath.Join(u.home, name)
	cmd := u.cmd("nexd", append(args, "--data-dir", dir)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(dir + ".log") // a file: its nexlet holds no pipe of Wait's open
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, pid := range processes("nexlet-native", dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	stop := time.AfterFunc(20*time.Second, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	_ = cmd.Wait()
	stop.Stop()
	if log, _ := os.ReadFile(out.Name()); cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(log), want) {
		t.Fatalf("nexd %s: exit %d, want it refused naming %q:\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), want, log)
	}
}

// Credentials a node cannot work with are refused at start, naming what is wrong (a
// newcomer's walk): an issuer of another account than the node's own credentials' (the
// node came up running nothing, its nexlet given up after "Authorization Violation"), and
// a tenant's credentials as the node's (it waited out --startup-wait on "context deadline
// exceeded").
func TestNexdRefusesCredentialsItCannotUse(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	other, _ := nkeys.CreateAccount()
	otherPub, _ := other.PublicKey()
	nexdRefuses(t, u, "data", []string{"-s", url, "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", otherPub},
		"--issuer-signing-key-root-account "+otherPub+" is not the account of the node's own credentials")
	op.tenant(t, u, url, "a", "alice")
	nexdRefuses(t, u, "tenant", []string{"-s", url, "--nats.creds-file", filepath.Join(u.home, "alice.creds"), "--issuer-signing-key-root-account", op.account},
		"lacks a node's rights")
	startNexd(t, u, url, filepath.Join(u.home, "data2"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
}

// listOf is the namespace's workloads, as the CLI flags cli list them.
func listOf(t *testing.T, u *user, cli []string) []v1.WorkloadInfo {
	t.Helper()
	var list []v1.WorkloadInfo
	out, _, code := u.nex(append(cli, "workload", "list", "--json")...)
	if code != 0 {
		return nil
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return list
}

// A node given --state.creds-file for the first time moves the state of its own account
// (records, groups, claims, secrets) into the state account and deletes it there: b's
// service is still known, its secret still opens, and a service b stops afterwards does
// not come back from the old copy at the next start.
func TestStateMovesIntoTheStateAccount(t *testing.T) {
	op, u, url, nodeCreds, nodeArgs := secretsSetup(t)
	data := filepath.Join(u.home, "data")
	node := startNexd(t, u, url, data, append(nodeArgs, "--state.creds-file=")...) // as before: the state in the tenants' account
	b := op.tenant(t, u, url, "b", "bob")
	u.mustNex(append(b, "secret", "put", "pw", "hunter2")...)
	_, id := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "keep",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...))
	// a second node given the node's own credentials as the state account's is refused:
	// it moved the buckets onto themselves and deleted them (a newcomer's walk)
	nexdRefuses(t, u, "other", append([]string{"-s", url, "--state", "kv", "--state.creds-file", nodeCreds}, nodeArgs...), "of the node's own account")
	if out := u.mustNex(append(b, "secret", "list")...); !strings.Contains(out, "pw") {
		t.Fatalf("b's secrets after the refused node:\n%s", out)
	}
	// meanwhile a has JetStream's answers written into the old buckets (a review's walk:
	// a record with no workload ID in it took every later start for a repeat, in every
	// namespace, and the move copied it all into the state account)
	op.tenant(t, u, url, "a", "alice")
	tenant := tenantConn(t, u, url, "alice")
	nodeID := listOf(t, u, b)[0].NodeID
	for _, key := range []string{"NEX_STATE." + nodeID + ".ZZZZZZZZZZZZZZZZZZZZZZ", "NEX_STATE.groups.b.planted", "NEX_SECRETS.b.planted"} {
		if err := tenant.PublishRequest("$JS.API.INFO", "$KV."+key, nil); err != nil {
			t.Fatal(err)
		}
	}
	// ... and an acknowledgement of its own publish as the claim of a request ID b will use
	bundleBucket(t, tenant, "a")
	sum := sha256.Sum256([]byte("release-1"))
	if err := tenant.PublishRequest("$O."+v1.BundleBucket("a")+".C.x", "$KV.NEX_STATE.requests.b."+hex.EncodeToString(sum[:16]), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := tenant.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	node.kill9(t)
	node = startNexd(t, u, url, data, append(nodeArgs, "--state.creds-file=")...)
	u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "before", "--start-request", `{"uri":"file:///bin/true"}`)...)
	u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "release", "--request-id", "release-1", "--start-request", `{"uri":"file:///bin/true"}`)...)
	node.kill9(t)
	node = startNexd(t, u, url, data, nodeArgs...)
	log := node.bg.out.String()
	if !strings.Contains(log, "state moved into the state account") || !strings.Contains(log, "ZZZZZZZZZZZZZZZZZZZZZZ") || !strings.Contains(log, "b.planted") {
		t.Errorf("the node did not say it moved the state and skipped what a wrote:\n%s", log)
	}
	if out := u.mustNex(append(b, "secret", "list")...); strings.Contains(out, "planted") {
		t.Errorf("a's planted secret moved with b's:\n%s", out)
	}
	running := func() bool {
		for _, w := range listOf(t, u, b) {
			if w.ID == id && w.State == v1.StateRunning {
				return true
			}
		}
		return false
	}
	testutil.Eventually(t, 15*time.Second, "b's service to run after the move", running)
	_, job := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "again",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo pw=$PW"],"environment":{"PW":"secret://pw"}}`)...))
	testutil.Eventually(t, 15*time.Second, "b's job to print its moved secret", func() bool {
		out, _, _ := u.nex(append(b, "workload", "logs", job)...)
		return strings.Contains(out, "pw=hunter2")
	})
	nc, err := nats.Connect(url, nats.UserCredentials(nodeCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for _, bucket := range []string{"NEX_STATE", "NEX_SECRETS"} {
		if _, err := js.KeyValue(context.Background(), bucket); err == nil {
			t.Errorf("bucket %s is still in the tenants' account", bucket)
		}
	}
	u.mustNex(append(b, "workload", "stop", id)...)
	node.kill9(t)
	startNexd(t, u, url, data, nodeArgs...)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if running() {
			t.Fatal("the service b stopped came back after the move")
		}
	}
}

// The same answers, aimed at another namespace's function trigger, its workload's live
// log subject and its history subject: b's function ran on a's answer, and b's history
// and live follow showed it, with a description of a's choosing, as b's workload's output.
func TestTenantCannotInjectJetStreamAnswers(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	op.tenant(t, u, url, "a", "alice")
	b := op.tenant(t, u, url, "b", "bob")
	admin := []string{"-s", url, "--nats.creds-file", nodeCreds, "--namespace", "b"}
	_, fn := startedID(t, u.mustNex(append(admin, "workload", "start", "--type", "native", "--lifecycle", "function", "--name", "greet",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo got $(cat)"],"triggers":["b.greet"]}`)...))
	_, svc := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "talk",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo hello; exec sleep 600"]}`)...))
	testutil.Eventually(t, 10*time.Second, "b's service's first line", func() bool {
		out, _, _ := u.nex(append(b, "workload", "logs", svc)...)
		return strings.Contains(out, "hello")
	})
	follow := u.start("nex", append(b, "workload", "logs", "-f", svc)...)
	testutil.Eventually(t, 10*time.Second, "the follow to show the history", func() bool { return strings.Contains(follow.out.String(), "hello") })
	tenant := tenantConn(t, u, url, "alice")
	bundleBucket(t, tenant, "a")
	bucket := "OBJ_" + v1.BundleBucket("a")
	cfg, _ := json.Marshal(map[string]any{"stream_name": bucket, "config": map[string]any{"name": "forge", "description": "FORGED LINE", "ack_policy": "none",
		"filter_subject": "$O." + v1.BundleBucket("a") + ".C.>"}})
	// a refused publish's answer carries text of a's too: the last message ID it stored
	chunk := "$O." + v1.BundleBucket("a") + ".C.forged"
	if _, err := tenant.RequestMsg(&nats.Msg{Subject: chunk, Header: nats.Header{"Nats-Msg-Id": {"FORGED ID"}}, Data: []byte("x")}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"b.greet", v1.LogSubject("b", svc), v1.LogHistorySubject("b", svc), v1.EventSubject("b", svc)} {
		if err := tenant.PublishRequest("$JS.API.CONSUMER.CREATE."+bucket+".forge.$O."+v1.BundleBucket("a")+".C.>", target, cfg); err != nil {
			t.Fatal(err)
		}
		if err := tenant.PublishMsg(&nats.Msg{Subject: chunk, Reply: target, Header: nats.Header{"Nats-Msg-Id": {"FORGED ID"}}, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if err := tenant.PublishMsg(&nats.Msg{Subject: chunk, Reply: target, Header: nats.Header{"Nats-Expected-Last-Msg-Id": {"nope"}}, Data: []byte("y")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tenant.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if out := u.mustNex(append(admin, "workload", "trigger", "b.greet", "own")...); !strings.Contains(out, "got own") {
		t.Fatalf("b's own trigger: %s", out)
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if logs, _, _ := u.nex(append(admin, "workload", "logs", fn)...); strings.Count(logs, "got") > 1 {
			t.Fatalf("b's function ran on JetStream's answers to a:\n%s", logs)
		}
		if logs, _, _ := u.nex(append(b, "workload", "logs", svc)...); strings.Contains(logs, "FORGED") || strings.Contains(logs, `"stream"`) {
			t.Fatalf("b's history shows JetStream's answers to a:\n%s", logs)
		}
		if out := follow.out.String(); strings.Contains(out, "FORGED") || strings.Contains(out, `"stream"`) {
			t.Fatalf("b's live follow shows JetStream's answers to a:\n%s", out)
		}
		if out, _, _ := u.nex(append(b, "events", "--json")...); strings.Contains(out, "FORGED") || strings.Contains(out, "io.nats.jetstream") || strings.Contains(out, `"stream"`) {
			t.Fatalf("b's events show JetStream's answers to a:\n%s", out)
		}
	}
}

// A pull consumer hands a stored message, its headers and all, to whatever reply subject
// its asker names, and a stream that hears it there takes those headers as a publisher's.
// A review's walk: a stored a chunk with Nats-Rollup: all in its own bucket and had its
// own pull consumer hand it to b's bucket: b's stream purged everything but that chunk,
// and every bundle of b was gone (without the state account, the same purged the node's
// whole state and every secret). Tenants may make no pull of their bucket now.
func TestTenantCannotPurgeAnothersBucket(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	op.tenant(t, u, url, "a", "alice")
	op.tenant(t, u, url, "b", "bob")
	bstore := bundleBucket(t, tenantConn(t, u, url, "bob"), "b")
	ctx := context.Background()
	if _, err := bstore.PutBytes(ctx, "app", []byte("b's bundle")); err != nil {
		t.Fatal(err)
	}
	tenant := tenantConn(t, u, url, "alice")
	bundleBucket(t, tenant, "a")
	chunk := "$O." + v1.BundleBucket("a") + ".C.roll"
	if _, err := tenant.RequestMsg(&nats.Msg{Subject: chunk, Header: nats.Header{"Nats-Rollup": {"all"}}, Data: []byte("R")}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	bucket := "OBJ_" + v1.BundleBucket("a")
	cfg, _ := json.Marshal(map[string]any{"stream_name": bucket, "config": map[string]any{"name": "roll", "ack_policy": "none",
		"deliver_policy": "last_per_subject", "filter_subject": chunk}})
	if m, err := tenant.Request("$JS.API.CONSUMER.CREATE."+bucket+".roll."+chunk, cfg, 5*time.Second); err != nil || strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("a's pull consumer: %v", err)
	}
	for _, target := range []string{"$O." + v1.BundleBucket("b") + ".C.x", "$KV.NEX_STATE.x", "$KV.NEX_SECRETS.x"} {
		_ = tenant.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+bucket+".roll", target, []byte(`{"batch":1,"expires":2000000000}`))
	}
	if _, err := tenant.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if got, err := bstore.GetBytes(ctx, "app"); err != nil || string(got) != "b's bundle" {
			t.Fatalf("b's bundle after a's pull aimed at its bucket: %q %v", got, err)
		}
	}
}
