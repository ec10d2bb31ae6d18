package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nexrun/nex/internal/cli"
)

func runNex(t *testing.T, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestConfigFileAndCheck(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, ".config"))
	t.Chdir(dir)
	cfg := filepath.Join(dir, "cfg.json")
	os.WriteFile(cfg, []byte(`{"namespace":"team","nats":{"servers":["nats://x:4222"],"password":"s3cr3t-pw"},
		"node":{"up":{"node_name":"n1","tags":{"region":"lab"},"embedded":{"listen":"127.0.0.1:5222"}}}}`), 0o644)
	tests := []struct {
		name string
		args []string
		want map[string]any
	}{
		{"globals from nested config", []string{"--config", cfg, "--check", "workload", "list"},
			map[string]any{"namespace": "team", "nats_url": "nats://x:4222"}},
		{"flag wins over config", []string{"--config=" + cfg, "--namespace", "mine", "--check", "workload", "list"},
			map[string]any{"namespace": "mine"}},
		{"node up flags under node.up", []string{"--config", cfg, "--check", "node", "up"},
			map[string]any{"flags.node-name": "n1", "flags.tags.region": "lab", "flags.embedded.listen": "127.0.0.1:5222"}},
		// the node connects to its own server there, whatever --server says
		{"node up --embedded says the embedded server's URL", []string{"--config", cfg, "--check", "node", "up", "--embedded"},
			map[string]any{"nats_url": "nats://127.0.0.1:5222"}},
		{"node up without --embedded says --server's", []string{"--config", cfg, "--check", "node", "up"},
			map[string]any{"nats_url": "nats://x:4222"}},
		{"a free port", []string{"--config", cfg, "--check", "node", "up", "--embedded", "--embedded.listen", "0.0.0.0:-1"},
			map[string]any{"nats_url": "nats://0.0.0.0:PORT (a free port chosen at start)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := runNex(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if strings.Contains(out, "s3cr3t-pw") {
				t.Fatal("--check printed the password")
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for k, want := range tt.want {
				if v := dig(got, k); v != want {
					t.Errorf("%s = %v, want %v", k, v, want)
				}
			}
		})
	}
}

func dig(m map[string]any, path string) any {
	parts := strings.SplitN(path, ".", 2)
	v := m[parts[0]]
	if len(parts) == 1 {
		return v
	}
	if v, ok := m[path]; ok {
		return v
	}
	if sub, ok := v.(map[string]any); ok {
		if r := dig(sub, parts[1]); r != nil {
			return r
		}
		return sub[parts[1]]
	}
	return nil
}

func TestDefaultConfigLocation(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Chdir(dir)
	os.WriteFile("config.json", []byte(`{"namespace":"fromcwd"}`), 0o644)
	out, errs, code := runNex(t, "--check", "workload", "list")
	if code != 0 || !strings.Contains(out, `"namespace": "fromcwd"`) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

func TestUsageAndErrors(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Chdir(t.TempDir())
	if out, _, code := runNex(t); code != 0 || !strings.Contains(out, "Usage: nex <command>") || !strings.Contains(out, "Commands:") || strings.Contains(out, "nex show") {
		t.Fatalf("bare nex: %d %q, want the commands, as --help prints them", code, out)
	}
	if _, errs, code := runNex(t, "workload", "bogus"); code == 0 || !strings.Contains(errs, "unexpected argument bogus") {
		t.Fatalf("bogus command: %d %q", code, errs)
	}
	if _, errs, code := runNex(t, "--config", "/nope.json", "workload", "list"); code == 0 || !strings.Contains(errs, "/nope.json") {
		t.Fatalf("missing config: %d %q", code, errs)
	}
	if _, errs, code := runNex(t, "--namespace", "a b", "workload", "list"); code == 0 || !strings.Contains(errs, "namespace") {
		t.Fatalf("bad namespace: %d %q", code, errs)
	}
}

// TestSchemaCheckedBeforeSending: a start request that does not match the schema shipped
// with nex is the error, also when no NATS server answers (the check runs while the CLI
// connects), and a valid one gets as far as the connect.
func TestSchemaCheckedBeforeSending(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Chdir(t.TempDir())
	start := func(req string) (string, int) {
		_, errs, code := runNex(t, "-s", "nats://127.0.0.1:1", "workload", "start", "--type", "native", "--lifecycle", "job", "--name", "x", "--start-request", req)
		return errs, code
	}
	if errs, code := start(`{"uri":5}`); code != 1 || !strings.Contains(errs, "start_request.uri: Invalid type") || strings.Contains(errs, "connect") {
		t.Fatalf("invalid start request: %d %q", code, errs)
	}
	if errs, code := start(`{"uri":"file:///bin/true"}`); code != 1 || !strings.Contains(errs, "connect to NATS at nats://127.0.0.1:1") {
		t.Fatalf("valid start request, no server: %d %q", code, errs)
	}
}

// TestReplicasFlagChecked: --replicas 0 (or less, or past the most) is refused before the
// CLI connects, and so is a Nexfile's replicas: 0: each started one plain workload without
// a word, as if no count were given. A Nexfile past 1 MiB is refused (-f /dev/zero read
// until the CLI ran out of memory).
func TestReplicasFlagChecked(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Chdir(t.TempDir())
	os.WriteFile("zero.yaml", []byte("replicas: 0\n"), 0o644)
	os.WriteFile("big.yaml", bytes.Repeat([]byte("# a comment line of a Nexfile far too large\n"), 30000), 0o644)
	start := func(flags ...string) (string, int) {
		args := append([]string{"-s", "nats://127.0.0.1:1", "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "x",
			"--start-request", `{"uri":"file:///bin/sleep","argv":["60"]}`}, flags...)
		_, errs, code := runNex(t, args...)
		return errs, code
	}
	for _, tt := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--replicas", "0"}, "replicas 0 (--replicas, or replicas: in a Nexfile): a replica group starts with 1 to 1000 copies"},
		{[]string{"--replicas=-2"}, "replicas -2 (--replicas, or replicas: in a Nexfile)"},
		{[]string{"--replicas", "1001"}, "replicas 1001 (--replicas, or replicas: in a Nexfile)"},
		{[]string{"--max-per-node", "2"}, "max_per_node and spread (--max-per-node, --spread, or in a Nexfile) go with replicas"},
		{[]string{"--replicas", "2", "--max-per-node=-1"}, "max_per_node -1 (--max-per-node, or max_per_node: in a Nexfile) is 1 to 1000"},
		{[]string{"-f", "zero.yaml"}, "replicas 0 (--replicas, or replicas: in a Nexfile)"},
		{[]string{"-f", "big.yaml"}, "larger than the limit of 1024 KiB"},
		{[]string{"--replicas", "2"}, "connect to NATS at nats://127.0.0.1:1"},
	} {
		if errs, code := start(tt.flags...); code == 0 || !strings.Contains(errs, tt.want) {
			t.Errorf("%v: %d %q, want %q", tt.flags, code, errs, tt.want)
		}
	}
}

// TestGeneratedDocsCurrent fails when docs/ no longer matches the command tree or the
// schemas: run `make docs`.
func TestGeneratedDocsCurrent(t *testing.T) {
	for what, file := range map[string]string{"cli": "../../docs/cli-reference.md", "schemas": "../../docs/start-request-reference.md"} {
		out, errs, code := runNex(t, "__docs", what)
		if code != 0 {
			t.Fatalf("__docs %s: %s", what, errs)
		}
		have, err := os.ReadFile(file)
		if err != nil || string(have) != out {
			t.Errorf("%s is not current: run `make docs`", file)
		}
	}
}

// TestSampleConfig checks that deploy/config.json is read as documented.
func TestSampleConfig(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	b, err := os.ReadFile("../../deploy/config.json")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(`"max_age": "24h"`, `"max_age": "12h"`, `"state": "auto"`, `"state": "kv"`, `"embedded.listen": "127.0.0.1:4222"`, `"embedded.listen": "127.0.0.1:5999"`).Replace(string(b))
	path := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(path, []byte(s), 0o644)
	out, errs, code := runNex(t, "--config", path, "--check", "node", "up")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got struct {
		Namespace string         `json:"namespace"`
		Flags     map[string]any `json:"flags"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"logs.max-age": "12h0m0s", "state": "kv", "embedded.listen": "127.0.0.1:5999", "node-name": "lab1", "nexlet-restart-limit": float64(3)} {
		if got.Flags[k] != want {
			t.Errorf("%s = %v, want %v", k, got.Flags[k], want)
		}
	}
	if got.Namespace != "default" {
		t.Errorf("namespace %q", got.Namespace)
	}
}

func TestCheckMasksSeeds(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Chdir(t.TempDir())
	out, _, code := runNex(t, "-s", "nats://x:1", "--check", "node", "up", "--node-seed", "SNSEEDVALUE", "--issuer-signing-key", "SASEEDVALUE", "--secrets-key", "SXSEEDVALUE")
	if code != 0 || strings.Contains(out, "SEEDVALUE") {
		t.Fatalf("--check printed a seed (exit %d):\n%s", code, out)
	}
}

// With --json an error is one JSON object with a stable error_code, on stderr, and a
// non-zero exit.
func TestJSONErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code string
	}{
		{[]string{"--json", "--namespace", "a.b", "workload", "list"}, "invalid_token"},
		{[]string{"--json", "-s", "nats://127.0.0.1:1", "workload", "list"}, "unavailable"},
		{[]string{"--json", "workload", "rm"}, "bad_request"},
		{[]string{"--json", "workload", "list", "--bogus"}, "bad_request"}, // a parse error too
		{[]string{"workload", "list", "--json", "--output", "nope"}, "bad_request"},
	} {
		out, errs, code := runNex(t, c.args...)
		var e struct {
			Code      int    `json:"code"`
			ErrorCode string `json:"error_code"`
			Message   string `json:"message"`
		}
		if code == 0 || json.Unmarshal([]byte(errs), &e) != nil || e.ErrorCode != c.code || e.Message == "" || e.Code == 0 {
			t.Errorf("nex %s: exit %d, stdout %q, stderr %q; want a JSON error %s", strings.Join(c.args, " "), code, out, errs, c.code)
		}
	}
}

// A config key no flag reads is refused, with the closest key named: nats.server
// silently connected to :4222.
func TestConfigTyposRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(path, []byte(`{"#": "a comment", "nats": {"server": "nats://x:4222"}, "node": {"up": {"node_nam": "x", "tags": {"any": "thing"}}}, "node_name": "top"}`), 0o644)
	_, errs, code := runNex(t, "--config", path, "workload", "list")
	if code == 0 || !strings.Contains(errs, `"nats.server" (did you mean nats.servers?)`) || !strings.Contains(errs, `"node.up.node_nam" (did you mean node.up.node_name?)`) || strings.Contains(errs, "tags") || strings.Contains(errs, `"node_name"`) || strings.Contains(errs, `"#"`) {
		t.Fatalf("a config with typos: exit %d: %s", code, errs)
	}
}

// --check prints durations as people write them.
func TestCheckDurations(t *testing.T) {
	out, errs, code := runNex(t, "--check", "node", "up", "--node-loss-window", "90s")
	if code != 0 || !strings.Contains(out, `"node-loss-window": "1m30s"`) || !strings.Contains(out, `"workload-creds-ttl": "1h0m0s"`) || !strings.Contains(out, `"timeout": "5s"`) {
		t.Fatalf("--check node up: exit %d\n%s%s", code, out, errs)
	}
}

// Tags are taken comma-separated as well as repeated.
func TestTagsCommaSeparated(t *testing.T) {
	out, errs, code := runNex(t, "--check", "workload", "start", "--tags", "a=1,b=2", "--tags", "c=3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"flags.tags.a": "1", "flags.tags.b": "2", "flags.tags.c": "3"} {
		if v := dig(got, k); v != want {
			t.Errorf("%s = %v, want %s", k, v, want)
		}
	}
	if cli.Plural(1, "workload") != "1 workload" || cli.Plural(2, "workload") != "2 workloads" {
		t.Fatal("plural")
	}
}

// --check of `node up` refuses what `node up` would refuse, naming the flag, after
// printing the configuration.
func TestCheckRefusesBadNodeFlags(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	out, errs, code := runNex(t, "--check", "node", "up", "--memory", "banana")
	if code != 1 || !strings.Contains(errs, `--memory: "banana" is not a size`) || !strings.Contains(out, `"error"`) {
		t.Fatalf("exit %d, stdout %s, stderr %s", code, out, errs)
	}
	if _, errs, code := runNex(t, "--check", "node", "up", "--node-loss-window", "1s"); code != 1 || !strings.Contains(errs, "--node-loss-window 1s") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, errs, code := runNex(t, "--check", "node", "up", "--agents", `{"name":"native","uri":"file:///bin/sh"}`); code != 1 || !strings.Contains(errs, "that is the bundled nexlet-native's name") {
		t.Fatalf("an agent named native: exit %d: %s", code, errs)
	}
	if _, errs, code := runNex(t, "--check", "node", "up", "--agents", `{"name":"x","uri":"file:///bin/sh","args":["-c"]}`); code == 0 || !strings.Contains(errs, `unknown field "args"`) {
		t.Fatalf("an agent with a misspelt key: exit %d: %s", code, errs)
	}
	if _, errs, code := runNex(t, "--check", "node", "up", "--memory", "2GiB"); code != 0 {
		t.Fatalf("good flags: exit %d: %s", code, errs)
	}
}

// A parse error's usage hint can be pasted: the command's path without its aliases.
func TestUsageHintCanBePasted(t *testing.T) {
	_, errs, code := runNex(t, "w", "ls", "--bogus")
	if code != 2 || !strings.Contains(errs, "Usage: nex workload list [flags]") || !strings.Contains(errs, `Run "nex workload list --help"`) || strings.Contains(errs, "(w)") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// a typo before any command: one line, not the page of every command
	if _, errs, code := runNex(t, "--namepsace", "x", "workload", "list"); code != 2 || strings.Count(errs, "\n") != 2 || !strings.Contains(errs, `Run "nex --help"`) {
		t.Fatalf("a global flag's typo: exit %d: %s", code, errs)
	}
}

// nex links neither the node nor the NATS server: `node up` runs nexd, and says so when
// there is none to run.
func TestThinCLI(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, heavy := range []string{"github.com/nats-io/nats-server/v2/server", "github.com/nexrun/nex/pkg/node", "github.com/nexrun/nex/internal/daemon"} {
		if slices.Contains(strings.Fields(string(out)), heavy) {
			t.Errorf("nex links %s", heavy)
		}
	}
	t.Setenv("PATH", t.TempDir())
	if _, errs, code := runNex(t, "node", "up", "--embedded"); code == 0 || !strings.Contains(errs, "nex node up runs nexd, and there is none beside") {
		t.Fatalf("node up without nexd: exit %d: %s", code, errs)
	}
}

// TestNegativeTTLRefused: nex security user --ttl=-1h minted credentials that never
// expire (a negative lifetime read as none).
func TestNegativeTTLRefused(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	dir := t.TempDir()
	_, errs, code := runNex(t, "--namespace", "a", "security", "user", dir, "carol", "--ttl=-1h")
	if code == 0 || !strings.Contains(errs, "--ttl -1h0m0s: a negative lifetime") {
		t.Fatalf("--ttl=-1h: %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "carol.creds")); err == nil {
		t.Fatal("credentials were written")
	}
}
