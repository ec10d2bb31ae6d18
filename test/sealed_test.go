package test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/node"
	"github.com/nexrun/nex/pkg/seal"
)

// Sealed values are meant to be safe to show: a start request's environment, and a
// secret on its way to the node, carry only ciphertext. They were not bound to their
// namespace, though: tenant a, given a copy of b's (a start request pasted in a ticket,
// an operator's `nats sub`), could put it in a start, a secret or a group of its own, and
// the nexlet or node opened it for a's workload, which printed b's password. Each value is
// sealed for its namespace now, and opened only for it. Run with the documented tenant
// credentials on an operator-mode server.
func TestTenantCannotOpenAnothersSealedValues(t *testing.T) {
	op, u, url, nodeCreds, nodeArgs := secretsSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), nodeArgs...)
	a := op.tenant(t, u, url, "a", "alice")
	b := op.tenant(t, u, url, "b", "bob")
	ctx := context.Background()

	// b's service with a password in its environment, sealed by b's CLI for the nexlet
	_, id := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "db",
		"--start-request", `{"uri":"file:///bin/sleep","argv":["600"],"environment":{"PW":"hunter2"}}`)...))
	cb, _ := client.New(tenantConn(t, u, url, "bob"), "b")
	info, err := cb.WorkloadInfo(ctx, id)
	if err != nil || info.Definition == nil {
		t.Fatalf("b's definition: %+v %v", info, err)
	}
	var sr struct {
		Environment map[string]string `json:"environment"`
	}
	_ = json.Unmarshal(info.Definition.StartRequest, &sr)
	leaked := sr.Environment["PW"]
	if !strings.HasPrefix(leaked, "nexenc:") {
		t.Fatalf("b's PW is not sealed: %q", leaked)
	}

	// b's secret, seen on its way to the node by whoever watches the subject
	watcher, err := nats.Connect(url, nats.UserCredentials(nodeCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	seen, err := watcher.SubscribeSync("$NEX.SVC.v1.b.control.SECRET_PUT.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	u.mustNex(append(b, "secret", "put", "pw", "hunter3")...)
	m, err := seen.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var put v1.SecretPutRequest
	if err := json.Unmarshal(m.Data, &put); err != nil || put.Value == "" {
		t.Fatalf("b's secret put: %s %v", m.Data, err)
	}

	// 1. b's sealed PW in a start of a's own, on the nexlet that holds b's service
	printer := func(env string) string {
		return `{"uri":"file:///bin/sh","argv":["-c","echo got=$STOLEN"],"environment":{"STOLEN":` + env + `}}`
	}
	out, errOut, code := u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "thief",
		"--start-request", printer(`"`+leaked+`"`))...)
	if code == 0 || !strings.Contains(errOut, "sealed value of another namespace") {
		t.Errorf("a started a job with b's sealed PW: exit %d %s %s", code, out, errOut)
		if m := startedRE.FindStringSubmatch(out); m != nil {
			t.Errorf("a's job printed %q", printedGot(t, u, a, m[2], "the thief's output"))
		}
	}

	// 2. b's sealed secret put into a's own secret store, then used
	ta := tenantConn(t, u, url, "alice")
	body, _ := json.Marshal(v1.SecretPutRequest{Value: put.Value})
	r, err := ta.Request("$NEX.SVC.v1.a.control.SECRET_PUT.stolen", body, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := r.Header.Get("Nats-Service-Error-Code"); code != "400" || !strings.Contains(string(r.Data)+r.Header.Get("Nats-Service-Error"), "another namespace") {
		t.Errorf("a stored b's sealed secret as its own: %v %s", r.Header, r.Data)
	}
	out, errOut, _ = u.nex(append(a, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "thief2",
		"--start-request", printer(`"secret://stolen"`))...)
	if m := startedRE.FindStringSubmatch(out); m != nil {
		if logs := printedGot(t, u, a, m[2], "the second thief's output"); strings.Contains(logs, "hunter3") {
			t.Errorf("a's job printed b's secret: %q", logs)
		}
	} else if !strings.Contains(errOut, "secret stolen not found in namespace a") {
		t.Errorf("a's start with secret://stolen: %s %s", out, errOut)
	}

	// 3. b's sealed secret (sealed for the cluster's secrets key, as a group's values
	// are) in a replica group of a's own
	ca, _ := client.New(ta, "a")
	def := v1.WorkloadDefinition{Name: "thieves", Type: "native", Lifecycle: v1.LifecycleService,
		StartRequest: json.RawMessage(`{"uri":"file:///bin/sh","argv":["-c","echo got=$STOLEN; exec sleep 600"],"environment":{"STOLEN":"` + put.Value + `"}}`)}
	if st, err := ca.StartGroup(ctx, def, 1, 0, ""); err == nil || !strings.Contains(err.Error(), "sealed value of another namespace") {
		t.Errorf("a made a group with b's sealed secret: %+v %v", st, err)
	}

	// b's own values still open for b
	_, jid := startedID(t, u.mustNex(append(b, "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "own",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo pw=$PW"],"environment":{"PW":"secret://pw"}}`)...))
	testutil.Eventually(t, 10*time.Second, "b's job to print its own secret", func() bool {
		logs, _, _ := u.nex(append(b, "workload", "logs", jid)...)
		return strings.Contains(logs, "pw=hunter3")
	})
}

// printedGot waits for workload wid (of the namespace the CLI flags cli name) to have
// printed its "got=" line, and returns its output.
func printedGot(t *testing.T, u *user, cli []string, wid, what string) string {
	t.Helper()
	var logs string
	testutil.Eventually(t, 10*time.Second, what, func() bool {
		logs, _, _ = u.nex(append(cli, "workload", "logs", wid)...)
		return strings.Contains(logs, "got=")
	})
	return strings.TrimSpace(logs)
}

// legacySealed is v sealed for recipient as nex sealed values before they were bound to a
// namespace (nexenc:v1:): what b's older CLI sent, and b's records made before still hold.
func legacySealed(t *testing.T, v, recipient string) string {
	t.Helper()
	sender, _ := nkeys.CreateCurveKeys()
	ct, err := sender.Seal([]byte(v), recipient)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := sender.PublicKey()
	return seal.LegacyPrefix + pub + ":" + base64.StdEncoding.EncodeToString(ct)
}

// A legacy value (sealed for no namespace) opens wherever it is started, so no new start
// or group takes one, however it is written: a review's walk escaped one character of
// the marker in JSON ("nexenc:\u00761:"), which the node's check of the bytes missed and
// the nexlet decoded, and a's job and a's group copy printed b's old values.
func TestTenantCannotSlipLegacyValuesPast(t *testing.T) {
	op, u, url, _, nodeArgs := secretsSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), nodeArgs...)
	a := op.tenant(t, u, url, "a", "alice")
	ctx := context.Background()
	ta := tenantConn(t, u, url, "alice")
	ca, _ := client.New(ta, "a")
	// the ways of writing an environment with v in it that reviews tried: as it is; one
	// character of the marker escaped (the node's check of the bytes missed it); behind an
	// "environment" of another type that came first, with a secret:// reference that had
	// the node rewrite the request, keeping the last (the node's decoding gave up on the first)
	forms := map[string]func(v string) string{
		"plain": func(v string) string { return `"environment":{"STOLEN":"` + v + `"}` },
		"escaped": func(v string) string {
			return `"environment":{"STOLEN":"` + strings.Replace(v, seal.LegacyPrefix, `nexenc:\u00761:`, 1) + `"}`
		},
		"repeated": func(v string) string {
			return `"environment":[],"environment":{"STOLEN":"` + v + `","MINE":"secret://mine"}`
		},
	}
	printer := func(env, then string) json.RawMessage {
		return json.RawMessage(`{"uri":"file:///bin/sh","argv":["-c","echo got=$STOLEN` + then + `"],` + env + `}`)
	}
	refused := func(msg string) bool {
		return strings.Contains(msg, "sealed by an older nex") || strings.Contains(msg, `key \"environment\" appears twice`) ||
			strings.Contains(msg, `key "environment" appears twice`) || strings.Contains(msg, "start_request.environment: json: cannot unmarshal")
	}
	u.mustNex(append(a, "secret", "put", "mine", "a's own")...)
	leaked := func(logs string) {
		t.Helper()
		if strings.Contains(logs, "got=hunter") {
			t.Errorf("a's workload printed b's old value: %q", logs)
		}
	}

	// a DEPLOY, sent as raw NATS (the CLI would decode the escape), of b's old value
	// sealed for the nexlet
	def := v1.WorkloadDefinition{Name: "thief", Type: "native", Lifecycle: v1.LifecycleJob}
	for name, form := range forms {
		bids, _, err := ca.Auction(ctx, v1.AuctionRequest{Type: def.Type, Lifecycle: def.Lifecycle})
		if err != nil || len(bids) == 0 {
			t.Fatalf("auction: %v %v", bids, err)
		}
		def.StartRequest = printer(form(legacySealed(t, "hunter4", bids[0].XKey)), "")
		body, _ := json.Marshal(v1.DeployRequest{Workload: def})
		m, err := ta.Request(v1.ControlSubject("a", v1.VerbDeploy, bids[0].BidID), body, 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "400" || !refused(string(m.Data)) {
			t.Errorf("DEPLOY (%s) with %s: %v %s", name, def.StartRequest, m.Header, m.Data)
			var info v1.WorkloadInfo
			if json.Unmarshal(m.Data, &info) == nil && info.ID != "" {
				leaked(printedGot(t, u, a, info.ID, "the thief to end"))
			}
		}
	}

	// a group with b's old value sealed for the cluster's secrets key
	var key v1.SecretKeyReply
	m, err := ta.Request(v1.ControlSubject("a", v1.VerbSecretKey), []byte("{}"), 5*time.Second)
	if err != nil || json.Unmarshal(m.Data, &key) != nil || key.XKey == "" {
		t.Fatalf("secrets key: %v %s", err, m.Data)
	}
	for name, form := range forms {
		gdef := v1.WorkloadDefinition{Name: "thieves", Type: "native", Lifecycle: v1.LifecycleService,
			StartRequest: printer(form(legacySealed(t, "hunter5", key.XKey)), "; exec sleep 600")}
		st, err := ca.StartGroup(ctx, gdef, 1, 0, "")
		if err == nil || !refused(err.Error()) {
			t.Errorf("group (%s) with %s: %v", name, gdef.StartRequest, err)
			if st != nil {
				for _, c := range st.Copies {
					leaked(printedGot(t, u, a, c.ID, "the copy's line"))
				}
			}
		}
	}
}

// A group recorded before values were bound (its value sealed as nexenc:v1: for the
// secrets key) is still restarted and updated: `nex workload update --description` sends
// its recorded definition back, legacy value and all (a review's walk: refused), and its
// copies start with the value opened.
func TestLegacyGroupStillUpdates(t *testing.T) {
	op, u, url, _, nodeArgs := secretsSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), nodeArgs...)
	b := op.tenant(t, u, url, "b", "bob")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tb := tenantConn(t, u, url, "bob")
	cb, _ := client.New(tb, "b")
	sr := func(pw string) json.RawMessage {
		return json.RawMessage(`{"uri":"file:///bin/sh","argv":["-c","echo pw=$PW; exec sleep 600"],"environment":{"PW":"` + pw + `"}}`)
	}
	st, err := cb.StartGroup(ctx, v1.WorkloadDefinition{Name: "web", Type: "native", Lifecycle: v1.LifecycleService, StartRequest: sr("hunter2")}, 1, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	// the group as an older coordinator recorded it
	var key v1.SecretKeyReply
	if m, err := tb.Request(v1.ControlSubject("b", v1.VerbSecretKey), []byte("{}"), 5*time.Second); err != nil || json.Unmarshal(m.Data, &key) != nil || key.XKey == "" {
		t.Fatalf("secrets key: %v", err)
	}
	admin, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, "state.creds")))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	store, err := node.OpenKVStore(ctx, admin, "reader", 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := store.Group(ctx, "b", st.ID)
	if err != nil {
		t.Fatal(err)
	}
	g.Definition.StartRequest = sr(legacySealed(t, "hunter3", key.XKey))
	if err := store.PutGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	u.mustNex(append(b, "workload", "update", st.ID, "--description", "new text")...)
	st, err = cb.Group(ctx, st.ID, v1.GroupRequest{Op: v1.GroupInfo})
	if err != nil || len(st.Copies) != 1 || st.Definition == nil || st.Definition.Description != "new text" {
		t.Fatalf("the updated group: %+v %v", st, err)
	}
	testutil.Eventually(t, 10*time.Second, "the updated copy to print the legacy value", func() bool {
		logs, _, _ := u.nex(append(b, "workload", "logs", st.Copies[0].ID)...)
		return strings.Contains(logs, "pw=hunter3")
	})
}
