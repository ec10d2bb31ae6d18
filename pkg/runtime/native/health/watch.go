package health

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nexrun/nex/pkg/runtime/native/asuser"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
)

// Hooks are what Watch does to the workload whose checks it runs.
type Hooks struct {
	// Exec runs an exec check's argv as the workload: nil when it passes.
	Exec func(ctx context.Context, argv []string) error
	// Pass is told of each passing check; first for the first of the attempt.
	Pass func(first bool)
	// Fail is told that the attempt failed its checks (msg says how, err the last
	// failure): its process group gets SIGTERM next.
	Fail func(msg string, err error)
	// Kill kills what is left of the attempt after the grace period.
	Kill func()
	// As is the workload's user, whose sockets a tcp or http check connects through (so
	// it reaches what the workload's own processes may, not what root may); nil: the
	// nexlet's own.
	As *asuser.Identity
}

// Watch runs hc against the attempt whose process is pid, until the returned function is
// called. After hc.Failures failed checks in a row it tells hooks.Fail and ends the
// attempt (SIGTERM, grace, SIGKILL and hooks.Kill), so the run loop restarts it per its
// policy. Failures within the start period do not count until a check has passed.
func Watch(hc *Parsed, pid int, grace time.Duration, hooks Hooks) (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	client := checker(hooks.As)
	go func() {
		defer close(ended)
		began := time.Now()
		passed, fails := false, 0
		t := time.NewTimer(min(hc.interval, firstCheckAfter))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			err := probe(hc, hooks, client)
			select {
			case <-done: // the attempt ended during the check: its verdict is moot
				return
			default:
			}
			switch {
			case err == nil:
				fails = 0
				hooks.Pass(!passed)
				passed = true
			case !passed && time.Since(began) < hc.startPeriod:
				// still starting: failures do not count yet
			default:
				fails++
				if fails >= hc.Failures {
					msg := fmt.Sprintf("%d health %s failed in a row; last: %v", fails, plural(fails, "check", "checks"), err)
					hooks.Fail(msg, err)
					spawn.KillGroup(pid, syscall.SIGTERM)
					kill := time.NewTimer(grace)
					select {
					case <-done:
					case <-kill.C:
						spawn.KillGroup(pid, syscall.SIGKILL)
						hooks.Kill()
					}
					kill.Stop()
					return
				}
			}
			t.Reset(hc.interval)
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-ended }) }
}

// probe runs one check (an exec one through hooks.Exec, a tcp one through a socket of
// hooks.As, an http one through client): nil when it passes.
func probe(hc *Parsed, hooks Hooks, client *http.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), hc.timeout)
	defer cancel()
	switch {
	case hc.TCP != nil:
		c, err := asuser.Dial(ctx, hooks.As, &net.Dialer{}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(hc.TCP.Port)))
		if err != nil {
			return err
		}
		return c.Close()
	case hc.HTTP != nil:
		path := hc.HTTP.Path
		if path == "" {
			path = "/"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(hc.HTTP.Port))+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s answered %s", path, resp.Status)
		}
		return nil
	default:
		return hooks.Exec(ctx, hc.Exec.Argv)
	}
}

// checker is the client a watch's checks use: it connects through sockets of user as
// (asuser.Dial), follows no redirects (a 3xx passes) and keeps no connections.
func checker(as *asuser.Identity) *http.Client {
	var d net.Dialer
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return asuser.Dial(ctx, as, &d, network, addr)
		}},
	}
}

// LastLine is the last non-empty line of s, at most 200 bytes.
func LastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 200 {
		l = l[:200]
	}
	return l
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
