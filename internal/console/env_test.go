package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/nexlet/memory"
	"github.com/nexrun/nex/pkg/node"
	"github.com/nexrun/nex/pkg/node/history"
)

// env is a real cluster of one: an in-process nats-server, a node with a memory nexlet,
// and a console on its own connection behind an httptest server.
type env struct {
	t      testing.TB
	ns     *server.Server
	nc     *nats.Conn // the node's and the nexlet's
	nodeID string
	feed   *nexlet.Feed
	srv    *Server
	conn   *nats.Conn // the console's
	ts     *httptest.Server
	addr   string
	cl     *client.Client // namespace default, as a user starting workloads

	mu       sync.Mutex
	statuses []string // "METHOD path status" of every request the console answered
}

func newEnv(t testing.TB, namespace string) *env {
	t.Helper()
	e := &env{t: t}
	e.ns = testutil.StartServer(t)
	e.nc = testutil.Connect(t, e.ns)
	kp, _ := nkeys.CreateServer()
	e.nodeID, _ = kp.PublicKey()
	hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer hcancel()
	hist, err := history.Open(hctx, e.nc, history.Config{LogsMaxAge: time.Hour, LogsMaxBytes: 8 << 20, EventsMaxAge: time.Hour, EventsMaxByte: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// records in JetStream KV, as nexd keeps them with --state kv: the node is the
	// cluster's coordinator, and serves replica groups
	store, err := node.OpenKVStore(hctx, e.nc, e.nodeID, 1)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(e.nc, node.Config{NodeID: e.nodeID, Name: "console-node", Tags: map[string]string{"zone": "lab"}, History: hist, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	e.feed = nexlet.NewFeed(e.nc, e.nodeID)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = nexlet.Serve(ctx, e.nc, nexlet.Config{NodeID: e.nodeID, NexletID: "mem", RegisterType: "memory", Lifecycles: []string{"service", "job"},
			StartRequestSchema: []byte(memory.Schema)}, memory.New("mem", e.feed))
	}()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := n.WaitForNexlet(wctx, "memory"); err != nil {
		t.Fatal(err)
	}
	e.cl, _ = client.New(e.nc, "default")
	e.startConsole(namespace, testutil.Connect(t, e.ns))
	return e
}

// startConsole serves a console of namespace on conn, recording every answer's status.
func (e *env) startConsole(namespace string, conn *nats.Conn) {
	e.ts = httptest.NewUnstartedServer(nil)
	e.addr = e.ts.Listener.Addr().String()
	srv, err := New(Config{Conn: natsconn.Plain(conn), Namespace: namespace, Version: "test"}, e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv, e.conn = srv, conn
	h := srv.Handler()
	e.ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w, status: 200}
		h.ServeHTTP(rec, r)
		e.mu.Lock()
		e.statuses = append(e.statuses, r.Method+" "+r.URL.Path+" "+http.StatusText(rec.status))
		e.mu.Unlock()
	})
	e.ts.Start()
	e.t.Cleanup(func() {
		e.ts.CloseClientConnections()
		e.ts.Close()
		srv.Close()
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int)        { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// answered is the statuses recorded of requests whose "METHOD path" starts with prefix.
func (e *env) answered(prefix string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, s := range e.statuses {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// request sends method path with the session key, the given headers, and body.
func (e *env) request(method, path string, hdr map[string]string, body string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, "http://"+e.addr+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set(KeyHeader, e.srv.Key())
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 2 * time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// post sends a POST as the console's own page does.
func (e *env) post(path, body string) (*http.Response, string) {
	return e.request("POST", path, map[string]string{"Origin": "http://" + e.addr, TokenHeader: e.srv.Token(), "Content-Type": "application/json"}, body)
}

// start runs a memory workload in namespace default.
func (e *env) start(name, lifecycle, startRequest string) *v1.WorkloadInfo {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := e.cl.StartWorkload(ctx, v1.WorkloadDefinition{Namespace: "default", Name: name, Type: "memory", Lifecycle: lifecycle, StartRequest: json.RawMessage(startRequest)})
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

// state is workload id's state in a listing of namespace default ("" when not listed).
func (e *env) state(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := e.cl.ListWorkloads(ctx, "")
	if err != nil {
		return "error: " + err.Error()
	}
	for _, w := range list {
		if w.ID == id {
			return w.State
		}
	}
	return ""
}

// subscribers is how many subscriptions of the NATS server a message on subject reaches.
func (e *env) subscribers(subject string) int {
	sz, err := e.ns.Subsz(&server.SubszOptions{Subscriptions: true, Test: subject, Limit: 1000})
	if err != nil {
		return 0
	}
	return sz.Total
}

// feedSubscriptions is how many subscriptions the console's connection holds, its
// request-reply inbox left out.
func (e *env) feedSubscriptions() int {
	cid, err := e.conn.GetClientID()
	if err != nil {
		return -1
	}
	sz, err := e.ns.Subsz(&server.SubszOptions{Subscriptions: true, Limit: 10000})
	if err != nil {
		return -1
	}
	n := 0
	for _, s := range sz.Subs {
		if s.Cid == cid && !strings.HasPrefix(s.Subject, "_INBOX.") {
			n++
		}
	}
	return n
}

// consumers is how many consumers stream has (0 when it does not exist).
func (e *env) consumers(stream string) int {
	js, err := jetstream.New(e.nc)
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Consumers
}

// following is what waitFollowing compares: the subscriptions a message on subject
// reaches and the consumers of stream, which keeps it.
type following struct{ subs, consumers int }

func (e *env) following(subject, stream string) following {
	return following{e.subscribers(subject), e.consumers(stream)}
}

// waitFollowing waits until the console reads subject (live: a subscription; from
// stream: a consumer) since before was taken: a message published earlier would not
// reach it.
func (e *env) waitFollowing(subject, stream string, before following) {
	e.t.Helper()
	testutil.Eventually(e.t, 5*time.Second, "the console to read "+subject, func() bool {
		now := e.following(subject, stream)
		return now.subs > before.subs || now.consumers > before.consumers
	})
}
