package native

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
)

// HealthCheck is a service's health check (start_request.health): one of Exec, HTTP and
// TCP, run every Interval; Failures failed checks in a row make the service unhealthy and
// it is restarted per its restart policy. Failures within StartPeriod do not count.
type HealthCheck struct {
	Exec        *ExecCheck `json:"exec,omitempty"`
	HTTP        *HTTPCheck `json:"http,omitempty"`
	TCP         *TCPCheck  `json:"tcp,omitempty"`
	Interval    string     `json:"interval,omitempty"`
	Timeout     string     `json:"timeout,omitempty"`
	Failures    int        `json:"failures,omitempty"`
	StartPeriod string     `json:"start_period,omitempty"`
}

// ExecCheck passes when argv exits 0; it runs as the workload, in its workdir.
type ExecCheck struct {
	Argv []string `json:"argv"`
}

// HTTPCheck passes on a 2xx or 3xx answer to GET http://127.0.0.1:Port/Path.
type HTTPCheck struct {
	Port int    `json:"port"`
	Path string `json:"path,omitempty"`
}

// TCPCheck passes when 127.0.0.1:Port accepts a connection.
type TCPCheck struct {
	Port int `json:"port"`
}

// Health check defaults.
const (
	DefaultHealthInterval = 10 * time.Second
	DefaultHealthTimeout  = 2 * time.Second
	DefaultHealthFailures = 3
	MinHealthInterval     = 100 * time.Millisecond
	firstCheckAfter       = time.Second // or the interval, when shorter
)

// healthCheck is a parsed HealthCheck.
type healthCheck struct {
	HealthCheck
	interval, timeout, startPeriod time.Duration
}

func parseHealth(hc *HealthCheck, lifecycle string) (*healthCheck, error) {
	if hc == nil {
		return nil, nil
	}
	bad := func(format string, args ...any) error {
		return v1.Errorf(v1.CodeSchemaInvalid, "start_request.health"+format, args...)
	}
	if lifecycle != v1.LifecycleService {
		return nil, bad(": only a service has a health check, not a %s", lifecycle)
	}
	kinds := 0
	for _, set := range []bool{hc.Exec != nil, hc.HTTP != nil, hc.TCP != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return nil, bad(": give exactly one of exec, http and tcp")
	}
	switch {
	case hc.Exec != nil && (len(hc.Exec.Argv) == 0 || !strings.HasPrefix(hc.Exec.Argv[0], "/")):
		return nil, bad(".exec.argv: give the command as an absolute path and its arguments, like [\"/bin/test\", \"-f\", \"ready\"]")
	case hc.HTTP != nil && (hc.HTTP.Port < 1 || hc.HTTP.Port > 65535):
		return nil, bad(".http.port: %d is not a port (1-65535)", hc.HTTP.Port)
	case hc.HTTP != nil && hc.HTTP.Path != "" && !strings.HasPrefix(hc.HTTP.Path, "/"):
		return nil, bad(".http.path: %q does not start with /", hc.HTTP.Path)
	case hc.TCP != nil && (hc.TCP.Port < 1 || hc.TCP.Port > 65535):
		return nil, bad(".tcp.port: %d is not a port (1-65535)", hc.TCP.Port)
	}
	h := &healthCheck{HealthCheck: *hc, interval: DefaultHealthInterval, timeout: DefaultHealthTimeout}
	if err := parseDuration("health.interval", hc.Interval, &h.interval); err != nil {
		return nil, err
	}
	if err := parseDuration("health.timeout", hc.Timeout, &h.timeout); err != nil {
		return nil, err
	}
	if err := parseDuration("health.start_period", hc.StartPeriod, &h.startPeriod); err != nil {
		return nil, err
	}
	if h.interval < MinHealthInterval {
		return nil, bad(".interval: %s is below the floor of %s", h.interval, MinHealthInterval)
	}
	if h.timeout <= 0 {
		return nil, bad(".timeout: must be more than 0")
	}
	switch {
	case hc.Failures < 0:
		return nil, bad(".failures: %d is negative", hc.Failures)
	case hc.Failures == 0:
		h.Failures = DefaultHealthFailures
	}
	return h, nil
}

// runningState is the state of a service whose process just started: starting until its
// first passing check when it has one. Caller holds h.mu.
func (h *handle) runningState() string {
	if h.sr.health != nil {
		h.health = v1.WorkloadHealthStarting
		return v1.StateStarting
	}
	return v1.StateRunning
}

// checkHealth runs the service's health check against the attempt whose process is pid,
// until the returned function is called. After `failures` failed checks in a row it marks
// the service unhealthy and ends the attempt (SIGTERM, the grace period, SIGKILL), so the
// run loop restarts it per its policy.
func (h *handle) checkHealth(pid int) (stop func()) {
	hc := h.sr.health
	if hc == nil {
		return func() {}
	}
	done, ended := make(chan struct{}), make(chan struct{})
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
			err := h.probe(hc)
			select {
			case <-done: // the attempt ended during the check: its verdict is moot
				return
			default:
			}
			switch {
			case err == nil:
				fails = 0
				if !passed || h.healthIs(v1.WorkloadHealthUnhealthy) {
					h.setHealth(v1.WorkloadHealthHealthy)
					h.event(v1.EventHealthy, nil, "")
				}
				passed = true
			case !passed && time.Since(began) < hc.startPeriod:
				// still starting: failures do not count yet
			default:
				fails++
				if fails >= hc.Failures {
					msg := fmt.Sprintf("%d health %s failed in a row; last: %v", fails, plural(fails, "check", "checks"), err)
					h.setHealth(v1.WorkloadHealthUnhealthy)
					h.mu.Lock()
					h.lastError = msg
					h.mu.Unlock()
					h.event(v1.EventUnhealthy, nil, msg)
					h.log.Warn("service unhealthy: restarting it per its policy", zap.Error(err))
					h.killedUnhealthy.Store(true)
					spawn.KillGroup(pid, syscall.SIGTERM)
					kill := time.NewTimer(h.sr.grace)
					select {
					case <-done:
					case <-kill.C:
						spawn.KillGroup(pid, syscall.SIGKILL)
						h.cg.Kill()
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

func (h *handle) healthIs(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.health == s
}

// setHealth records the verdict; the first pass turns a starting service running.
func (h *handle) setHealth(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.health = s
	if s == v1.WorkloadHealthHealthy && h.state == v1.StateStarting {
		h.state = v1.StateRunning
	}
}

// probe runs one check: nil when it passes.
func (h *handle) probe(hc *healthCheck) error {
	ctx, cancel := context.WithTimeout(context.Background(), hc.timeout)
	defer cancel()
	switch {
	case hc.TCP != nil:
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(hc.TCP.Port)))
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
		resp, err := healthClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s answered %s", path, resp.Status)
		}
		return nil
	default:
		return h.execProbe(ctx, hc.Exec.Argv)
	}
}

// healthClient follows no redirects (a 3xx passes) and keeps no connections.
var healthClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableKeepAlives: true},
}

// runBeside runs argv beside the workload, as the workload (its user, a sandbox of its
// own, its workdir, environment and cgroup): a health check's exec and nex workload exec.
// Its process group is killed when ctx ends, and at the latest when it exits.
func (h *handle) runBeside(ctx context.Context, argv []string, stdout, stderr io.Writer, tty *os.File) (syscall.WaitStatus, error) {
	s := spawn.Spec{Path: argv[0], Argv: argv[1:], Dir: h.wd.Path, Env: h.environment(), Attr: h.procAttr(), NoNewPrivs: h.identity() != nil, Stdout: stdout, Stderr: stderr, TTY: tty, Cgroup: h.cg}
	h.sandboxed(&s) // it sees what the workload sees, no more
	c, err := spawn.Start(s)
	if tty != nil {
		_ = tty.Close() // the command has it; the master reads EIO once the command's side is closed
	}
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { spawn.KillGroup(c.Pid, syscall.SIGKILL) })
	ws := c.Wait()
	stop()
	spawn.KillGroup(c.Pid, syscall.SIGKILL)
	return ws, nil
}

// execProbe runs argv as the workload (its user, sandbox, workdir, environment and cgroup).
func (h *handle) execProbe(ctx context.Context, argv []string) error {
	var out limitedBuffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	ws, err := h.runBeside(ctx, argv, w, w, nil)
	if err != nil {
		return fmt.Errorf("run %s: %v", argv[0], err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s timed out", argv[0])
	}
	if code := spawn.StatusCode(ws); code != 0 {
		mu.Lock()
		last := lastLine(out.String())
		mu.Unlock()
		if last != "" {
			return fmt.Errorf("%s exited %d: %s", argv[0], code, last)
		}
		return fmt.Errorf("%s exited %d", argv[0], code)
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// lastLine is the last non-empty line of s, at most 200 bytes.
func lastLine(s string) string {
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
