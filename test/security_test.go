package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/testutil"
	"github.com/nexrun/nex/pkg/creds"
)

// operatorEnv is a nats-server in operator mode with one application account that has a
// signing key, as an operator would set it up with nsc.
type operatorEnv struct {
	srv        *server.Server
	account    string
	signingKey nkeys.KeyPair
}

func startOperatorServer(t *testing.T) *operatorEnv {
	t.Helper()
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "nex-test"
	sys, _ := nkeys.CreateAccount()
	sysPub, _ := sys.PublicKey()
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	sk, _ := nkeys.CreateAccount()
	skPub, _ := sk.PublicKey()
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "APP"
	ac.SigningKeys.Add(skPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, _ := sc.Encode(op)

	resolver := &server.MemAccResolver{}
	resolver.Store(accPub, accJWT)
	resolver.Store(sysPub, sysJWT)
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{claims}, AccountResolver: resolver, SystemAccount: sysPub})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("operator-mode server not ready")
	}
	t.Cleanup(s.Shutdown)
	return &operatorEnv{srv: s, account: accPub, signingKey: sk}
}

// user writes a creds file for a user of the application account with perms.
func (o *operatorEnv) user(t *testing.T, dir, name string, perms *jwt.Permissions) string {
	t.Helper()
	u, _ := nkeys.CreateUser()
	pub, _ := u.PublicKey()
	seed, _ := u.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.IssuerAccount = o.account
	if perms != nil {
		uc.Permissions = *perms
	}
	token, err := uc.Encode(o.signingKey)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := jwt.FormatUserConfig(token, seed)
	path := filepath.Join(dir, name+".creds")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// probe connects with a creds file and records permission violations.
type probe struct {
	nc   *nats.Conn
	mu   sync.Mutex
	errs []string
}

func connectProbe(t *testing.T, url, credsFile string, opts ...nats.Option) *probe {
	t.Helper()
	p := &probe{}
	nc, err := nats.Connect(url, append(opts, nats.UserCredentials(credsFile), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		p.mu.Lock()
		p.errs = append(p.errs, err.Error())
		p.mu.Unlock()
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p.nc = nc
	return p
}

// denied reports whether an action on subject was refused by the server.
func (p *probe) denied(t *testing.T, action, subject string) bool {
	t.Helper()
	switch action {
	case "pub":
		_ = p.nc.Publish(subject, []byte("x"))
	case "sub":
		_, _ = p.nc.SubscribeSync(subject)
	}
	_ = p.nc.Flush()
	want := fmt.Sprintf(`%s "%s"`, map[string]string{"pub": "Publish to", "sub": "Subscription to"}[action], subject)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, e := range p.errs {
			if strings.Contains(e, want) {
				p.mu.Unlock()
				return true
			}
		}
		p.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// allowed checks that subject works both ways for this connection.
func (p *probe) allowed(t *testing.T, subject string) bool {
	t.Helper()
	sub, err := p.nc.SubscribeSync(subject)
	if err != nil {
		return false
	}
	defer sub.Unsubscribe()
	_ = p.nc.Publish(subject, []byte("ping"))
	_, err = sub.NextMsg(2 * time.Second)
	return err == nil
}

// TestNamespaceIsolation runs nexd with an account signing key against an operator-mode
// server and proves what a workload, a nexlet and a CLI user can and cannot reach.
func TestNamespaceIsolation(t *testing.T) {
	op := startOperatorServer(t)
	u := newUser(t)
	url := op.srv.ClientURL()
	nodeCreds := op.user(t, u.home, "node", nil)
	skSeed, _ := op.signingKey.Seed()
	data := filepath.Join(u.home, "data")
	// a seed on the command line is refused (every user can read it); a file is the way
	_, errs, code := u.nex("node", "up", "--embedded", "--data-dir", filepath.Join(u.home, "refused"), "--issuer-signing-key", string(skSeed))
	if code == 0 || !strings.Contains(errs, "a seed on the command line can be read by every user") {
		t.Fatalf("a literal seed on the command line: exit %d: %s", code, errs)
	}
	skFile := u.write("signing.seed", string(skSeed), 0o600)
	n := startNexd(t, u, url, data, "--nats.creds-file", nodeCreds, "--workload-creds-ttl", "3s", "--nexlet-creds-ttl", "3s",
		"--issuer-signing-key", skFile, "--issuer-signing-key-root-account", op.account)
	if strings.Contains(n.bg.out.String(), "DEVELOPMENT MODE") {
		t.Fatal("nexd with an issuer claims development mode")
	}

	// A CLI user who may only use namespace a's control subjects, with replies of its own:
	// it may subscribe to its inbox prefix and nothing else.
	cliA := op.user(t, u.home, "cli-a", &jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{"$NEX.SVC.v1.a.>"}},
		Sub: jwt.Permission{Allow: jwt.StringList{"_INBOX_cli_a.>"}},
	})
	out := u.mustNex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "a", "workload", "start", "--type", "native", "--lifecycle", "service",
		"--name", "svc", "--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)
	_, wid := startedID(t, out)
	// another CLI user cannot read a's replies: its inbox is its own
	cliB := op.user(t, u.home, "cli-b", &jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{"$NEX.SVC.v1.b.>"}},
		Sub: jwt.Permission{Allow: jwt.StringList{"_INBOX_cli_b.>"}},
	})
	if spy := connectProbe(t, url, cliB); !spy.denied(t, "sub", "_INBOX_cli_a.>") {
		t.Fatal("user b may subscribe to user a's inbox")
	}
	begin := time.Now()
	_, errOut, code := u.nex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "b", "workload", "list")
	if code == 0 || !strings.Contains(errOut, "permission denied") || !strings.Contains(errOut, "$NEX.SVC.v1.b.control.LIST") {
		t.Fatalf("namespace b for a user of a: exit %d, %q", code, errOut)
	}
	if time.Since(begin) > 3*time.Second {
		t.Fatalf("the permission error took %s", time.Since(begin))
	}

	// The workload's credentials: a file in its workdir, mode 0600, named in its environment.
	credsFile := filepath.Join(data, "native", "workloads", wid, ".nex", "nats.creds")
	st, err := os.Stat(credsFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("workload creds %s: %v %v", credsFile, st, err)
	}
	// as a workload connects: NATS_URL, NEX_NATS_CREDS and NEX_NATS_INBOX_PREFIX
	w := connectProbe(t, url, credsFile, nats.CustomInboxPrefix(creds.InboxPrefix("a")))
	if !w.allowed(t, "a.orders") {
		t.Error("a workload of namespace a cannot use a.>")
	}
	for _, c := range []struct{ action, subject string }{
		{"sub", "b.>"}, {"pub", "b.orders"}, {"sub", "$NEX.FEED.b.>"}, {"pub", "$NEX.FEED.b.logs.x"},
		{"pub", "$NEX.SVC.v1.b.control.LIST"}, {"pub", "$NEX.SVC.v1.a.control.LIST"}, {"sub", "_INBOX.>"},
	} {
		if !w.denied(t, c.action, c.subject) {
			t.Errorf("a workload of namespace a may %s %s", c.action, c.subject)
		}
	}
	// its replies come through its own inbox prefix
	if w.denied(t, "sub", creds.InboxPrefix("a")+".>") {
		t.Error("a workload cannot subscribe to its inbox prefix")
	}

	// The nexlet's credentials: its node's subjects, and no other node's.
	nx := connectProbe(t, url, filepath.Join(data, "native.creds"))
	if !nx.denied(t, "pub", "$NEX.NODE.v1.NOTHISNODE.REGISTER") {
		t.Error("a nexlet may register with another node")
	}
	if !nx.denied(t, "pub", "$NEX.SVC.v1.a.control.DEPLOY.x") || !nx.denied(t, "sub", "a.>") {
		t.Error("a nexlet may reach the control plane or a namespace's subjects")
	}

	// A nexlet with scoped credentials can still fetch executables from an object store.
	admin, err := nats.Connect(url, nats.UserCredentials(nodeCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	store, err := ajs.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: "bins"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutBytes(context.Background(), "hello.sh", []byte("#!/bin/sh\necho from the object store\n")); err != nil {
		t.Fatal(err)
	}
	objLogs, _ := admin.SubscribeSync("$NEX.FEED.a.logs.>")
	admin.Flush()
	u.mustNex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "a", "workload", "start", "--type", "native", "--lifecycle", "job",
		"--name", "obj", "--start-request", `{"uri":"nats://bins/hello.sh"}`)
	if m, err := objLogs.NextMsg(10 * time.Second); err != nil || string(m.Data) != "from the object store" {
		t.Fatalf("object-store executable under scoped nexlet credentials: %v %v", m, err)
	}
	// following logs needs subscribe rights on the feed: the user is told, not left waiting
	_, errOut, code = u.nex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "a", "workload", "logs", wid, "-f")
	if code == 0 || !strings.Contains(errOut, "permission denied") {
		t.Fatalf("logs -f without feed rights: exit %d %q", code, errOut)
	}
	// reading the history needs JetStream rights: the user is told so, not that it is missing
	_, errOut, code = u.nex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "a", "workload", "logs", wid)
	if code == 0 || !strings.Contains(errOut, "permission denied: this NATS user may not read the history stream NEX_LOGS") {
		t.Fatalf("logs without JetStream rights: exit %d %q", code, errOut)
	}

	// A function can only be triggered from its own namespace.
	u.mustNex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "a", "workload", "start", "--type", "native", "--lifecycle", "function",
		"--name", "fn", "--start-request", `{"uri":"file:///bin/cat","triggers":["a.fn"]}`)
	reply, err := w.nc.Request("a.fn", []byte("hi"), 5*time.Second)
	if err != nil || string(reply.Data) != "hi" {
		t.Fatalf("function of a from a: %v %v", reply, err)
	}
	_, errOut, code = u.nex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "a", "workload", "start", "--type", "native", "--lifecycle", "function",
		"--name", "fn2", "--start-request", `{"uri":"file:///bin/cat","triggers":["b.fn"]}`)
	if code == 0 || !strings.Contains(errOut, "outside the namespace") {
		t.Fatalf("a function of a triggered by b.fn: exit %d %q", code, errOut)
	}

	// Triggers keep working across renewals: the function moves to a connection with the
	// renewed credentials before the old ones expire, so no request finds nobody listening.
	hammerDone, hammerStop := make(chan string, 1), make(chan struct{})
	go func() {
		ok, failed, first := 0, 0, ""
		for {
			select {
			case <-hammerStop:
				if failed > 0 {
					first = fmt.Sprintf("%d of %d trigger requests failed; the first: %s", failed, ok+failed, first)
				}
				hammerDone <- first
				return
			default:
			}
			m, err := admin.Request("a.fn", []byte("x"), 2*time.Second)
			if err != nil || string(m.Data) != "x" {
				if failed == 0 {
					first = fmt.Sprintf("%v %v", m, err)
				}
				failed++
				continue
			}
			ok++
		}
	}()
	fnStarted := time.Now()
	// Credentials expire (3 s here) and are renewed while the workload runs, not after.
	first, _ := os.ReadFile(credsFile)
	testutil.Eventually(t, 10*time.Second, "the credentials to be renewed", func() bool {
		now, _ := os.ReadFile(credsFile)
		return len(now) > 0 && string(now) != string(first)
	})
	claims, err := jwt.ParseDecoratedJWT(mustRead(t, credsFile))
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(claims)
	if err != nil || uc.Expires == 0 || time.Until(time.Unix(uc.Expires, 0)) > 4*time.Second {
		t.Fatalf("renewed credentials: %v, expires %v", err, time.Unix(uc.Expires, 0))
	}
	// The nexlet's own credentials expire too: past the first ones' expiry it still works.
	firstNexlet, _ := jwt.ParseDecoratedJWT(mustRead(t, filepath.Join(data, "native.creds")))
	nc0, _ := jwt.DecodeUserClaims(firstNexlet)
	if nc0 == nil || nc0.Expires == 0 {
		t.Fatal("nexlet credentials do not expire")
	}
	testutil.Eventually(t, 10*time.Second, "the nexlet's first credentials to expire", func() bool {
		return time.Now().After(time.Unix(nc0.Expires, 0).Add(500 * time.Millisecond))
	})
	// past the function's first credentials' expiry (3 s after it started)
	testutil.Eventually(t, 10*time.Second, "the function's first credentials to expire", func() bool {
		return time.Since(fnStarted) > 4*time.Second
	})
	close(hammerStop)
	if msg := <-hammerDone; msg != "" {
		t.Error(msg)
	}
	// The nexlet moved to renewed credentials before the old ones expired: the server never
	// had to cut it off.
	if out := n.bg.out.String(); strings.Contains(out, "authentication expired") || strings.Contains(out, "NATS connection lost") {
		t.Errorf("a connection was cut off when its credentials expired:\n%s", out)
	}
	out = u.mustNex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "a", "workload", "start", "--type", "native", "--lifecycle", "service",
		"--name", "late", "--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)
	_, late := startedID(t, out)
	u.mustNex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "a", "workload", "stop", late)

	u.mustNex("-s", url, "--nats.creds-file", cliA, "--nats.inbox-prefix", "_INBOX_cli_a", "--namespace", "a", "workload", "stop", wid)
	if _, err := os.Stat(credsFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("credentials left behind after stop: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSealedEnvironment: environment values cross NATS and rest in KV sealed for the
// nexlet; the workload sees them in clear, and so does its clone.
func TestSealedEnvironment(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	startNexd(t, u, url, filepath.Join(u.home, "data"))
	nc := testutil.Connect(t, s)
	wire, _ := nc.SubscribeSync("$NEX.>")
	logs, _ := nc.SubscribeSync("$NEX.FEED.default.logs.>")
	nc.Flush()
	out := u.mustNex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "sec",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo secret=$DB_PASSWORD; exec sleep 600"],"environment":{"DB_PASSWORD":"hunter2"}}`)
	_, id := startedID(t, out)
	m, err := logs.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "secret=hunter2" {
		t.Fatalf("the workload did not get its secret: %v %v", m, err)
	}
	for {
		m, err := wire.NextMsg(200 * time.Millisecond)
		if err != nil {
			break
		}
		if strings.Contains(string(m.Data), "hunter2") && !strings.Contains(m.Subject, ".logs.") {
			t.Fatalf("the secret crossed NATS in clear on %s", m.Subject)
		}
	}
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), "NEX_STATE")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := kv.ListKeys(context.Background())
	for k := range keys.Keys() {
		e, _ := kv.Get(context.Background(), k)
		if strings.Contains(string(e.Value()), "hunter2") {
			t.Fatalf("the secret rests in KV in clear under %s", k)
		}
	}
	info := u.mustNex("-s", url, "--namespace", "default", "workload", "info", id)
	if strings.Contains(info, "hunter2") || !strings.Contains(info, `"DB_PASSWORD": "*****"`) {
		t.Fatalf("workload info shows the secret:\n%s", info)
	}
	out = u.mustNex("-s", url, "--namespace", "default", "workload", "clone", id, "--stop")
	_, clone := startedID(t, out)
	testutil.Eventually(t, 5*time.Second, "the clone to print its secret", func() bool {
		m, err := logs.NextMsg(100 * time.Millisecond)
		return err == nil && strings.HasSuffix(m.Subject, clone) && string(m.Data) == "secret=hunter2"
	})
	u.mustNex("-s", url, "--namespace", "default", "workload", "stop", clone)
}

// TestSecretStore: nex secret put/list/rm, and secret://name in a workload's environment.
func TestSecretStore(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	// without a secrets key, the store says how to get one
	noKey := newUser(t)
	startNexd(t, noKey, url, filepath.Join(noKey.home, "data"))
	_, errOut, code := u.nex("-s", url, "--namespace", "default", "secret", "put", "db", "x")
	if code == 0 || !strings.Contains(errOut, "--secrets-key") {
		t.Fatalf("secret put without a key: exit %d %q", code, errOut)
	}
	ck, _ := nkeys.CreateCurveKeys()
	seed, _ := ck.Seed()
	keyFile := filepath.Join(u.home, "secrets.xk")
	os.WriteFile(keyFile, seed, 0o600)
	// a second node, with the key: the store and resolution live there
	startNexdNamed(t, u, url, filepath.Join(u.home, "data"), "keyed", "--secrets-key", keyFile, "--tags", "keyed=yes")

	c := u.cmd("nex", "-s", url, "--namespace", "default", "secret", "put", "db")
	c.Stdin = strings.NewReader("hunter2\n")
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "secret://db") {
		t.Fatalf("secret put from stdin: %v %s", err, out)
	}
	if out := u.mustNex("-s", url, "--namespace", "default", "secret", "list"); !strings.Contains(out, "db") || strings.Contains(out, "hunter2") {
		t.Fatalf("secret list: %q", out)
	}
	if out := u.mustNex("-s", url, "--namespace", "other", "secret", "list"); strings.Contains(out, "db") {
		t.Fatalf("namespace other sees default's secret: %q", out)
	}
	nc := testutil.Connect(t, s)
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), "NEX_SECRETS")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), "default.db")
	if err != nil || strings.Contains(string(e.Value()), "hunter2") {
		t.Fatalf("the secret rests in clear: %v %q", err, e)
	}
	logs, _ := nc.SubscribeSync("$NEX.FEED.default.logs.>")
	nc.Flush()
	u.mustNex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "uses", "--tags", "keyed=yes",
		"--start-request", `{"uri":"file:///bin/sh","argv":["-c","echo db=$DB"],"environment":{"DB":"secret://db"}}`)
	m, err := logs.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "db=hunter2" {
		t.Fatalf("the workload did not get the secret: %v %v", m, err)
	}
	_, errOut, code = u.nex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "missing", "--tags", "keyed=yes",
		"--start-request", `{"uri":"file:///bin/true","environment":{"DB":"secret://nope"}}`)
	if code == 0 || !strings.Contains(errOut, "secret nope not found in namespace default") {
		t.Fatalf("a missing secret: exit %d %q", code, errOut)
	}
	u.mustNex("-s", url, "--namespace", "default", "secret", "rm", "db")
	if _, errOut, code := u.nex("-s", url, "--namespace", "default", "secret", "rm", "db"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("second rm: exit %d %q", code, errOut)
	}
}
