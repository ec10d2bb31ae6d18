// Command bench is nex's scenario benchmark: it starts real nexd and nexlet-native
// processes (from bin/) on a local nats-server and measures what users feel: start
// latency from the CLI and the Go client, start throughput, the no-placement error, list,
// auction fan-out across 50 nodes, log shipping, stop, footprint and scale.
//
//	make build && go run ./test/bench [--json] [--only start-cli,logs]
//	go run ./test/bench --baseline <dir of a previous build's binaries> [--rounds 3]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Result is one row of the table.
type Result struct {
	Figure string  `json:"figure"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Detail string  `json:"detail,omitempty"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
}

// Report is the whole run.
type Report struct {
	Commit    string   `json:"commit"`
	GoVersion string   `json:"go_version"`
	Cores     int      `json:"cores"`
	CPU       string   `json:"cpu"`
	Time      string   `json:"time"`
	Results   []Result `json:"results"`
}

var benchDir string

type scenario struct {
	name string
	run  func(*env) ([]Result, error)
}

// env is what scenarios share: the binaries, a nats-server, a scratch directory.
type env struct {
	bin  string
	srv  *server.Server
	url  string
	dir  string
	nc   *nats.Conn
	kids []*exec.Cmd
	// nodeEnv is added to the environment of the nodes started from here on
	// (NEX_WORKLOAD_UIDS=none: workloads as the node's own user).
	nodeEnv []string
	// isolation is how the last node started keeps its workloads apart (v1.IsolationUID:
	// each a user of its own, sandboxed; "none": as the node's user).
	isolation string
}

func main() {
	asJSON := flag.Bool("json", false, "print JSON instead of a table")
	only := flag.String("only", "", "comma-separated scenarios to run (default: all)")
	binDir := flag.String("bin", "bin", "directory with nex, nexd and nexlet-native")
	flag.StringVar(&benchDir, "dir", ".nexdata", "where nodes keep their data during the run (a real disk, like /var/lib/nex)")
	baseline := flag.String("baseline", "", "directory with a previous build's nex, nexd and nexlet-native: run the scenarios on both, interleaved, and report ratios")
	rounds := flag.Int("rounds", 3, "with --baseline: how many times each scenario runs on each build")
	flag.Parse()

	scenarios := []scenario{
		{"version", cliVersion},
		{"footprint", footprint},
		{"start-cli", startCLI},
		{"start-client", startClient},
		{"start-shared", startShared},
		{"throughput", throughput},
		{"no-placement", noPlacement},
		{"stop", stopLatency},
		{"logs", logs},
		{"list", list},
		{"fanout", fanout},
		{"idle", idleServices},
		{"scale", scale},
		{"scale10k", scale10k},
		{"reschedule", reschedule},
		{"failover3", failover(3 * time.Second)},
		{"failover5", failover(5 * time.Second)},
		{"failover10", failover(10 * time.Second)},
	}
	want := map[string]bool{}
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	for _, s := range strings.Split(*only, ",") {
		if s != "" && !slices.Contains(names, s) {
			fail(fmt.Errorf("--only %s: no such scenario; there are %s", s, strings.Join(names, ", ")))
		}
		if s != "" {
			want[s] = true
		}
	}
	bin, err := filepath.Abs(*binDir)
	if err != nil {
		fail(err)
	}
	if err := os.MkdirAll(benchDir, 0o755); err != nil {
		fail(err)
	}
	if err := checkBinaries(bin, "run `make build` first"); err != nil {
		fail(err)
	}
	rep := Report{Commit: commit(), GoVersion: runtime.Version(), Cores: runtime.NumCPU(), CPU: cpuModel(), Time: time.Now().UTC().Format(time.RFC3339)}
	if *baseline != "" {
		runCompared(scenarios, want, rep, bin, *baseline, *rounds, *asJSON)
		return
	}
	for _, s := range scenarios {
		if len(want) > 0 && !want[s.name] {
			continue
		}
		e, err := newEnv(bin)
		if err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "running %s...\n", s.name)
		res, err := s.run(e)
		e.close()
		if err != nil {
			fail(fmt.Errorf("%s: %w", s.name, err))
		}
		rep.Results = append(rep.Results, res...)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return
	}
	fmt.Printf("nex benchmark — commit %s, %s, %d cores (%s), %s\n\n", rep.Commit, rep.GoVersion, rep.Cores, rep.CPU, rep.Time)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tTARGET\tMET\tDETAIL")
	for _, r := range rep.Results {
		met := "yes"
		if !r.Met {
			met = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\n", r.Figure, format(r.Value), r.Unit, r.Target, met, r.Detail)
	}
	tw.Flush()
}

func format(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}

func newEnv(bin string) (*env, error) {
	dir, err := os.MkdirTemp(benchDir, "nexbench")
	if err != nil {
		return nil, err
	}
	// MkdirTemp makes it 0700: other users could not pass through to their workdirs, so a
	// node run as root would start workloads as its own user, not sandboxed, as it does
	// in production (/var/lib/nex): measure what production runs
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "js"), NoSigs: true, NoLog: true})
	if err != nil {
		return nil, err
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return nil, err
	}
	return &env{bin: bin, srv: srv, url: srv.ClientURL(), dir: dir, nc: nc}, nil
}

func (e *env) close() {
	for _, k := range e.kids {
		_ = k.Process.Signal(os.Interrupt)
	}
	for _, k := range e.kids {
		done := make(chan struct{})
		go func() { _ = k.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = k.Process.Kill()
		}
	}
	e.nc.Close()
	e.srv.Shutdown()
	if os.Getenv("NEXBENCH_KEEP") == "" {
		os.RemoveAll(e.dir)
	}
}

// percentile returns the p-th percentile (0-100) of ds in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return float64(s[i].Microseconds()) / 1000
}

var _ = context.Background
