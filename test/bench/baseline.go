package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// Comparison is one figure measured on this build and on a baseline build, interleaved.
type Comparison struct {
	Figure   string    `json:"figure"`
	Unit     string    `json:"unit"`
	This     float64   `json:"this"`     // median over the rounds
	Baseline float64   `json:"baseline"` // median over the rounds
	Ratio    float64   `json:"ratio"`    // this / baseline
	Better   string    `json:"better"`   // "lower" or "higher"
	Worse    bool      `json:"worse"`    // more than 10 % worse than the baseline
	Runs     []float64 `json:"runs"`     // this build's values, round by round
	BaseRuns []float64 `json:"baseline_runs"`
}

// ComparisonReport is a whole --baseline run.
type ComparisonReport struct {
	Commit    string       `json:"commit"`
	Baseline  string       `json:"baseline"`
	Rounds    int          `json:"rounds"`
	Cores     int          `json:"cores"`
	CPU       string       `json:"cpu"`
	Time      string       `json:"time"`
	LoadStart string       `json:"load_start"` // /proc/loadavg when the run began
	LoadEnd   string       `json:"load_end"`
	Figures   []Comparison `json:"figures"`
}

// defaultCompared are the scenarios a --baseline run measures when --only names none:
// the control plane's round trips, the CLI's own start and an idle node.
var defaultCompared = []string{"version", "start-cli", "start-client", "start-shared", "stop", "list", "idle"}

// compare runs each scenario rounds times on this build's binaries (bin) and as often on
// the baseline's (base), interleaved: a round runs every scenario on both, this build
// first in odd rounds and the baseline first in even ones, so that a machine getting
// busier or quieter over the run weighs on both alike. The Go client in the scenarios
// that use it is this build's; the processes (nex, nexd, nexlet-native) are each build's.
func compare(scens []scenario, rep Report, bin, base string, rounds int) (ComparisonReport, error) {
	out := ComparisonReport{Commit: rep.Commit, Baseline: base, Rounds: rounds, Cores: rep.Cores, CPU: rep.CPU, Time: rep.Time, LoadStart: loadavg()}
	this, baseline := map[string][]Result{}, map[string][]Result{}
	var order []string
	for round := 1; round <= rounds; round++ {
		for _, s := range scens {
			first := []bool{true, false} // this build, then the baseline
			if round%2 == 0 {
				first = []bool{false, true}
			}
			for _, mine := range first {
				dir, what := base, "baseline"
				if mine {
					dir, what = bin, "this build"
				}
				res, err := runScenario(s, dir, fmt.Sprintf("round %d/%d, %s", round, rounds, what))
				if err != nil {
					return out, fmt.Errorf("%s (%s): %w", s.name, dir, err)
				}
				for _, r := range res {
					if !slices.Contains(order, r.Figure) {
						order = append(order, r.Figure)
					}
					if mine {
						this[r.Figure] = append(this[r.Figure], r)
					} else {
						baseline[r.Figure] = append(baseline[r.Figure], r)
					}
				}
			}
		}
	}
	for _, f := range order {
		t, b := values(this[f]), values(baseline[f])
		if len(t) == 0 || len(b) == 0 {
			continue
		}
		c := Comparison{Figure: f, Unit: this[f][0].Unit, This: median(t), Baseline: median(b), Runs: t, BaseRuns: b, Better: "lower"}
		if strings.HasSuffix(c.Unit, "/s") {
			c.Better = "higher"
		}
		if c.Baseline != 0 {
			c.Ratio = c.This / c.Baseline
		}
		c.Worse = c.Ratio != 0 && ((c.Better == "lower" && c.Ratio > 1.10) || (c.Better == "higher" && c.Ratio < 1/1.10))
		out.Figures = append(out.Figures, c)
	}
	out.LoadEnd = loadavg()
	return out, nil
}

// runScenario runs s once on the binaries in bin, in an environment of its own.
func runScenario(s scenario, bin, what string) ([]Result, error) {
	e, err := newEnv(bin)
	if err != nil {
		return nil, err
	}
	defer e.close()
	fmt.Fprintf(os.Stderr, "running %s (%s)...\n", s.name, what)
	return s.run(e)
}

func values(rs []Result) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.Value
	}
	return v
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// loadavg is the machine's load (the first three fields of /proc/loadavg).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// checkBinaries says which of nex, nexd and nexlet-native dir lacks.
func checkBinaries(dir, hint string) error {
	for _, b := range []string{"nex", "nexd", "nexlet-native"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("%s not found in %s: %s", b, dir, hint)
		}
	}
	return nil
}

func printComparison(c ComparisonReport, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(c)
		return
	}
	fmt.Printf("nex benchmark — commit %s against %s, %d rounds interleaved, %d cores (%s), %s\n", c.Commit, c.Baseline, c.Rounds, c.Cores, c.CPU, c.Time)
	fmt.Printf("load average: %s at the start, %s at the end\n\n", c.LoadStart, c.LoadEnd)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tTHIS\tBASELINE\tRATIO\tBETTER\tVERDICT")
	for _, f := range c.Figures {
		verdict := "same (within 10 %)"
		switch {
		case f.Worse:
			verdict = "WORSE"
		case f.Ratio != 0 && ((f.Better == "lower" && f.Ratio < 1/1.10) || (f.Better == "higher" && f.Ratio > 1.10)):
			verdict = "better"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%.2f×\t%s\t%s\n", f.Figure, format(f.This), f.Unit, format(f.Baseline), f.Unit, f.Ratio, f.Better, verdict)
	}
	tw.Flush()
}

// runCompared is main's --baseline run: the scenarios want names (defaultCompared when
// it names none) on this build (bin) and the one in baseline.
func runCompared(scenarios []scenario, want map[string]bool, rep Report, bin, baseline string, rounds int, asJSON bool) {
	base, err := filepath.Abs(baseline)
	if err != nil {
		fail(err)
	}
	if err := checkBinaries(base, "--baseline names a directory with a build of nex (make build, then copy bin/)"); err != nil {
		fail(err)
	}
	if rounds < 1 {
		fail(fmt.Errorf("--rounds %d: at least 1", rounds))
	}
	if len(want) == 0 {
		for _, n := range defaultCompared {
			want[n] = true
		}
	}
	c, err := compare(slices.DeleteFunc(scenarios, func(s scenario) bool { return !want[s.name] }), rep, bin, base, rounds)
	if err != nil {
		fail(err)
	}
	printComparison(c, asJSON)
}
