package test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// consoleSession is a browser's side of a `nex ui`: its cookie (from the URL the command
// printed) and the page's token.
type consoleSession struct {
	t      *testing.T
	base   string
	token  string
	key    string // the session key, from the URL's fragment
	page   string // the page's path, from the URL
	client *http.Client
}

var consoleURLRE = regexp.MustCompile(`(http://127\.0\.0\.1:\d+)(/[0-9a-f]+/)#key=([0-9a-f]+)`)

// openConsole runs `nex ui` with args, reads the URL it prints and opens it as a
// browser would (the page keeps the key and sends it with every request of the API; the
// page carries the token).
func openConsole(t *testing.T, u *user, args ...string) *consoleSession {
	t.Helper()
	bg := u.start("nex", append(args, "ui", "--listen", "127.0.0.1:0", "--no-open")...)
	var m []string
	testutil.Eventually(t, 20*time.Second, "nex ui to print its URL", func() bool {
		m = consoleURLRE.FindStringSubmatch(bg.out.String())
		return m != nil
	})
	s := &consoleSession{t: t, base: m[1], page: m[2], key: m[3], client: &http.Client{Timeout: time.Minute}}
	res, err := s.client.Get(m[0])
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	tm := regexp.MustCompile(`<meta name="nex-token" content="([0-9a-f]+)">`).FindSubmatch(page)
	if res.StatusCode != 200 || tm == nil {
		t.Fatalf("the console's page: %d %s", res.StatusCode, page)
	}
	s.token = string(tm[1])
	return s
}

// do sends a request as the console's page does and decodes the JSON answer into out.
func (s *consoleSession) do(method, path, body string, out any) int {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	req.Header.Set("X-Nex-Key", s.key)
	if method == "POST" {
		req.Header.Set("Origin", s.base)
		req.Header.Set("X-Nex-Token", s.token)
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, out); err != nil {
		s.t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	return res.StatusCode
}

// A tenant's console, run with the documented tenant credentials: it lists its own
// namespace's workloads only, cannot open another's, and a node administration action
// fails with the error the API gives, shown as such; the admin's console sees both.
func TestConsoleOfATenant(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	startNexd(t, u, url, filepath.Join(u.home, "data"), "--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account)
	a, b := op.tenant(t, u, url, "a", "alice"), op.tenant(t, u, url, "b", "bob")
	start := func(cli []string, name string) string {
		_, id := startedID(t, u.mustNex(append(cli, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", name,
			"--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...))
		return id
	}
	mine, theirs := start(a, "mine"), start(b, "theirs")
	var nodes []v1.NodeInfo
	if err := json.Unmarshal([]byte(u.mustNex("-s", url, "--nats.creds-file", nodeCreds, "node", "list", "--json")), &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("node list: %v %v", err, nodes)
	}

	c := openConsole(t, u, a...)
	var list []v1.WorkloadInfo
	if code := c.do("GET", "/api/workloads", "", &list); code != 200 || len(list) != 1 || list[0].ID != mine {
		t.Fatalf("the tenant's console lists (%d): %+v", code, list)
	}
	var e struct {
		Code      int    `json:"code"`
		ErrorCode string `json:"error_code"`
		Message   string `json:"message"`
	}
	if code := c.do("GET", "/api/workloads/"+theirs, "", &e); code != 404 || !strings.Contains(e.Message, "not found in namespace a") {
		t.Fatalf("another namespace's workload: %d %+v", code, e)
	}
	if code := c.do("GET", "/api/workloads/"+theirs+"/logs?ns=b", "", &e); code != 403 || !strings.Contains(e.Message, "namespace a, not b") {
		t.Fatalf("another namespace's logs: %d %+v", code, e)
	}
	code := c.do("POST", "/api/nodes/"+nodes[0].NodeID+"/lameduck", `{"delay":"1h"}`, &e)
	t.Logf("a tenant's lameduck: %d %+v", code, e)
	if code != 403 || e.ErrorCode != v1.CodeForbidden || !strings.Contains(e.Message, "permission denied") {
		t.Fatalf("a tenant's lameduck: %d %+v", code, e)
	}
	var info v1.NodeInfo
	if err := json.Unmarshal([]byte(u.mustNex("-s", url, "--nats.creds-file", nodeCreds, "node", "info", nodes[0].NodeID, "--json")), &info); err != nil || info.State != "running" {
		t.Fatalf("the node after a tenant's lameduck: %v %s", err, info.State)
	}

	tenantInBrowser(t, c, nodes[0].NodeID, mine, theirs)

	admin := openConsole(t, u, "-s", url, "--nats.creds-file", nodeCreds)
	if code := admin.do("GET", "/api/workloads", "", &list); code != 200 || len(list) != 2 {
		t.Fatalf("the admin's console lists (%d): %+v", code, list)
	}
}

// tenantInBrowser opens the tenant's console in Chromium: the table holds its workload
// only, and the node's page says what the API said (it may not ask for node info).
func tenantInBrowser(t *testing.T, c *consoleSession, nodeID, mine, theirs string) {
	path := "/usr/bin/chromium"
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium at /usr/bin/chromium: .ci/run installs it")
		}
		t.Log("no chromium at /usr/bin/chromium: the browser part is skipped")
		return
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	err := chromedp.Do(tctx, chromedp.Navigate(c.base+c.page+"#key="+c.key), chromedp.Navigate(c.base+c.page+"#/workloads"),
		chromedp.WaitVisible(chromedp.CSS(`#workloads tr[data-id="`+mine+`"]`)),
		chromedp.Navigate(c.base+c.page+"#/node/"+nodeID), chromedp.WaitVisible(chromedp.CSS(`#node-error`)))
	if err != nil {
		t.Fatalf("the tenant's console in a browser: %v", err)
	}
	n, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-id="`+theirs+`"]').length`))
	if err != nil || n != 0 {
		t.Fatalf("another namespace's workload in the tenant's console: %d %v", n, err)
	}
	msg, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.getElementById('node-error').textContent`))
	if err != nil || !strings.Contains(msg, "403 forbidden: permission denied") {
		t.Fatalf("the node's page in the tenant's console says %q (%v)", msg, err)
	}
}
