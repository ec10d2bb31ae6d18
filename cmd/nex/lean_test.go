package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLeanParseAgrees: a line parsed against the lean model (the globals and one noun)
// resolves to what the whole tree resolves it to, and a line the lean model cannot take
// falls back to the whole tree: the same output, errors and exit code either way.
func TestLeanParseAgrees(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Chdir(t.TempDir())
	cfg := filepath.Join(t.TempDir(), "cfg.json")
	os.WriteFile(cfg, []byte(`{"namespace":"team","node":{"up":{"node_name":"n1"}}}`), 0o644)
	lines := []struct {
		args []string
		lean bool // the lean model takes it
	}{
		{[]string{"--check", "workload", "list", "--namespace", "a"}, true},
		{[]string{"--check", "w", "ls", "-q"}, true},
		{[]string{"--check", "--namespace", "node", "workload", "ls"}, false}, // "node" is a value
		{[]string{"--check", "--namespace", "workload", "workload", "ls"}, true},
		{[]string{"--check", "node", "up", "--node-name", "n1", "--embedded"}, true},
		{[]string{"--check", "node", "up", "--jetstream"}, false}, // no such flag: the whole tree says so
		{[]string{"--check", "secret", "ls"}, true},
		{[]string{"--check", "events", "-f", "--since", "10m"}, true},
		{[]string{"--config", cfg, "--check", "workload", "list"}, false}, // node.up keys: the whole tree checks them
		{[]string{"--config", cfg, "--check", "node", "up"}, true},
		{[]string{"--namespace", "workload"}, false}, // no command: usage of the whole tree
		{[]string{"workload"}, false},
		{[]string{"workload", "bogus"}, false},
		{[]string{"--json", "node", "ls", "--bogus"}, false},
		{[]string{"workload", "list", "--help"}, false},
	}
	for _, l := range lines {
		before := leanParses.Load()
		wholeTreeOnly = false
		out1, err1, code1 := runNex(t, l.args...)
		lean := leanParses.Load() > before
		wholeTreeOnly = true
		out2, err2, code2 := runNex(t, l.args...)
		wholeTreeOnly = false
		if out1 != out2 || err1 != err2 || code1 != code2 {
			t.Errorf("%q: lean and whole tree differ:\n%d %s%s\n---\n%d %s%s", l.args, code1, out1, err1, code2, out2, err2)
		}
		if lean != l.lean {
			t.Errorf("%q: parsed by the lean model: %v, want %v", l.args, lean, l.lean)
		}
	}
}
