package main

import (
	"context"
	"fmt"
	"html"
	"net"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/nexrun/nex/internal/cli"
	"github.com/nexrun/nex/internal/console"
	"github.com/nexrun/nex/internal/version"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// UICmd runs the web console. It listens on a free port of 127.0.0.1 of the kernel's
// choosing unless told otherwise: a page that a listener on a port known in advance had
// the operator's browser open before the console ran there is in the console's origin
// (a review read the key through such a page the browser had cached; the page's random
// path stops that, and an unknown port makes any such page, a service worker's
// included, a guess among thousands).
type UICmd struct {
	Listen string `name:"listen" default:"127.0.0.1:0" help:"Address to serve the console on (host:port; port 0: a free one, which the URL names). A non-loopback address lets other machines reach it: a warning is printed."`
	NoOpen bool   `name:"no-open" help:"Do not open a browser; print the URL only."`
}

// Run serves the console until interrupted.
func (c *UICmd) Run(ctx context.Context, g *cli.Globals) error {
	if err := v1.ValidateNamespace(g.Namespace); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port (e.g. 127.0.0.1:8077, or 127.0.0.1:0 for a free port): %w", c.Listen, err)
	}
	nc, err := g.Connect()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.Listen, err)
	}
	addr := ln.Addr().String()
	srv, err := console.New(console.Config{Conn: nc, Namespace: g.Namespace, Version: version.String()}, addr)
	if err != nil {
		ln.Close()
		return err
	}
	if !console.IsLoopback(addr) {
		shown := addr // as the user gave it: Go names 0.0.0.0's listener [::]
		if host, _, err := net.SplitHostPort(c.Listen); err == nil {
			_, port, _ := net.SplitHostPort(addr)
			shown = net.JoinHostPort(host, port)
		}
		fmt.Fprintf(g.Stderr(), "nex: warning: the console listens on %s, reachable from other machines: whoever has its URL acts with your NATS credentials, over plain HTTP\n", shown)
	}
	url := srv.URL(addr)
	fmt.Fprintf(g.Stdout(), "nex console for namespace %s: %s\n(the URL holds the session key; Ctrl+C stops the console)\n", g.Namespace, url)
	if !c.NoOpen {
		local := url // on every address: this machine's browser asks localhost, which always resolves here
		if host := console.URLHost(addr); host != addr {
			_, port, _ := net.SplitHostPort(addr)
			local = srv.URL(net.JoinHostPort("localhost", port))
		}
		defer openBrowser(g, local)()
	}
	return srv.Serve(ctx, ln)
}

// openBrowser opens url with xdg-open when there is a display to open it on, and returns
// what removes what it left. The URL holds the session key, and a process's arguments are
// every local user's to read (/proc/<pid>/cmdline): another user of the machine read the
// key from xdg-open's and drove the operator's console (a review's walk). So xdg-open is
// given a page of the user's own (0600, in a directory of 0700) that sends the browser on
// to the URL, as Jupyter does.
func openBrowser(g *cli.Globals, url string) func() {
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return func() {}
	}
	path, err := exec.LookPath("xdg-open")
	if err != nil {
		return func() {}
	}
	dir, err := os.MkdirTemp(os.Getenv("XDG_RUNTIME_DIR"), "nex-ui-") // 0700
	if err != nil {
		fmt.Fprintln(g.Stderr(), "nex: could not open a browser:", err)
		return func() {}
	}
	done := func() { _ = os.RemoveAll(dir) }
	page := filepath.Join(dir, "open.html")
	quoted := html.EscapeString(url)
	body := `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=` + quoted + `"><title>nex console</title><a href="` + quoted + `">Open the nex console</a>`
	if err := os.WriteFile(page, []byte(body), 0o600); err != nil {
		fmt.Fprintln(g.Stderr(), "nex: could not open a browser:", err)
		return done
	}
	cmd := exec.Command(path, "file://"+page)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(g.Stderr(), "nex: could not open a browser:", err)
		return done
	}
	go func() { _ = cmd.Wait() }()
	return done
}
