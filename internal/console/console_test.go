package console

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/testutil"
)

// Requests that name another host are refused, whatever else they carry: a page of a
// rebound DNS name sends that name.
func TestHostChecked(t *testing.T) {
	e := newEnv(t, "system")
	_, port, _ := strings.Cut(e.addr, ":")
	for _, tt := range []struct {
		host string
		want int
	}{
		{e.addr, 200},
		{"localhost:" + port, 200},
		{"LOCALHOST:" + port, 200},
		{"evil.example:" + port, http.StatusMisdirectedRequest},
		{"evil.example", http.StatusMisdirectedRequest},
		{"127.0.0.1:1", http.StatusMisdirectedRequest},
	} {
		for _, path := range []string{e.srv.Page(), "/api/nodes", e.srv.Page() + "app.js"} {
			res, body := e.request("GET", path, map[string]string{"Host": tt.host}, "")
			if res.StatusCode != tt.want {
				t.Errorf("GET %s with Host %q: %d, want %d: %s", path, tt.host, res.StatusCode, tt.want, body)
			}
		}
	}
	// a POST as the page sends it, but to another Host: refused before anything runs
	w := e.start("svc", "service", `{"value":"v"}`)
	res, _ := e.request("POST", "/api/workloads/"+w.ID+"/stop", map[string]string{"Host": "evil.example:" + port, "Origin": "http://evil.example:" + port, TokenHeader: e.srv.Token(), "Content-Type": "application/json"}, "{}")
	if res.StatusCode != http.StatusMisdirectedRequest || e.state(w.ID) != "running" {
		t.Fatalf("a POST to another host: %d, workload %s", res.StatusCode, e.state(w.ID))
	}
}

// A state-changing request needs the console's own Origin and the session token; the
// one that has both is done.
func TestPostNeedsOriginAndToken(t *testing.T) {
	e := newEnv(t, "system")
	w := e.start("svc", "service", `{"value":"v"}`)
	own := "http://" + e.addr
	path := "/api/workloads/" + w.ID + "/stop"
	for _, tt := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"no origin", map[string]string{TokenHeader: e.srv.Token(), "Content-Type": "application/json"}, 403},
		{"another origin", map[string]string{"Origin": "http://evil.example", TokenHeader: e.srv.Token(), "Content-Type": "application/json"}, 403},
		{"another port", map[string]string{"Origin": "http://127.0.0.1:1", TokenHeader: e.srv.Token(), "Content-Type": "application/json"}, 403},
		{"null origin", map[string]string{"Origin": "null", TokenHeader: e.srv.Token(), "Content-Type": "application/json"}, 403},
		{"no token", map[string]string{"Origin": own, "Content-Type": "application/json"}, 403},
		{"wrong token", map[string]string{"Origin": own, TokenHeader: strings.Repeat("0", 48), "Content-Type": "application/json"}, 403},
		{"a form's content type", map[string]string{"Origin": own, TokenHeader: e.srv.Token(), "Content-Type": "text/plain"}, 400},
	} {
		res, body := e.request("POST", path, tt.hdr, "{}")
		if res.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d: %s", tt.name, res.StatusCode, tt.want, body)
		}
		if st := e.state(w.ID); st != "running" {
			t.Fatalf("%s: the workload is %s", tt.name, st)
		}
	}
	res, body := e.post(path, "{}")
	if res.StatusCode != 200 || !strings.Contains(body, `"state":"stopped"`) {
		t.Fatalf("the page's own stop: %d %s", res.StatusCode, body)
	}
	testutil.Eventually(t, 5*time.Second, "the workload stopped in a listing", func() bool { return e.state(w.ID) != "running" })
}

// Without the session key (from the URL nex ui prints, in its fragment) the API answers
// nothing; the page and its script, which hold nothing of the cluster's, are served. The
// key is sent by the page in a header (an event stream: in its query), never in a cookie:
// browsers send a host's cookies to every port of it, and a local listener's page that
// the operator's browser opened took the cookie and drove the system console (a review).
func TestSessionKey(t *testing.T) {
	e := newEnv(t, "system")
	get := func(path string, hdr map[string]string) int {
		req, _ := http.NewRequest("GET", "http://"+e.addr+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	key := e.srv.Key()
	for _, c := range []struct {
		path string
		hdr  map[string]string
	}{
		{"/api/nodes", nil}, {"/api/workloads", nil}, {"/api/live/events", nil},
		{"/api/nodes", map[string]string{KeyHeader: strings.Repeat("0", len(key))}},
		{"/api/nodes?key=" + key, nil}, // the query is the event streams' alone
		{"/api/nodes", map[string]string{"Cookie": "nex_console=" + key + "; nex_key=" + key}},
	} {
		if code := get(c.path, c.hdr); code != http.StatusUnauthorized {
			t.Errorf("GET %s %v: %d, want 401", c.path, c.hdr, code)
		}
	}
	for _, p := range []string{e.srv.Page(), e.srv.Page() + "app.js", e.srv.Page() + "style.css"} {
		if code := get(p, nil); code != 200 {
			t.Errorf("GET %s (no data of the cluster's): %d", p, code)
		}
	}
	if code := get("/api/nodes", map[string]string{KeyHeader: key}); code != 200 {
		t.Errorf("GET /api/nodes with the key: %d", code)
	}
	// the page at a path of its own (a listener on the port before may have had its "/"
	// cached by the browser), nothing at "/"
	if code := get("/", nil); code != http.StatusNotFound {
		t.Errorf("GET / (not the page): %d", code)
	}
	if u := e.srv.URL(e.addr); u != "http://"+e.addr+e.srv.Page()+"#key="+key || len(e.srv.Page()) != 34 {
		t.Errorf("the URL to open: %s", u)
	}
}

// Every answer, refusals and errors too, is kept out of caches and frames, and the page
// runs no inline script.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, "system")
	for _, c := range []struct {
		method, path string
		hdr          map[string]string
	}{
		{"GET", "/", nil}, {"GET", e.srv.Page(), nil}, {"GET", e.srv.Page() + "app.js", nil}, {"GET", e.srv.Page() + "style.css", nil}, {"GET", "/api/nodes", nil},
		{"GET", "/api/workloads", nil}, {"GET", "/api/workloads/nope", nil}, {"GET", "/nothing", nil},
		{"GET", "/", map[string]string{"Host": "evil.example"}},
		{"POST", "/api/workloads/x/stop", map[string]string{"Origin": "http://evil.example"}},
	} {
		res, _ := e.request(c.method, c.path, c.hdr, "")
		h := res.Header
		csp := h.Get("Content-Security-Policy")
		if h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" ||
			!strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s %s (%d): headers %v", c.method, c.path, res.StatusCode, h)
		}
	}
	res, body := e.request("GET", e.srv.Page(), nil, "")
	if !strings.Contains(body, `<meta name="nex-token" content="`+e.srv.Token()+`">`) || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("the page does not carry the token")
	}
	if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>|<script>|\son[a-z]+=`).MatchString(body) {
		t.Fatal("index.html has an inline script or handler")
	}
	// the page's script builds the DOM from text: no HTML parsing of anything
	js, err := os.ReadFile("web/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "DOMParser", "createContextualFragment"} {
		if strings.Contains(string(js), sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
}

// A read from another site's page (the browser says so) is refused; bad input is
// refused naming the problem.
func TestReadsAndBadInput(t *testing.T) {
	e := newEnv(t, "system")
	if res, _ := e.request("GET", "/api/workloads", map[string]string{"Sec-Fetch-Site": "cross-site"}, ""); res.StatusCode != 403 {
		t.Errorf("a cross-site read: %d", res.StatusCode)
	}
	w := e.start("svc", "service", `{"value":"v"}`)
	g := "g-" + w.ID
	for _, c := range []struct {
		method, path, body string
		want               int
		says               string
	}{
		{"GET", "/api/workloads/" + w.ID + "/logs?tail=abc", "", 400, "tail"},
		{"GET", "/api/workloads/" + w.ID + "/events?ns=a.b", "", 400, "namespace"},
		{"GET", "/api/workloads/a*b", "", 400, "workload ID"},
		{"GET", "/api/workloads/" + strings.Repeat("x", 22), "", 404, "not found"},
		{"POST", "/api/groups/" + g + "/scale?ns=default", `{"replicas":-1}`, 400, "replicas"},
		{"POST", "/api/groups/" + g + "/scale?ns=default", `{"replica":2}`, 400, "unknown field"},
		{"POST", "/api/groups/" + g + "/scale?ns=a.b", `{"replicas":2}`, 400, "namespace"},
		{"POST", "/api/nodes/" + e.nodeID + "/lameduck", `{"delay":"banana"}`, 400, "delay"},
		{"POST", "/api/workloads/" + w.ID + "/remove", `{}`, 409, "conflict"},
	} {
		var res *http.Response
		var body string
		if c.method == "POST" {
			res, body = e.post(c.path, c.body)
		} else {
			res, body = e.request("GET", c.path, nil, "")
		}
		if res.StatusCode != c.want || !strings.Contains(body, c.says) {
			t.Errorf("%s %s %s: %d %s; want %d naming %q", c.method, c.path, c.body, res.StatusCode, body, c.want, c.says)
		}
	}
}

// A workload's environment values and sealed values are never sent to the page; its
// keys are.
func TestDefinitionMasked(t *testing.T) {
	e := newEnv(t, "system")
	w := e.start("env", "service", `{"value":"v","environment":{"PASSWORD":"hunter2","TOKEN":"tok-value"}}`)
	res, body := e.request("GET", "/api/workloads/"+w.ID, nil, "")
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	if strings.Contains(body, "hunter2") || strings.Contains(body, "tok-value") || strings.Contains(body, "nexenc:") || !strings.Contains(body, "PASSWORD") || !strings.Contains(body, "TOKEN") {
		t.Fatalf("not masked: %s", body)
	}
	var got struct {
		Definition struct {
			StartRequest map[string]any `json:"start_request"`
		} `json:"definition"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Definition.StartRequest["value"] != "v" {
		t.Fatalf("the rest of the start request is lost: %v %s", err, body)
	}
}

// Two pages following events share one reader, which stops when both have gone; a
// workload started while they follow reaches each as an event and then as its info.
func TestLiveEventsShared(t *testing.T) {
	e := newEnv(t, "system")
	open := func() (*http.Response, *bufio.Reader) {
		req, _ := http.NewRequest("GET", "http://"+e.addr+"/api/live/events?key="+e.srv.Key(), nil) // as the page's EventSource asks
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.Header.Get("Content-Type") != "text/event-stream" || res.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("live events: %v", res.Header)
		}
		return res, bufio.NewReader(res.Body)
	}
	subject := "$NEX.FEED.default.event.x"
	before := e.following(subject, "NEX_EVENTS_default")
	if n := e.feedSubscriptions(); n != 0 {
		t.Fatalf("the console subscribes to %d subjects before a page asks", n)
	}
	r1, b1 := open()
	r2, b2 := open()
	testutil.Eventually(t, 5*time.Second, "two subscribers", func() bool { return e.srv.Hub().Subscribers(EventsTopic) == 2 })
	e.waitFollowing(subject, "NEX_EVENTS_default", before)
	if n := e.srv.Hub().Opened(EventsTopic); n != 1 {
		t.Fatalf("%d readers of the events for 2 pages", n)
	}
	w := e.start("live", "service", `{"value":"v"}`)
	for _, b := range []*bufio.Reader{b1, b2} {
		waitFor(t, b, "event: workload", `"id":"`+w.ID+`"`)
	}
	r1.Body.Close()
	r2.Body.Close()
	testutil.Eventually(t, 5*time.Second, "the reader to stop with the last page", func() bool {
		return e.srv.Hub().Readers() == 0 && e.feedSubscriptions() == 0
	})
}

// waitFor reads server-sent events until one of kind whose data holds want.
func waitFor(t *testing.T, b *bufio.Reader, kind, want string) {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		last := ""
		for {
			line, err := b.ReadString('\n')
			if err != nil {
				done <- "stream ended: " + err.Error()
				return
			}
			line = strings.TrimSpace(line)
			if os.Getenv("NEX_DEBUG_SSE") != "" {
				t.Log(line)
			}
			if strings.HasPrefix(line, "data: ") && last == kind && strings.Contains(line, want) {
				done <- ""
				return
			}
			if strings.HasPrefix(line, "event: ") {
				last = line
			}
		}
	}()
	select {
	case msg := <-done:
		if msg != "" {
			t.Fatal(msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s with %s within 5s", kind, want)
	}
}

// Two pages of one workload share one reader of its output, and new lines reach both.
func TestLiveLogsShared(t *testing.T) {
	e := newEnv(t, "system")
	w := e.start("logs", "service", `{"value":"v"}`)
	subject := "$NEX.FEED.default.logs." + w.ID
	before := e.following(subject, "NEX_LOGS_default")
	var readers []*bufio.Reader
	for range 2 {
		req, _ := http.NewRequest("GET", "http://"+e.addr+"/api/live/logs/default/"+w.ID+"?key="+e.srv.Key(), nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		readers = append(readers, bufio.NewReader(res.Body))
	}
	topic := LogsTopic("default", w.ID)
	testutil.Eventually(t, 5*time.Second, "two subscribers", func() bool { return e.srv.Hub().Subscribers(topic) == 2 })
	if n := e.srv.Hub().Opened(topic); n != 1 {
		t.Fatalf("%d readers of one workload's output for 2 pages", n)
	}
	e.waitFollowing(subject, "NEX_LOGS_default", before)
	lw := e.feed.LineWriter("default", w.ID, "stderr")
	fmt.Fprintln(lw, "to both pages")
	lw.Close()
	for _, b := range readers {
		waitFor(t, b, "event: log", `"stream":"stderr","line":"to both pages"`)
	}
}

// A console listening on every address prints a URL naming the machine's host name,
// which it accepts as Host (a newcomer's walk: --listen 0.0.0.0:8078 printed
// http://[::]:8078/..., which no browser can use); other addresses are named as they are.
func TestURLOfAWildcardListener(t *testing.T) {
	name, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	for _, addr := range []string{"[::]:8078", "0.0.0.0:8078"} {
		got := URLHost(addr)
		if want := net.JoinHostPort(strings.ToLower(name), "8078"); got != want {
			t.Errorf("URLHost(%s) = %s, want %s", addr, got, want)
		}
		hosts, _, err := allowedHosts(addr)
		if err != nil || !hosts[got] {
			t.Errorf("a console on %s refuses Host %s, the one its URL names (%v)", addr, got, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:8077", "[::1]:9", "10.1.2.3:80"} {
		if got := URLHost(addr); got != addr {
			t.Errorf("URLHost(%s) = %s", addr, got)
		}
	}
}
