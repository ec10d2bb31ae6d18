// Package nodeflags holds nexd's flags (`nex node up` takes the same ones) and their
// checks: light enough for the nex CLI, which links neither the node nor the server.
package nodeflags

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nexrun/nex/internal/hostusers"
	"github.com/nexrun/nex/internal/proc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Options are nexd's flags; `nex node up` takes the same ones.
type Options struct {
	Embedded           bool              `name:"embedded" help:"Start an embedded nats-server (JetStream on, store in the data dir)."`
	EmbeddedListen     string            `name:"embedded.listen" default:"127.0.0.1:4222" help:"Listen address of the embedded nats-server."`
	InatsConfig        string            `name:"inats-config" type:"existingfile" help:"Start an embedded nats-server from this nats-server config file."`
	NodeSeed           string            `name:"node-seed" env:"NEX_NODE_SEED" help:"Node identity: a file holding an nkey server seed (SN...), or the seed in $NEX_NODE_SEED (never on the command line). Default: generated and kept in the data dir."`
	DataDir            string            `name:"data-dir" help:"Where the node keeps its identity, JetStream store and workload directories (default ~/.local/share/nex, or /var/lib/nex as root)."`
	NodeName           string            `name:"node-name" help:"Human name of the node (default: the host name)."`
	Nexus              string            `name:"nexus" default:"nexus" help:"Name of the group of nodes this node belongs to."`
	Tags               map[string]string `name:"tags" mapsep:"," help:"Node tags k=v (repeatable, or comma-separated); the nex. prefix is reserved."`
	DisableNativeStart bool              `name:"disable-native-start" help:"Do not start the bundled nexlet-native."`
	Nexlets            Nexlets           `name:"nexlets" aliases:"agents" help:"Local nexlets to start and supervise, as JSON {\"name\",\"uri\",\"argv\",\"env\"} (repeatable; --agents, its old spelling, still works)."`
	NexletRestartLimit int               `name:"nexlet-restart-limit" aliases:"agent-restart-limit" default:"3" help:"Failures in a row after which a nexlet is not restarted again (0: never give up; --agent-restart-limit, its old spelling, still works)."`
	AllowRemoteNexlets bool              `name:"allow-remote-nexlets" aliases:"allow-remote-agent-registration" help:"Accept nexlets running on other machines (--allow-remote-agent-registration, its old spelling, still works)."`
	State              string            `name:"state" default:"auto" enum:"auto,memory,kv,local" help:"Where workload records live: kv (JetStream KV), local (files in the data dir), memory (lost when nexd stops), or auto (kv when JetStream is there, else local)."`
	NodeLossWindow     time.Duration     `name:"node-loss-window" default:"10s" help:"With --state kv: how long a node may go unheard before the cluster starts its services, functions and unfinished jobs on other nodes (also the coordinator lease's period); at least 3s."`
	StateCreds         string            `name:"state.creds-file" env:"NEX_STATE_CREDS_FILE" help:"NATS credentials of an account no tenant is in (nex security init makes state.creds): the node keeps its state, leases and secrets there. In the account its tenants are in, a tenant can have JetStream write its answers over any of them. Give every node the same; the first node started with it moves the state over."`
	StateReplicas      int               `name:"state-replicas" default:"1" help:"Replicas of the JetStream KV state bucket (3 on a 3-server cluster)."`
	WorkloadUIDs       string            `name:"workload-uids" default:"auto" env:"NEX_WORKLOAD_UIDS" help:"nexlet-native runs each workload as a user of its own from this UID range (FIRST-LAST, at least two UIDs: one is nexlet-native's own; needs root); 'none' runs them as the node's user; 'auto' (default): 200000-265535 when root, else none."`
	Cgroups            string            `name:"cgroups" default:"auto" enum:"auto,none" env:"NEX_CGROUPS" help:"nexlet-native enforces the resource limits workloads ask for with cgroups ('auto'), or refuses workloads with limits ('none')."`
	RunAs              []string          `name:"run-as" default:"none" env:"NEX_RUN_AS" help:"Who each namespace's workloads may ask nexlet-native to run as (start_request.user, .group; root only): NS=NAME entries, a user or a group by name or number (* for every namespace, never root or an ID below 1000), or 'none'."`
	DefaultLimits      string            `name:"default-limits" env:"NEX_DEFAULT_LIMITS" help:"Resource limits nexlet-native gives a workload that asks for none, e.g. memory=512MiB,cpu=1,pids=1024,disk=1GiB (each resource on its own; memory, cpu and pids need cgroups)."`
	MaxLimits          string            `name:"max-limits" env:"NEX_MAX_LIMITS" help:"The most resources a workload may ask for, e.g. memory=8GiB,cpu=4,pids=16384,disk=20GiB: a start above is declined, naming the field and the ceiling."`
	NamespaceQuota     []string          `name:"namespace-quota" sep:";" env:"NEX_NAMESPACE_QUOTA" help:"What a namespace may run across the cluster: NS=workloads=N,memory=SIZE,cpu=CORES (repeatable, or ';'-separated; NS '*' for every namespace but system without its own). A start past it is refused with quota_exceeded; workloads that ended count as workloads until removed; with a memory or cpu quota every start must ask for that resource or get it from --default-limits. Give every node the same."`
	CacheMaxBytes      string            `name:"cache-max-bytes" env:"NEX_CACHE_MAX_BYTES" default:"1GiB" help:"Most bytes of fetched artifacts (http, nats://) nexlet-native keeps, least recently used dropped first; half of it is the largest one download, and the most one namespace's downloads in flight hold."`
	OutputRate         string            `name:"output-rate" env:"NEX_OUTPUT_RATE" help:"Most bytes a second each workload's stdout, and its stderr, may write, each line counting 32 bytes more, e.g. 4MiB (a second's worth passes at once); past it the workload's writes wait, as on a full pipe (nexlet-native's CPU for a workload's output is the node's, outside the workload's limits). Default: no bound."`
	WorkdirRoots       []string          `name:"workdir-roots" env:"NEX_WORKDIR_ROOTS" help:"Directories under which a start request may name its own workdir (absolute). Default: none when workloads run as users of their own; anywhere outside the data dir when they run as the node's user."`
	RequireIsolation   []string          `name:"require-isolation" sep:"," help:"Namespaces ('*': all) whose workloads this node runs only as users of their own (nex.isolation=uid); it declines them otherwise, saying why."`
	Memory             string            `name:"memory" env:"NEX_MEMORY" help:"Memory the node offers workloads, its reserve included, e.g. 8GiB (default: the machine's, MemTotal of /proc/meminfo); it declines starts whose resources.memory do not fit."`
	CPUs               float64           `name:"cpus" env:"NEX_CPUS" help:"CPU cores the node offers workloads, its reserve included, e.g. 2.5 (default: the machine's); it declines starts whose resources.cpu do not fit."`
	ReserveMemory      string            `name:"reserve-memory" env:"NEX_RESERVE_MEMORY" default:"256MiB" help:"Memory kept back for nexd, its nexlets and the system: workloads' requests are placed in the rest."`
	ReserveCPU         float64           `name:"reserve-cpu" env:"NEX_RESERVE_CPU" default:"0" help:"CPU cores kept back for nexd, its nexlets and the system."`
	Placement          string            `name:"placement" env:"NEX_PLACEMENT" default:"least-loaded" enum:"least-loaded,random" help:"How the node bids: least-loaded (its bids carry its load, and the least loaded node wins) or random (they carry none: it wins at random)."`
	NexletNativePath   string            `name:"nexlet-native-path" type:"path" help:"Path of nexlet-native (default: beside nexd, else on PATH)."`
	ShowWorkloadLogs   bool              `name:"show-workload-logs" default:"false" help:"Also print workload output in the node's log."`
	LogsHistory        bool              `name:"logs.history" default:"true" negatable:"" help:"Keep workload output and events in JetStream streams, two per namespace (NEX_LOGS_<ns>, NEX_EVENTS_<ns>), for nex workload logs and nex events."`
	LogsMaxAge         time.Duration     `name:"logs.max-age" default:"24h" help:"How long output is kept."`
	LogsMaxBytes       int64             `name:"logs.max-bytes" default:"134217728" help:"Most bytes of output kept per namespace (oldest dropped first; reserved in the JetStream store for each namespace)."`
	EventsMaxAge       time.Duration     `name:"events.max-age" default:"168h" help:"How long events are kept."`
	EventsMaxBytes     int64             `name:"events.max-bytes" default:"16777216" help:"Most bytes of events kept per namespace (oldest dropped first; reserved like --logs.max-bytes)."`
	BundlesMaxBytes    int64             `name:"bundles.max-bytes" default:"268435456" help:"Most bytes of bundles each namespace's bucket NEX_BUNDLES_<ns> may hold (reserved in the JetStream store for each namespace that bundles)."`
	MetricsListen      string            `name:"metrics.listen" help:"Serve Prometheus metrics on this address (e.g. 127.0.0.1:9090)."`
	IssuerSigningKey   string            `name:"issuer-signing-key" env:"NEX_ISSUER_SIGNING_KEY" help:"A file holding an account signing key seed (SA...), or the seed in $NEX_ISSUER_SIGNING_KEY: mint scoped credentials for workloads and nexlets."`
	IssuerRootAccount  string            `name:"issuer-signing-key-root-account" help:"Public key (A...) of the account the signing key belongs to."`
	IssuerNKey         string            `name:"issuer-nkey" help:"Account public key (A...) whose own seed signs credentials (with --issuer-nkey-seed)."`
	IssuerNKeySeed     string            `name:"issuer-nkey-seed" env:"NEX_ISSUER_NKEY_SEED" help:"A file holding the seed (SA...) of --issuer-nkey, or the seed in $NEX_ISSUER_NKEY_SEED."`
	WorkloadCredsTTL   time.Duration     `name:"workload-creds-ttl" default:"1h" help:"How long workload credentials are valid; they are renewed at a third of that while the workload runs, and run out after it stops."`
	NexletCredsTTL     time.Duration     `name:"nexlet-creds-ttl" default:"24h" help:"How long the credentials of local nexlets are valid; nexd renews them while it runs."`
	SecretsKey         string            `name:"secrets-key" env:"NEX_SECRETS_KEY" help:"A file holding a curve key seed (SX...), or the seed in $NEX_SECRETS_KEY, the same on every node: serves the namespace secret store (secret://NAME)."`
	NexletWait         time.Duration     `name:"nexlet-wait" default:"10s" help:"How long to wait for nexlet-native to register."`
	ShutdownTimeout    time.Duration     `name:"shutdown-timeout" default:"30s" help:"Bound on a graceful shutdown."`
	FinishedRetention  time.Duration     `name:"finished-retention" default:"24h" help:"How long a workload that ended for good (a job that ran, a service that gave up) stays listed before it is removed with its workdir (0: until nex workload rm)."`
	StartupWait        time.Duration     `name:"startup-wait" default:"5m" help:"How long to wait at start for the NATS servers given and for JetStream (leader elections, buckets other nodes are creating) before giving up (0: try once)."`
	LogLevel           string            `name:"log-level" default:"info" enum:"debug,info,warn,error" help:"Log level (debug, info, warn, error)."`
	LogJSON            bool              `name:"log-json" help:"Log as JSON lines."`
}

// seedFlags are the flags that name a secret key: a file, or the key in an environment
// variable, never the key itself on a command line.
var seedFlags = map[string]string{
	"--node-seed":          "NEX_NODE_SEED",
	"--issuer-signing-key": "NEX_ISSUER_SIGNING_KEY",
	"--issuer-nkey-seed":   "NEX_ISSUER_NKEY_SEED",
	"--secrets-key":        "NEX_SECRETS_KEY",
}

// RefuseSeedArgs fails when args carry a seed itself (S...) for one of the key flags:
// every user of the machine can read a process's arguments (ps, /proc/<pid>/cmdline).
func RefuseSeedArgs(args []string) error {
	for i, a := range args {
		flag, value, inline := strings.Cut(a, "=")
		env, ok := seedFlags[flag]
		if !ok {
			continue
		}
		if !inline {
			if i+1 >= len(args) {
				continue
			}
			value = args[i+1]
		}
		if looksLikeSeed(value) {
			return fmt.Errorf("%s: a seed on the command line can be read by every user of this machine (ps, /proc/<pid>/cmdline); put it in a file readable only by nexd (%s /etc/nex/key.seed) or in $%s", flag, flag, env)
		}
	}
	return nil
}

// checkListen refuses an --embedded.listen that is not HOST:PORT with a port from 0 to
// 65535, or -1 ("": the default). Port 99999 was taken for a port in use.
func checkListen(listen string) error {
	if listen == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--embedded.listen %q: want HOST:PORT, like 127.0.0.1:4222", listen)
	}
	if n, err := strconv.Atoi(port); err != nil || n < -1 || n > 65535 { // -1: any free port, as nats-server has it
		return fmt.Errorf("--embedded.listen %q: the port must be a number from 0 to 65535 (or -1: any free one)", listen)
	}
	return nil
}

// EmbeddedURL is the URL the node connects to when it starts a nats-server of its own
// (--embedded or --inats-config: the node then ignores --server and any context), as the
// server's ClientURL will say it; false when it starts none.
func (o Options) EmbeddedURL() (string, bool) {
	switch {
	case o.InatsConfig != "":
		return "the listen address in " + o.InatsConfig, true
	case !o.Embedded:
		return "", false
	}
	host, port, err := net.SplitHostPort(o.EmbeddedListen)
	if err != nil {
		return "", false // Check says what is wrong with it
	}
	if port == "-1" {
		return "nats://" + net.JoinHostPort(host, "PORT") + " (a free port chosen at start)", true
	}
	return "nats://" + net.JoinHostPort(host, port), true
}

// looksLikeSeed tells an nkey seed (S, then the key type, then base32) from a file path.
func looksLikeSeed(v string) bool {
	return len(v) > 2 && v[0] == 'S' && !strings.ContainsAny(v, "/.")
}

// Check refuses option values that would only fail later, in a nexlet, or quietly.
func (o Options) Check() error {
	switch o.WorkloadUIDs {
	case "auto", "none", "":
	default:
		if _, err := hostusers.ParseUIDRange(o.WorkloadUIDs); err != nil {
			return fmt.Errorf("--workload-uids: %w (or auto, or none)", err)
		}
	}
	if p, err := hostusers.ParseRunAs(o.RunAs); err != nil {
		return err
	} else if err := p.Check(); err != nil {
		return err
	}
	for flag, v := range map[string]string{"--default-limits": o.DefaultLimits, "--max-limits": o.MaxLimits} {
		if _, err := v1.ParseResources(v); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
	}
	if b, err := v1.ParseByteSize(o.CacheMaxBytes); o.CacheMaxBytes != "" && (err != nil || b <= 0) {
		return fmt.Errorf("--cache-max-bytes %q: want a size like 1GiB", o.CacheMaxBytes)
	}
	if _, err := v1.ParseByteSize(o.OutputRate); o.OutputRate != "" && err != nil {
		return fmt.Errorf("--output-rate %q: want a size a second like 4MiB, or 0", o.OutputRate)
	}
	defaults, _ := v1.ParseResources(o.DefaultLimits)
	ceiling, _ := v1.ParseResources(o.MaxLimits)
	var none *v1.Resources
	if _, err := none.WithLimits(defaults, ceiling, "--default-limits"); err != nil {
		return err // the nexlet would refuse to start, again and again
	}
	if _, err := v1.ParseQuotas(o.NamespaceQuota); err != nil {
		return err
	}
	if o.StateCreds != "" {
		if _, err := os.Stat(o.StateCreds); err != nil {
			return fmt.Errorf("--state.creds-file: %w", err)
		}
		if o.State == "memory" || o.State == "local" {
			return fmt.Errorf("--state.creds-file is for JetStream KV state: not with --state %s", o.State)
		}
	}
	for _, r := range o.WorkdirRoots {
		if !filepath.IsAbs(r) {
			return fmt.Errorf("--workdir-roots %q: want an absolute path", r)
		}
	}
	for _, ns := range o.RequireIsolation {
		if ns == "*" {
			continue
		}
		if err := v1.ValidateNamespace(ns); err != nil {
			return fmt.Errorf("--require-isolation: %w", err)
		}
	}
	if o.NodeLossWindow < 0 || (o.NodeLossWindow > 0 && o.NodeLossWindow < 3*time.Second) {
		return fmt.Errorf("--node-loss-window %s: nodes announce themselves every 2 s, so a window under 3 s would take live nodes for lost", o.NodeLossWindow)
	}
	if _, _, err := o.MemoryOffered(); err != nil {
		return err
	}
	for flag, v := range map[string]float64{"--cpus": o.CPUs, "--reserve-cpu": o.ReserveCPU} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s %v: want a number of cores, like 2 or 0.5 (0, or leaving it out: the default)", flag, v)
		}
	}
	if cpus := cmp.Or(o.CPUs, float64(runtime.NumCPU())); o.ReserveCPU >= cpus {
		return fmt.Errorf("--reserve-cpu %v leaves nothing of the node's %v cores for workloads (--cpus, default the machine's)", o.ReserveCPU, cpus)
	}
	if err := o.checkNexlets(); err != nil {
		return err
	}
	if err := checkListen(o.EmbeddedListen); err != nil {
		return err
	}
	for flag, ttl := range map[string]time.Duration{"--workload-creds-ttl": o.WorkloadCredsTTL, "--nexlet-creds-ttl": o.NexletCredsTTL} {
		if ttl < time.Second && ttl != 0 {
			return fmt.Errorf("%s %s: credentials must last at least 1s", flag, ttl)
		}
	}
	return nil
}

// checkNexlets refuses two local nexlets with one name (one would take the other's
// workloads for a dead predecessor's and kill them) and an executable that is not there.
func (o Options) checkNexlets() error {
	names := map[string]bool{}
	if !o.DisableNativeStart {
		names["native"] = true
	}
	for _, a := range o.Nexlets {
		if names[a.Name] {
			if a.Name == "native" {
				return fmt.Errorf("--nexlets native: that is the bundled nexlet-native's name; give this one another (native-2), or --disable-native-start")
			}
			return fmt.Errorf("--nexlets %s: two nexlets of this node have that name", a.Name)
		}
		names[a.Name] = true
		path, err := a.Path()
		if err != nil {
			return fmt.Errorf("--nexlets %w", err)
		}
		if st, err := os.Stat(path); err != nil || !proc.Executable(st) {
			return fmt.Errorf("--nexlets %s: %s is not an executable file", a.Name, path)
		}
	}
	return nil
}

// memory reads --memory (0: the machine's) and --reserve-memory.
func (o Options) MemoryOffered() (total, reserve v1.ByteSize, err error) {
	if o.Memory != "" {
		if total, err = v1.ParseByteSize(o.Memory); err != nil {
			return 0, 0, fmt.Errorf("--memory: %w", err)
		}
		if total == 0 {
			return 0, 0, fmt.Errorf("--memory %s: a node offering no memory could run nothing that asks for some (leave the flag out for the machine's)", o.Memory)
		}
	}
	if o.ReserveMemory != "" {
		if reserve, err = v1.ParseByteSize(o.ReserveMemory); err != nil {
			return 0, 0, fmt.Errorf("--reserve-memory: %w", err)
		}
	}
	if total > 0 && reserve >= total {
		return 0, 0, fmt.Errorf("--reserve-memory %s leaves nothing of --memory %s for workloads", reserve, total)
	}
	return total, reserve, nil
}
