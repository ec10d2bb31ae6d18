// Package health runs the health checks of the native runtime's services: it reads a
// start request's check (Parse) and runs it against each attempt of the service (Watch),
// by TCP, HTTP or an exec the caller runs as the workload. It keeps no state beyond each
// Watch's own goroutine.
package health

import (
	"path"
	"strings"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Check is a service's health check (start_request.health): one of Exec, HTTP and
// TCP, run every Interval; Failures failed checks in a row make the service unhealthy and
// it is restarted per its restart policy. Failures within StartPeriod do not count.
type Check struct {
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
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 2 * time.Second
	DefaultFailures = 3
	MinInterval     = 100 * time.Millisecond
	firstCheckAfter = time.Second // or the interval, when shorter
)

// Parsed is a Check with its durations read.
type Parsed struct {
	Check
	interval, timeout, startPeriod time.Duration
}

// Parse checks hc (a service's health check; nil: none) and reads its durations with
// duration (as the rest of the start request's are read).
func Parse(hc *Check, lifecycle string, duration func(field, s string, dst *time.Duration) error) (*Parsed, error) {
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
	case hc.Exec != nil && (len(hc.Exec.Argv) == 0 || !strings.HasPrefix(hc.Exec.Argv[0], "/") || path.Clean(hc.Exec.Argv[0]) != hc.Exec.Argv[0]):
		return nil, bad(".exec.argv: give the command as a clean absolute path (no . or .. parts, no //) and its arguments, like [\"/bin/test\", \"-f\", \"ready\"]")
	case hc.HTTP != nil && (hc.HTTP.Port < 1 || hc.HTTP.Port > 65535):
		return nil, bad(".http.port: %d is not a port (1-65535)", hc.HTTP.Port)
	case hc.HTTP != nil && hc.HTTP.Path != "" && !strings.HasPrefix(hc.HTTP.Path, "/"):
		return nil, bad(".http.path: %q does not start with /", hc.HTTP.Path)
	case hc.TCP != nil && (hc.TCP.Port < 1 || hc.TCP.Port > 65535):
		return nil, bad(".tcp.port: %d is not a port (1-65535)", hc.TCP.Port)
	}
	h := &Parsed{Check: *hc, interval: DefaultInterval, timeout: DefaultTimeout}
	if err := duration("health.interval", hc.Interval, &h.interval); err != nil {
		return nil, err
	}
	if err := duration("health.timeout", hc.Timeout, &h.timeout); err != nil {
		return nil, err
	}
	if err := duration("health.start_period", hc.StartPeriod, &h.startPeriod); err != nil {
		return nil, err
	}
	if h.interval < MinInterval {
		return nil, bad(".interval: %s is below the floor of %s", h.interval, MinInterval)
	}
	if h.timeout <= 0 {
		return nil, bad(".timeout: must be more than 0")
	}
	switch {
	case hc.Failures < 0:
		return nil, bad(".failures: %d is negative", hc.Failures)
	case hc.Failures == 0:
		h.Failures = DefaultFailures
	}
	return h, nil
}
