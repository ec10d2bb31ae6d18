package native

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native/artifacts"
	"github.com/nexrun/nex/pkg/runtime/native/health"
)

// StartRequest is the native nexlet's start request; schemas/nexlet-native/start_request.json
// is its one truth.
type StartRequest struct {
	URI         string            `json:"uri"`
	Argv        []string          `json:"argv,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Workdir     string            `json:"workdir,omitempty"`
	Stdin       *string           `json:"stdin,omitempty"`
	ExposePorts []int             `json:"expose_ports,omitempty"`
	Artifacts   []Artifact        `json:"artifacts,omitempty"`
	GracePeriod string            `json:"grace_period,omitempty"`
	Restart     *RestartPolicy    `json:"restart,omitempty"`
	Timeout     string            `json:"timeout,omitempty"`
	Retries     int               `json:"retries,omitempty"`
	Triggers    []string          `json:"triggers,omitempty"`
	Concurrency int               `json:"concurrency,omitempty"`
	// SHA256, when set, is the digest the executable a nats:// uri names must have.
	SHA256 string `json:"sha256,omitempty"`
	// Resources limits the workload's memory, CPU and processes (cgroups).
	Resources *v1.Resources `json:"resources,omitempty"`
	// Health is a service's health check.
	Health *HealthCheck `json:"health,omitempty"`
	// User and Group (names or numbers) run the workload as that user, when the nexlet
	// runs as root and allows it (nexlet-native --run-as).
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
}

// Artifact is a file fetched into the workdir before start (artifacts.Artifact).
type Artifact = artifacts.Artifact

// RestartPolicy tunes how a service is restarted after it exits.
type RestartPolicy struct {
	MaxRestarts  *int   `json:"max_restarts,omitempty"`
	InitialDelay string `json:"initial_delay,omitempty"`
	MaxDelay     string `json:"max_delay,omitempty"`
}

// parsed is a start request with its durations and executable path resolved.
type parsed struct {
	StartRequest
	path         string
	grace        time.Duration
	initialDelay time.Duration
	maxDelay     time.Duration
	maxRestarts  int // -1: forever
	timeout      time.Duration
	remoteExec   string // nats://bucket/object, fetched into the workdir before start
	health       *health.Parsed
}

// MinRestartDelay is the shortest delay between restarts a start request may ask for.
const MinRestartDelay = 100 * time.Millisecond

// fromDefinition takes what the definition gives first-class and the start request does
// not: a client may give a workload's resources, ports and grace period there only.
func (p *parsed) fromDefinition(def v1.WorkloadDefinition) {
	if p.Resources == nil && def.Resources != nil && !def.Resources.Empty() {
		r := *def.Resources
		p.Resources = &r
	}
	if len(p.ExposePorts) == 0 {
		p.ExposePorts = slices.Clone(def.ExposePorts)
	}
	if p.GracePeriod == "" && def.GracePeriod > 0 {
		p.grace = time.Duration(def.GracePeriod)
	}
}

func parseStartRequest(raw json.RawMessage, defaultGrace time.Duration) (*parsed, error) {
	var sr StartRequest
	if err := json.Unmarshal(raw, &sr); err != nil {
		return nil, v1.Errorf(v1.CodeSchemaInvalid, "%s", v1.InStartRequest(err, "start_request"))
	}
	p := &parsed{StartRequest: sr, grace: defaultGrace, initialDelay: time.Second, maxDelay: time.Minute, maxRestarts: -1}
	if strings.HasPrefix(sr.URI, "nats://") {
		p.remoteExec = sr.URI
	} else {
		path, err := executablePath(sr.URI)
		if err != nil {
			return nil, v1.Errorf(v1.CodeStartFailed, "start_request.uri: %v", err)
		}
		p.path = path
	}
	if err := parseDuration("grace_period", sr.GracePeriod, &p.grace); err != nil {
		return nil, err
	}
	p.grace = min(p.grace, time.Duration(v1.MaxGracePeriod)) // the node refuses more; a record kept from before is held to it
	if err := parseDuration("timeout", sr.Timeout, &p.timeout); err != nil {
		return nil, err
	}
	if r := sr.Restart; r != nil {
		if err := parseDuration("restart.initial_delay", r.InitialDelay, &p.initialDelay); err != nil {
			return nil, err
		}
		if err := parseDuration("restart.max_delay", r.MaxDelay, &p.maxDelay); err != nil {
			return nil, err
		}
		if r.MaxRestarts != nil {
			p.maxRestarts = *r.MaxRestarts
		}
		for field, d := range map[string]time.Duration{"restart.initial_delay": p.initialDelay, "restart.max_delay": p.maxDelay} {
			if d < MinRestartDelay {
				return nil, v1.Errorf(v1.CodeSchemaInvalid, "start_request.%s: %s is below the floor of %s (a crash loop that fast only burns CPU)", field, d, MinRestartDelay)
			}
		}
	}
	if p.maxDelay < p.initialDelay {
		p.maxDelay = p.initialDelay
	}
	if err := sr.Resources.Validate("start_request.resources"); err != nil {
		return nil, err
	}
	if sr.Resources.Empty() {
		p.Resources = nil
	}
	if sr.Workdir != "" && !filepath.IsAbs(sr.Workdir) {
		return nil, v1.Errorf(v1.CodeSchemaInvalid, "start_request.workdir: %q is not an absolute path", sr.Workdir)
	}
	return p, nil
}

// executablePath turns file:///abs/path into /abs/path. Whether the file can be run is
// checked later, as the workload's user (checkExecutable), and again by the kernel at exec.
func executablePath(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("%w %q: it does not parse", ErrBadURI, artifacts.Redacted(uri))
	}
	if u.Scheme != "file" || u.Host != "" || !filepath.IsAbs(u.Path) {
		return "", fmt.Errorf("%w %q: want file:///absolute/path", ErrBadURI, artifacts.Redacted(uri))
	}
	return filepath.Clean(u.Path), nil
}

func parseDuration(field, s string, dst *time.Duration) error {
	if s == "" {
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return v1.Errorf(v1.CodeSchemaInvalid, "start_request.%s: %q is not a duration like \"10s\"", field, s)
	}
	*dst = v
	return nil
}
