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
		args  []string
		model string // the model that takes it: "verb", "noun" or "whole"
	}{
		{[]string{"--check", "workload", "list", "--namespace", "a"}, "verb"},
		{[]string{"--check", "w", "ls", "-q"}, "verb"},
		{[]string{"--check", "--namespace", "node", "workload", "ls"}, "whole"}, // "node" is a value
		{[]string{"--check", "--namespace", "workload", "workload", "ls"}, "noun"},
		{[]string{"--check", "node", "up", "--node-name", "n1", "--embedded"}, "verb"},
		{[]string{"--check", "node", "up", "--jetstream"}, "whole"}, // no such flag: the whole tree says so
		{[]string{"--check", "secret", "ls"}, "verb"},
		{[]string{"--check", "events", "-f", "--since", "10m"}, "noun"},
		{[]string{"--config", cfg, "--check", "workload", "list"}, "whole"}, // node.up keys: the whole tree checks them
		{[]string{"--config", cfg, "--check", "node", "up"}, "verb"},
		{[]string{"--namespace", "workload"}, "whole"}, // no command: usage of the whole tree
		{[]string{"workload"}, "whole"},
		{[]string{"workload", "bogus"}, "whole"},
		{[]string{"--json", "node", "ls", "--bogus"}, "whole"},
		{[]string{"workload", "list", "--help"}, "whole"},
		{[]string{"--check", "workload", "start", "--type", "native", "--start-request", `{"uri":"file:///bin/true"}`}, "verb"},
		{[]string{"--check", "w", "logs", "abc", "-f"}, "verb"},
		{[]string{"--check", "workload", "--namespace", "x", "stop", "abc"}, "noun"},         // the noun's model: a flag between
		{[]string{"--check", "--namespace", "workload", "start", "workload", "ls"}, "whole"}, // "workload" is a value, "start" no command
		{[]string{"workload", "start", "--bogus"}, "whole"},
		{[]string{"security", "user"}, "whole"},                                 // a required argument missing: the whole tree's error
		{[]string{"--check", "node", "up", "--workload-uids", "bogus"}, "verb"}, // --check reads what the verb parsed
		{[]string{"--version"}, "none"},
		{[]string{"--version", "--json"}, "whole"},
	}
	for _, l := range lines {
		before, verbsBefore, versionsBefore := leanParses.Load(), verbParses.Load(), versionParses.Load()
		wholeTreeOnly = false
		out1, err1, code1 := runNex(t, l.args...)
		model := "whole"
		switch {
		case versionParses.Load() > versionsBefore:
			model = "none"
		case verbParses.Load() > verbsBefore:
			model = "verb"
		case leanParses.Load() > before:
			model = "noun"
		}
		wholeTreeOnly = true
		out2, err2, code2 := runNex(t, l.args...)
		wholeTreeOnly = false
		if out1 != out2 || err1 != err2 || code1 != code2 {
			t.Errorf("%q: lean and whole tree differ:\n%d %s%s\n---\n%d %s%s", l.args, code1, out1, err1, code2, out2, err2)
		}
		if model != l.model {
			t.Errorf("%q: parsed by the %s model, want the %s model", l.args, model, l.model)
		}
	}
}
