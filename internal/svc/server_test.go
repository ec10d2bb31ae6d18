package svc_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
)

func newServer(t *testing.T, nc *nats.Conn, log *zap.Logger) *svc.Server {
	t.Helper()
	s, err := svc.NewServer(nc, svc.Config{Config: micro.Config{Name: "test", Version: "0.0.1"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s
}

// A panicking handler, concurrent or not, answers 500 and logs its stack; the process
// and the endpoint live on.
func TestHandlerPanicIsAnswered(t *testing.T) {
	ns := testutil.StartServer(t)
	nc := testutil.Connect(t, ns)
	core, logs := observer.New(zap.ErrorLevel)
	s := newServer(t, nc, zap.New(core))
	h := svc.Handle(func(_ context.Context, _ *svc.Request, req *struct{ Panic bool }) (string, error) {
		if req.Panic {
			var m map[string]int
			m["boom"]++ // a nil map write: a real runtime panic
		}
		return "ok", nil
	})
	for _, c := range []struct {
		name       string
		concurrent int
	}{{"inline", 0}, {"concurrent", 4}} {
		subject := "test.panic." + c.name
		if err := s.Add(svc.Endpoint{Name: "PANIC_" + c.name, Subject: subject, Handler: h, Concurrent: c.concurrent}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := svc.Call(ctx, natsconn.Plain(nc), subject, map[string]bool{"Panic": true}, nil)
		cancel()
		if e := v1.AsError(err); e.Code != 500 || e.ErrorCode != v1.CodeInternal {
			t.Fatalf("%s: a panicking handler answered %v, want a 500 internal error", c.name, err)
		}
		var got string
		if err := svc.Call(context.Background(), natsconn.Plain(nc), subject, nil, &got); err != nil || got != "ok" {
			t.Fatalf("%s: the endpoint after a panic: %q, %v", c.name, got, err)
		}
	}
	entries := logs.FilterMessage("handler panicked").All()
	if len(entries) != 2 {
		t.Fatalf("logged %d panics, want 2", len(entries))
	}
	if st := entries[0].ContextMap()["stack"]; !strings.Contains(st.(string), "server_test.go") {
		t.Fatalf("the panic's stack is not logged: %v", st)
	}
}

// Stop waits for detached handlers, ends their context when its own ends, and answers
// requests arriving meanwhile with 503; tokens are parsed before the handler runs.
func TestServerStopWaitsForHandlers(t *testing.T) {
	ns := testutil.StartServer(t)
	nc := testutil.Connect(t, ns)
	s := newServer(t, nc, nil)
	entered := make(chan struct{}, 1)
	var finished atomic.Bool
	var gotID string
	err := s.Add(svc.Endpoint{Name: "SLOW", Subject: "$NEX.SVC.v1.ns1.control.SLOW.*", Tokens: svc.ControlTokens("workload ID"), Concurrent: 8,
		Handler: svc.Handle(func(ctx context.Context, r *svc.Request, _ *struct{}) (string, error) {
			gotID = r.Namespace + "/" + r.ID
			entered <- struct{}{}
			<-ctx.Done() // only Stop ends it
			finished.Store(true)
			return "", ctx.Err()
		})})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = svc.Call(context.Background(), natsconn.Plain(nc), "$NEX.SVC.v1.ns1.control.SLOW.w1", nil, nil)
	}()
	<-entered
	if gotID != "ns1/w1" {
		t.Fatalf("tokens parsed as %q", gotID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s.Stop(ctx)
	if !finished.Load() {
		t.Fatal("Stop returned while a handler still ran")
	}
	if s.Context().Err() == nil {
		t.Fatal("the handlers' context is still live after Stop")
	}

	// bad tokens never reach the handler
	s2 := newServer(t, nc, nil)
	if err := s2.Add(svc.Endpoint{Name: "TOK", Subject: "$NEX.SVC.v1.*.control.TOK.*", Tokens: svc.ControlTokens("workload ID"),
		Handler: svc.Handle(func(context.Context, *svc.Request, *struct{}) (string, error) { return "reached", nil })}); err != nil {
		t.Fatal(err)
	}
	// a token that a subject can carry but validation refuses (over the length limit)
	long := strings.Repeat("x", v1.MaxTokenBytes+1)
	if err := svc.Call(context.Background(), natsconn.Plain(nc), "$NEX.SVC.v1."+long+".control.TOK.w", nil, nil); !v1.IsCode(err, v1.CodeInvalidToken) {
		t.Fatalf("a namespace over the limit: %v, want invalid_token", err)
	}
	for _, ns := range []string{"$KV", "_INBOX_a"} { // NATS's own prefixes are no namespaces
		if err := svc.Call(context.Background(), natsconn.Plain(nc), "$NEX.SVC.v1."+ns+".control.TOK.w", nil, nil); !v1.IsCode(err, v1.CodeInvalidToken) {
			t.Fatalf("namespace %s: %v, want invalid_token", ns, err)
		}
	}
}

// Requests arriving while a server stops (REGISTER during a node's shutdown) are either
// served or refused with 503, never raced against the wait: run with -race.
func TestServerStopUnderLoad(t *testing.T) {
	ns := testutil.StartServer(t)
	nc := testutil.Connect(t, ns)
	for round := 0; round < 5; round++ {
		s, err := svc.NewServer(nc, svc.Config{Config: micro.Config{Name: "load", Version: "0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		var served atomic.Int64
		if err := s.Add(svc.Endpoint{Name: "HIT", Subject: "test.hit", Concurrent: 16,
			Handler: svc.Handle(func(context.Context, *svc.Request, *struct{}) (string, error) {
				served.Add(1)
				return "ok", nil
			})}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 50; j++ {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					_ = svc.Call(ctx, natsconn.Plain(nc), "test.hit", nil, nil)
					cancel()
				}
			}()
		}
		testutil.Eventually(t, 5*time.Second, "requests to be served", func() bool { return served.Load() > 10 })
		s.Stop(context.Background())
		wg.Wait()
	}
}

// Calls on many short-lived connections, watched or not, leave no goroutine behind.
func TestCallsLeaveNothingBehind(t *testing.T) {
	ns := testutil.StartServer(t)
	srvConn := testutil.Connect(t, ns)
	s := newServer(t, srvConn, nil)
	if err := s.Add(svc.Endpoint{Name: "ECHO", Subject: "test.echo", Concurrent: 4,
		Handler: svc.Handle(func(context.Context, *svc.Request, *struct{}) (string, error) { return "ok", nil })}); err != nil {
		t.Fatal(err)
	}
	dial := func(watched bool) {
		raw, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		nc := natsconn.Plain(raw)
		if watched {
			nc = natsconn.Watch(raw)
		}
		for i := 0; i < 5; i++ {
			if err := svc.Call(context.Background(), nc, "test.echo", nil, nil); err != nil {
				t.Fatal(err)
			}
			_ = svc.FanOut(context.Background(), nc, "test.echo", nil, 50*time.Millisecond, func(svc.Reply) bool { return true })
		}
		nc.Close()
	}
	dial(true) // warm up whatever the first call starts for good
	before := testutil.ClientGoroutines()
	for i := 0; i < 100; i++ {
		dial(i%2 == 0)
	}
	testutil.Eventually(t, 5*time.Second, "connection goroutines to end", func() bool { return testutil.ClientGoroutines() <= before })
}

// A fan-out that stops waiting for a node the answers named alive says which one it
// lacks; one that heard every named node lacks none.
func TestFanOutNamesTheSilentNodes(t *testing.T) {
	ns := testutil.StartServer(t)
	nc := testutil.Connect(t, ns)
	var slow atomic.Bool
	slow.Store(true)
	answer := func(node, peers string, delay time.Duration) {
		sub, err := nc.Subscribe("test.fan", func(m *nats.Msg) {
			wait := delay
			if !slow.Load() {
				wait = 0
			}
			time.AfterFunc(wait, func() {
				r := nats.NewMsg(m.Reply)
				r.Header.Set(v1.HeaderNodeID, node)
				r.Header.Set(v1.HeaderPeers, peers)
				r.Data = []byte(`{}`)
				_ = m.RespondMsg(r)
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	answer("NA", "NA,NB,NC", 0)
	answer("NB", "NA,NB,NC", 0)
	answer("NC", "NA,NB,NC", 2*time.Second) // slower than the straggler bound
	heard := 0
	missing, err := svc.FanOutMissing(context.Background(), natsconn.Plain(nc), "test.fan", nil, 200*time.Millisecond, func(svc.Reply) bool { heard++; return false })
	if err != nil || heard != 2 || len(missing) != 1 || missing[0] != "NC" {
		t.Fatalf("heard %d, missing %v, err %v; want 2 heard and NC missing", heard, missing, err)
	}
	slow.Store(false)
	missing, err = svc.FanOutMissing(context.Background(), natsconn.Plain(nc), "test.fan", nil, 3*time.Second, func(svc.Reply) bool { return false })
	if err != nil || len(missing) != 0 {
		t.Fatalf("with every node answering: missing %v, err %v", missing, err)
	}
}

// A user who may not subscribe to its replies' inbox hears no answer ever: a call says so
// at once, naming the inbox and --nats.inbox-prefix, not "no reply in time" after 10 s.
func TestCallWithoutInboxRights(t *testing.T) {
	ns := testutil.StartServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "svc", Password: "p"},
			{Username: "tenant", Password: "p", Permissions: &server.Permissions{Subscribe: &server.SubjectPermission{Deny: []string{"_INBOX.>"}}}}}
	})
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("svc", "p"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s := newServer(t, nc, zap.NewNop())
	if err := s.Add(svc.Endpoint{Name: "ECHO", Subject: "test.echo", Handler: svc.Handle(func(context.Context, *svc.Request, *struct{}) (string, error) { return "ok", nil })}); err != nil {
		t.Fatal(err)
	}
	// the connection's own error handler still hears the violation (Watch puts itself in
	// front of it, and does not replace it)
	own := make(chan error, 4)
	tc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("tenant", "p"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { own <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = svc.Call(ctx, natsconn.Watch(tc), "test.echo", nil, nil)
	if e := v1.AsError(err); e.Code != 403 || !strings.Contains(e.Message, "may not subscribe to its replies' inbox _INBOX.>") || !strings.Contains(e.Message, "--nats.inbox-prefix") || ctx.Err() != nil {
		t.Fatalf("a call without inbox rights: %v (context %v)", err, ctx.Err())
	}
	select {
	case err := <-own:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("the connection's own handler heard %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the connection's own error handler never heard the violation")
	}
	// the same call over a connection that is not watched waits for its deadline: the
	// watch is what makes it fail at once
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if err := svc.Call(short, natsconn.Plain(tc), "test.echo", nil, nil); short.Err() == nil {
		t.Fatalf("an unwatched call ended before its deadline: %v", err)
	}
}

// One namespace holding its share of an endpoint's requests with slow ones (stops of a
// workload that ignores SIGTERM, long execs: an attacker's flood held all 256 slots, and
// the subscription waited for one) gets 503 for the next at once; another namespace's
// requests are served, the system namespace's too, however many tenants hold their share.
func TestNamespaceHoldsItsShareOnly(t *testing.T) {
	ns := testutil.StartServer(t)
	nc := testutil.Connect(t, ns)
	s := newServer(t, nc, nil)
	release := make(chan struct{})
	defer close(release)
	var held atomic.Int64
	err := s.Add(svc.Endpoint{Name: "STOP", Subject: "$NEX.SVC.v1.*.control.STOP.*", Tokens: svc.ControlTokens("workload ID"), Concurrent: 4, PerNamespace: 2,
		Owns: func(_, id string) bool { return id != "elsewhere" },
		Handler: svc.Handle(func(ctx context.Context, r *svc.Request, _ *struct{}) (string, error) {
			if r.ID == "fast" || r.ID == "elsewhere" {
				return "done", nil
			}
			held.Add(1)
			defer held.Add(-1)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return "released", nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	conn := natsconn.Plain(nc)
	callWithin := func(d time.Duration, ns, id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		var out string
		return svc.Call(ctx, conn, "$NEX.SVC.v1."+ns+".control.STOP."+id, nil, &out)
	}
	call := func(ns, id string) error { return callWithin(2*time.Second, ns, id) }
	hold := func(ns string, n int) {
		for range n {
			// asked again while busy: a namespace's request answered a moment ago may
			// still count until its handler's return (a CI dry run under -race: b's
			// "fast" one took one of b's two places, and b's second hold got a 503)
			go func() {
				_ = svc.RetryBusy(context.Background(), func() error { return callWithin(time.Minute, ns, "slow") })
			}()
		}
	}
	hold("a", 2)
	testutil.Eventually(t, 5*time.Second, "a's two requests held", func() bool { return held.Load() == 2 })
	if err := call("a", "fast"); !svc.IsBusy(err) || !strings.Contains(err.Error(), "namespace a has 2 STOP requests in flight") {
		t.Fatalf("a's third request: %v, want unavailable naming the namespace", err)
	}
	if err := call("b", "fast"); err != nil {
		t.Fatalf("b's request while a holds its share: %v", err)
	}
	// what this instance does not own is answered outside the budget: only the owner
	// may say "busy", or its 503 would be taken for the owner's answer
	if err := call("a", "elsewhere"); err != nil {
		t.Fatalf("a's request about what another instance owns, while a holds its share here: %v", err)
	}
	hold("b", 2)
	hold("c", 2) // more than Concurrent held by namespaces' requests: they never wait for it
	testutil.Eventually(t, 5*time.Second, "every namespace's share held", func() bool { return held.Load() == 6 })
	if err := call(v1.SystemNamespace, "fast"); err != nil {
		t.Fatalf("the system namespace's request while tenants hold their shares: %v", err)
	}
}

// A client asks again, with a growing wait, while the node answers its namespace busy
// (svc.RetryBusy): the request is carried out once one of the namespace's others has
// finished. Before, the CLI failed at once with the 503. Another 503 is not asked again.
func TestBusyIsAskedAgain(t *testing.T) {
	ns := testutil.StartServer(t)
	nc := testutil.Connect(t, ns)
	s := newServer(t, nc, nil)
	release := make(chan struct{})
	var held atomic.Int64
	err := s.Add(svc.Endpoint{Name: "STOP", Subject: "$NEX.SVC.v1.*.control.STOP.*", Tokens: svc.ControlTokens("workload ID"), Concurrent: 4, PerNamespace: 1,
		Handler: svc.Handle(func(ctx context.Context, r *svc.Request, _ *struct{}) (string, error) {
			switch r.ID {
			case "gone":
				return "", svc.ErrStopped
			case "slow":
				held.Add(1)
				<-release
			}
			return "done", nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	conn := natsconn.Plain(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	slow := make(chan error, 1)
	go func() { slow <- svc.Call(ctx, conn, "$NEX.SVC.v1.a.control.STOP.slow", nil, nil) }()
	testutil.Eventually(t, 5*time.Second, "a's one request held", func() bool { return held.Load() == 1 })
	var tries atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- svc.RetryBusy(ctx, func() error {
			tries.Add(1)
			var out string
			return svc.Call(ctx, conn, "$NEX.SVC.v1.a.control.STOP.fast", nil, &out)
		})
	}()
	testutil.Eventually(t, 5*time.Second, "the request answered busy twice", func() bool { return tries.Load() >= 2 })
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("a request asked again while busy: %v", err)
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	tries.Store(0)
	err = svc.RetryBusy(ctx, func() error { tries.Add(1); return svc.Call(ctx, conn, "$NEX.SVC.v1.a.control.STOP.gone", nil, nil) })
	if !v1.IsCode(err, v1.CodeUnavailable) || svc.IsBusy(err) || tries.Load() != 1 {
		t.Fatalf("another 503: %v after %d tries, want it once", err, tries.Load())
	}
}

// An endpoint answers only reply subjects that are inboxes: a request whose reply subject
// is another endpoint's subject is dropped, unanswered and not handled (the node would
// publish its answer there: a tenant's USAGE answered into the system LAMEDUCK). A
// request with no reply subject is handled only by a fire-and-forget endpoint.
func TestEndpointsAnswerInboxesOnly(t *testing.T) {
	ns := testutil.StartServer(t)
	nc := testutil.Connect(t, ns)
	s := newServer(t, nc, nil)
	var handled atomic.Int64
	for _, e := range []svc.Endpoint{
		{Name: "USAGE", Subject: "$NEX.SVC.v1.*.control.USAGE", Tokens: svc.ControlTokens("")},
		{Name: "RELEASE", Subject: "$NEX.SVC.v1.*.control.RELEASE", Tokens: svc.ControlTokens(""), FireAndForget: true},
	} {
		e.Handler = svc.Handle(func(context.Context, *svc.Request, *struct{}) (string, error) { handled.Add(1); return "ok", nil })
		if err := s.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	target, err := nc.SubscribeSync("$NEX.SVC.v1.system.control.LAMEDUCK.N1")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*nats.Msg{
		{Subject: "$NEX.SVC.v1.a.control.USAGE", Reply: "$NEX.SVC.v1.system.control.LAMEDUCK.N1"},
		{Subject: "$NEX.SVC.v1.a.control.USAGE"}, // no reply: not fire-and-forget
	} {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// a fire-and-forget request, then an inbox's: each handled, in order after the others
	_ = nc.PublishMsg(&nats.Msg{Subject: "$NEX.SVC.v1.a.control.RELEASE"})
	if m, err := nc.Request("$NEX.SVC.v1.a.control.USAGE", nil, 2*time.Second); err != nil || string(m.Data) != `"ok"` {
		t.Fatalf("a request with an inbox: %v %v", m, err)
	}
	testutil.Eventually(t, 5*time.Second, "the fire-and-forget request", func() bool { return handled.Load() >= 2 })
	if n := handled.Load(); n != 2 {
		t.Fatalf("%d requests handled, want the inbox's and the fire-and-forget one", n)
	}
	if m, err := target.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("the endpoint answered on another endpoint's subject: %s", m.Data)
	}
	for _, r := range []string{"_INBOX.x", "_INBOX_alice.x", "_INBOX_NEXW_a.x", "_NEXNODE_N1.x"} {
		if !svc.InboxReply(r) {
			t.Errorf("%s is an inbox", r)
		}
	}
	for _, r := range []string{"", "a.loot", "$NEX.SVC.v1.system.control.LIST", "$JS.API.STREAM.DELETE.X", "INBOX.x"} {
		if svc.InboxReply(r) {
			t.Errorf("%s is no inbox", r)
		}
	}
}
