package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexrun/nex/internal/config"
)

// nexd refuses a typo in its own keys (under node.up and nats), naming the flag it
// resembles; a key it does not know elsewhere is the nex commands' (which share the file):
// it is said only when it resembles a flag of nexd. deploy/config.json is read cleanly.
func TestConfigTyposRefused(t *testing.T) {
	var warned []string
	defer func(w func(string)) { config.Warn = w }(config.Warn)
	path := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(path, []byte(`{"#": "a comment", "namespace": "default", "node_nme": "x", "nats": {"timout": "1s"},
		"node": {"up": {"node_nam": "x", "tags": {"any": "thing"}, "logs": {"history": false}}}}`), 0o644)
	_, err := parseWarned(t, &warned, "--config", path)
	if err == nil || !strings.Contains(err.Error(), `"nats.timout" (did you mean nats.timeout?)`) || !strings.Contains(err.Error(), `"node.up.node_nam" (did you mean node_name?)`) ||
		strings.Contains(err.Error(), "tags") || strings.Contains(err.Error(), "logs") || strings.Contains(err.Error(), "namespace") {
		t.Fatalf("a config with typos: %v", err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], `"node_nme" is not a nexd flag (did you mean node_name?)`) {
		t.Fatalf("warnings: %q", warned)
	}
	warned = nil
	if _, err := parseWarned(t, &warned, "--config", "../../deploy/config.json"); err != nil || len(warned) > 0 {
		t.Fatalf("deploy/config.json: %v %q", err, warned)
	}
}

// parseWarned parses args as nexd does, keeping its config warnings.
func parseWarned(t *testing.T, warned *[]string, args ...string) (*cli, error) {
	t.Helper()
	c, err := parseWith(args, func(msg string) { *warned = append(*warned, msg) })
	return c, err
}
