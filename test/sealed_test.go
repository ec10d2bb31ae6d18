package test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
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
			jid := m[2]
			testutil.Eventually(t, 10*time.Second, "the thief's output", func() bool {
				logs, _, _ := u.nex(append(a, "workload", "logs", jid)...)
				if strings.Contains(logs, "got=") {
					t.Errorf("a's job printed %q", strings.TrimSpace(logs))
					return true
				}
				return false
			})
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
		jid := m[2]
		testutil.Eventually(t, 10*time.Second, "the second thief's output", func() bool {
			logs, _, _ := u.nex(append(a, "workload", "logs", jid)...)
			if strings.Contains(logs, "hunter3") {
				t.Errorf("a's job printed b's secret: %q", strings.TrimSpace(logs))
			}
			return strings.Contains(logs, "got=")
		})
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
