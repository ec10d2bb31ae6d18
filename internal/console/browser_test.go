package console

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium: a test without it skips, except in CI (CI set),
// where .ci/run installs it and its absence is a failure.
func chromiumPath(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{os.Getenv("NEX_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		tb.Fatal("no chromium at /usr/bin/chromium: .ci/run installs Debian's chromium package; the browser tests need it")
	}
	tb.Skip("no chromium at /usr/bin/chromium (apt-get install chromium); skipping the browser tests")
	return ""
}

// browser is a tab of a headless Chromium of the test's own (a fresh profile, no network
// beyond what the page asks for), closed and killed when the test ends. Each dialog is
// accepted (the console's confirm()); alerts counts the alerts among them.
type browser struct {
	ctx    context.Context
	alerts atomic.Int32
}

func newBrowser(tb testing.TB) *browser {
	tb.Helper()
	path := chromiumPath(tb)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(tb.TempDir()), chromedp.WindowSize(1360, 860))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tb.Cleanup(func() { cancel(); acancel() }) // closes the tab, then kills the browser and waits for it
	// the first Do starts the browser, bound to the context it is given: not one with a timeout
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	b := &browser{ctx: ctx}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			if ev.Type == page.DialogTypeAlert {
				b.alerts.Add(1)
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return b
}

// do runs actions, failing the test after timeout.
func (b *browser) do(tb testing.TB, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates expr.
func eval[T any](tb testing.TB, b *browser, expr string, opts ...chromedp.EvaluateOption) T {
	tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		tb.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitTrue polls expr in the page until it is true, failing after timeout.
func (b *browser) waitTrue(tb testing.TB, timeout time.Duration, what, expr string) time.Duration {
	tb.Helper()
	begin := time.Now()
	deadline := begin.Add(timeout)
	for {
		if eval[bool](tb, b, "Boolean("+expr+")") {
			return time.Since(begin)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s (%s)", timeout, what, expr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// screenshot writes the page (the viewport, or all of it) as name.png into
// $NEX_ARTIFACTS (default: a temporary directory).
func (b *browser) screenshot(tb testing.TB, name string, whole bool) string {
	tb.Helper()
	dir := os.Getenv("NEX_ARTIFACTS")
	if dir == "" {
		dir = tb.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	shot := chromedp.CaptureScreenshot()
	if whole {
		shot = chromedp.FullScreenshot(100) // quality 100: PNG
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		tb.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("screenshot %s (%d KB)", path, len(png)/1024)
	return path
}
