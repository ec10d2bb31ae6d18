package console

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
)

// renderPage is the workloads page of a console in a headless Chromium, ready to be given
// listings (the console has a NATS server and no node: the data comes from the test).
func renderPage(tb testing.TB) *browser {
	b := newBrowser(tb)
	s := testutil.StartServer(tb)
	ts := httptest.NewUnstartedServer(nil)
	addr := ts.Listener.Addr().String()
	srv, err := New(Config{Conn: natsconn.Plain(testutil.Connect(tb, s)), Namespace: "system"}, addr)
	if err != nil {
		tb.Fatal(err)
	}
	ts.Config.Handler = srv.Handler()
	ts.Start()
	tb.Cleanup(func() { ts.CloseClientConnections(); ts.Close(); srv.Close() })
	b.do(tb, 30*time.Second, "the workloads page", chromedp.Navigate(srv.URL(addr)))
	eval[bool](tb, b, `location.hash = "#/workloads"; true`)
	b.waitTrue(tb, 10*time.Second, "the workloads page", `window.nexConsole && window.nexConsole.rerender && document.querySelector('#workloads tbody')`)
	return b
}

// listing is n workloads as the console's /api/workloads sends them, as a JS string literal.
func listing(tb testing.TB, n int) string {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	states := []string{v1.StateRunning, v1.StateRunning, v1.StateRunning, v1.StateStopped, v1.StateBackoff, v1.StateFailed}
	list := make([]v1.WorkloadInfo, n)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range list {
		w := &list[i]
		w.ID = fmt.Sprintf("W%021d", r.Int64N(1e18))
		w.Namespace = fmt.Sprintf("team-%d", i%7)
		w.Name = fmt.Sprintf("svc-%d", i)
		w.Type, w.Lifecycle = "native", []string{"service", "job", "function"}[i%3]
		w.State = states[r.IntN(len(states))]
		w.NodeID = fmt.Sprintf("N%055d", i%10)
		w.StartedAt = start.Add(time.Duration(r.IntN(1e6)) * time.Second)
		w.Tags = map[string]string{"zone": fmt.Sprintf("z%d", i%3), "tier": "web"}
		w.Restarts = uint64(r.IntN(4))
		if i%5 == 0 {
			w.Group = fmt.Sprintf("g-G%020d", i%40)
		}
	}
	b, err := json.Marshal(list)
	if err != nil {
		tb.Fatal(err)
	}
	js, _ := json.Marshal(string(b)) // a JSON string is a JS string literal
	return string(js)
}

// giveListing hands the page a listing (JSON text) to render.
func giveListing(tb testing.TB, b *browser, data string) {
	eval[bool](tb, b, `window.__listing = `+data+`; true`)
}

// renderTimes renders the page's listing rounds times and returns the browser's milliseconds
// from the data's arrival (JSON text) to the table laid out, sorted.
func renderTimes(tb testing.TB, b *browser, rounds int) []float64 {
	out := make([]float64, rounds)
	for i := range out {
		out[i] = eval[float64](tb, b, `nexConsole.bench(window.__listing)`)
		if n := eval[int](tb, b, `document.querySelectorAll('#workloads tbody tr:not(.spacer)').length`); n < 20 || n > 100 {
			tb.Fatalf("%d rows drawn", n)
		}
	}
	slices.Sort(out)
	return out
}

func benchmarkRender(b *testing.B, n int) {
	br := renderPage(b)
	giveListing(b, br, listing(b, n))
	renderTimes(b, br, 2) // warm up
	b.ResetTimer()
	times := renderTimes(b, br, b.N)
	b.StopTimer()
	sum := 0.0
	for _, t := range times {
		sum += t
	}
	b.ReportMetric(sum/float64(len(times)), "ms/render")
	b.ReportMetric(times[len(times)/2], "median-ms")
}

// BenchmarkConsoleRender1000 is the workloads page given 1,000 workloads: parse, filter,
// sort, draw the rows in view, lay the table out (ms/render is the browser's own measure).
func BenchmarkConsoleRender1000(b *testing.B) { benchmarkRender(b, 1000) }

// BenchmarkConsoleRender10000 is the same with 10,000 workloads.
func BenchmarkConsoleRender10000(b *testing.B) { benchmarkRender(b, 10000) }

// The bound: 1,000 workloads render in under 300 ms after the data arrives, and
// 10,000 stay usable (under 300 ms too: only the rows in view are drawn; all are sorted).
func TestRenderFast(t *testing.T) {
	b := renderPage(t)
	for _, c := range []struct {
		n     int
		bound float64
	}{{1000, 300}, {10000, 300}} {
		giveListing(t, b, listing(t, c.n))
		times := renderTimes(t, b, 5)
		t.Logf("%d workloads: median %.1f ms, slowest %.1f ms", c.n, times[2], times[4])
		if times[2] > c.bound {
			t.Errorf("%d workloads render in %.1f ms (median of 5), over %.0f ms", c.n, times[2], c.bound)
		}
	}
	b.screenshot(t, "console-workloads", false)
	if h := eval[float64](t, b, `document.querySelector('#workloads tbody tr:not(.spacer)').getBoundingClientRect().height`); h != 32 {
		t.Fatalf("a row is %v pixels high; the page counts on ROW_HEIGHT, 32", h)
	}
	// scrolled to the end, the last rows are drawn and nothing is left below them
	eval[bool](t, b, `const s = document.getElementById('workloads-scroll'); s.scrollTop = s.scrollHeight; true`)
	b.waitTrue(t, 5*time.Second, "the last rows drawn", `document.querySelector('#workloads tbody tr:last-child').style.height === '0px' && document.querySelectorAll('#workloads tbody tr:not(.spacer)').length > 20`)
	if got := eval[string](t, b, `document.querySelector('#count').textContent`); got != "(10000)" {
		t.Fatalf("count %q", got)
	}
}
