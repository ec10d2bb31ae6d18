package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nexrun/nex/internal/version"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/runtime/native"
	"github.com/nexrun/nex/pkg/runtime/native/uids"
)

// nexlet-native reads its flags with the standard library's flag package, not kong as
// nex and nexd do: kong looks methods up by name through reflection, which keeps the Go
// linker from dropping any unused exported method. That cost this process, which runs on
// every node, 3.8 MB of binary and 2.1 MiB of resident memory. Its flags are few, and
// nexd (or a unit file) writes them.

type cli struct {
	NodeID           string
	NexletID         string
	DataDir          string
	MaxWorkloads     int
	WorkloadUIDs     string
	UIDLockDir       string
	Cgroups          string
	RunAs            []string
	WorkdirRoots     []string
	DefaultLimits    string
	CacheMaxBytes    string
	OutputRate       string
	MaxLimits        string
	StopGrace        time.Duration
	ShowWorkloadLogs bool
	LogLevel         string
	LogJSON          bool
	NATS             natsconn.Options
}

// errHelp and errVersion end parsing with the usage or the version printed: exit 0.
var (
	errHelp    = flag.ErrHelp
	errVersion = errors.New("version")
)

// listFlag is a repeatable, comma-separated list; the first use replaces the default.
type listFlag struct {
	v   *[]string
	set bool
}

func (l *listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l *listFlag) Set(s string) error {
	if !l.set {
		*l.v, l.set = nil, true
	}
	*l.v = append(*l.v, splitList(s)...)
	return nil
}

// parseFlags reads args (without the program name), with the environment variables
// named in the usage as defaults. --help prints the usage to out and --version the
// version, and each then returns its error (errHelp, errVersion); the caller prints any
// other error.
func parseFlags(args []string, out io.Writer) (cli, error) {
	c := cli{
		NexletID: envOr(v1.EnvNexletID, "native"), WorkloadUIDs: envOr("NEX_WORKLOAD_UIDS", "auto"),
		UIDLockDir: uids.DefaultLockDir, Cgroups: envOr("NEX_CGROUPS", "auto"), RunAs: []string{"none"},
		StopGrace: 10 * time.Second, LogLevel: "info", NodeID: os.Getenv(v1.EnvNodeID),
	}
	if v := splitList(os.Getenv("NEX_RUN_AS")); len(v) > 0 {
		c.RunAs = v
	}
	fs := flag.NewFlagSet("nexlet-native", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are the caller's to print, once
	for _, name := range []string{"node-id", "node"} {
		fs.StringVar(&c.NodeID, name, c.NodeID, "ID of the node to register with ($NEX_NODE_ID; required).")
	}
	fs.StringVar(&c.NexletID, "nexlet-id", c.NexletID, "ID of this nexlet on its node ($NEX_NEXLET_ID).")
	fs.StringVar(&c.DataDir, "data-dir", "", "Where workload directories live (default <nex data dir>/native).")
	fs.IntVar(&c.MaxWorkloads, "max-workloads", 0, "Most workloads at once (0: no limit).")
	fs.StringVar(&c.WorkloadUIDs, "workload-uids", c.WorkloadUIDs, "Run each workload as a user of its own from this UID range (FIRST-LAST, at least two UIDs: one is this nexlet's own; needs root), 'none' to run them as this process's user, or 'auto': the range "+native.DefaultUIDs+" when root, else none ($NEX_WORKLOAD_UIDS).")
	fs.StringVar(&c.UIDLockDir, "uid-lock-dir", c.UIDLockDir, "Where the nexlets of this machine lock the workload UIDs they use.")
	fs.StringVar(&c.Cgroups, "cgroups", c.Cgroups, "auto|none: enforce the resource limits workloads ask for with cgroups ('auto': v2 where this process has a delegated cgroup, else v1 where its hierarchies are writable); 'none' refuses workloads with limits ($NEX_CGROUPS).")
	fs.Var(&listFlag{v: &c.RunAs}, "run-as", "Who each namespace's workloads may ask to run as (start_request.user, .group), when this process is root: NS=NAME entries naming a user or a group by name or number (comma-separated or repeated; * for every namespace, never root or an ID below 1000); 'none': no one ($NEX_RUN_AS; default none).")
	if v := splitList(os.Getenv("NEX_WORKDIR_ROOTS")); len(v) > 0 {
		c.WorkdirRoots = v
	}
	fs.Var(&listFlag{v: &c.WorkdirRoots}, "workdir-roots", "Directories under which a start request may name its own workdir (absolute, comma-separated or repeated; $NEX_WORKDIR_ROOTS). Default: none when workloads run as users of their own, anywhere outside the data dir when they run as this process's user.")
	fs.StringVar(&c.DefaultLimits, "default-limits", os.Getenv("NEX_DEFAULT_LIMITS"), "Resource limits of a workload that asks for none, e.g. memory=512MiB,cpu=1,pids=1024,disk=1GiB (each resource on its own; memory, cpu and pids need cgroups; $NEX_DEFAULT_LIMITS).")
	fs.StringVar(&c.MaxLimits, "max-limits", os.Getenv("NEX_MAX_LIMITS"), "The most resources a workload may ask for, e.g. memory=8GiB,cpu=4,pids=16384: a request above is declined, naming the field and the ceiling ($NEX_MAX_LIMITS).")
	fs.StringVar(&c.CacheMaxBytes, "cache-max-bytes", envOr("NEX_CACHE_MAX_BYTES", "1GiB"), "Most bytes of fetched artifacts (http, nats://) kept, least recently used dropped first; half of it is the most one namespace's downloads hold in flight, a single one's too ($NEX_CACHE_MAX_BYTES).")
	fs.StringVar(&c.OutputRate, "output-rate", envOr("NEX_OUTPUT_RATE", "0"), "Most bytes a second each workload's stdout, and its stderr, may write, each line counting 32 bytes more, e.g. 4MiB (a second's worth passes at once); past it the workload's writes wait, as on a full pipe. 0: no bound ($NEX_OUTPUT_RATE).")
	fs.DurationVar(&c.StopGrace, "stop-grace", c.StopGrace, "Default time between SIGTERM and SIGKILL on stop.")
	fs.BoolVar(&c.ShowWorkloadLogs, "show-workload-logs", false, "Print workload output in this process's log.")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug|info|warn|error: log level.")
	fs.BoolVar(&c.LogJSON, "log-json", false, "Log as JSON lines.")
	showVersion := fs.Bool("version", false, "Print the version and exit.")
	natsFlags(fs, &c.NATS)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(out, "Usage: nexlet-native --node-id N... [flags]\n\nRuns OS executables as nex workloads.\n\nFlags (--name value or --name=value):\n")
			fs.SetOutput(out)
			fs.PrintDefaults()
		}
		return c, err
	}
	if *showVersion {
		fmt.Fprintln(out, "nexlet-native "+version.String())
		return c, errVersion
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.check()
}

// natsFlags are the --nats.* flags of natsconn.Options (-s for --nats.servers).
func natsFlags(fs *flag.FlagSet, o *natsconn.Options) {
	o.Servers = splitList(os.Getenv(v1.EnvNATSURL))
	servers := &listFlag{v: &o.Servers}
	fs.Var(servers, "nats.servers", "NATS server URLs, comma-separated ($NATS_URL).")
	fs.Var(servers, "s", "Short for --nats.servers.")
	for _, f := range []struct {
		name, env, help string
		v               *string
	}{
		{"context", "NATS_CONTEXT", "NATS CLI context to connect with ($NATS_CONTEXT).", &o.Context},
		{"creds-file", "", "User credentials file (JWT + seed).", &o.CredsFile},
		{"nkey", "", "File holding an nkey user seed.", &o.NKey},
		{"user", "", "User name.", &o.User},
		{"password", "NATS_PASSWORD", "Password ($NATS_PASSWORD).", &o.Password},
		{"token", "NATS_TOKEN", "Authentication token ($NATS_TOKEN).", &o.Token},
		{"tls-cert", "", "Client TLS certificate.", &o.TLSCert},
		{"tls-key", "", "Client TLS private key.", &o.TLSKey},
		{"tls-ca", "", "CA certificate to verify the server.", &o.TLSCA},
		{"conn-name", "", "Connection name shown by the server.", &o.ConnName},
		{"inbox-prefix", "", "Prefix of this connection's reply subjects instead of _INBOX.", &o.InboxPrefix},
	} {
		def := ""
		if f.env != "" {
			def = os.Getenv(f.env)
		}
		fs.StringVar(f.v, "nats."+f.name, def, f.help)
	}
	fs.BoolVar(&o.TLSFirst, "nats.tls-first", false, "Do the TLS handshake before the NATS INFO.")
	fs.DurationVar(&o.Timeout, "nats.timeout", 5*time.Second, "Connect timeout.")
}

// check refuses what kong's enum and required tags refused, and makes the file flags
// absolute (as kong's path type did), since the process's directory is nexd's.
func (c *cli) check() error {
	if c.NodeID == "" {
		return errors.New("missing flag --node-id (or $NEX_NODE_ID): the ID of the node to register with")
	}
	for flag, v := range map[string]struct {
		got  string
		want []string
	}{"--cgroups": {c.Cgroups, []string{"auto", "none"}}, "--log-level": {c.LogLevel, []string{"debug", "info", "warn", "error"}}} {
		if !slices.Contains(v.want, v.got) {
			return fmt.Errorf("%s must be one of %s but got %q", flag, strings.Join(v.want, ","), v.got)
		}
	}
	if _, err := native.ParseRunAs(c.RunAs); err != nil {
		return err
	}
	if b, err := v1.ParseByteSize(c.CacheMaxBytes); err != nil || b <= 0 {
		return fmt.Errorf("--cache-max-bytes %q: want a size like 1GiB", c.CacheMaxBytes)
	}
	if _, err := v1.ParseByteSize(c.OutputRate); err != nil {
		return fmt.Errorf("--output-rate %q: want a size a second like 4MiB, or 0", c.OutputRate)
	}
	for flag, v := range map[string]string{"--default-limits": c.DefaultLimits, "--max-limits": c.MaxLimits} {
		if _, err := v1.ParseResources(v); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
	}
	for i, r := range c.WorkdirRoots {
		if !filepath.IsAbs(r) {
			return fmt.Errorf("--workdir-roots %q: want an absolute path", r)
		}
		c.WorkdirRoots[i] = filepath.Clean(r)
	}
	for _, p := range []*string{&c.NATS.CredsFile, &c.NATS.NKey, &c.NATS.TLSCert, &c.NATS.TLSKey, &c.NATS.TLSCA} {
		if *p == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(*p, "~/"); ok {
			if home, err := os.UserHomeDir(); err == nil {
				*p = filepath.Join(home, rest)
			}
		}
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
