package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/nexrun/nex/internal/config"
)

type cli struct {
	RunAs []string `name:"run-as"`
	Quota []string `name:"namespace-quota" sep:";"`
	Tags  map[string]string
}

// A list of NS=VALUE entries may be written as a map in the config file, one key per
// namespace, a value or a list of them; a value that is neither is an error naming it.
func TestKeyedEntries(t *testing.T) {
	load := func(body string) (cli, error) {
		p := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := config.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		var c cli
		k, err := kong.New(&c, kong.Resolvers(r), kong.Exit(func(int) {}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = k.Parse(nil)
		return c, err
	}
	c, err := load(`{"run_as": {"b": "svc-b", "a": ["svc-a", "1001"]}, "namespace_quota": {"a": "workloads=20,memory=8GiB", "*": "workloads=5"}, "tags": {"zone": "x"}}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a=svc-a", "a=1001", "b=svc-b"}; !slices.Equal(c.RunAs, want) {
		t.Errorf("run_as as a map: %q, want %q", c.RunAs, want)
	}
	if want := []string{"*=workloads=5", "a=workloads=20,memory=8GiB"}; !slices.Equal(c.Quota, want) {
		t.Errorf("namespace_quota as a map: %q, want %q", c.Quota, want)
	}
	if c.Tags["zone"] != "x" {
		t.Errorf("a map flag: %v", c.Tags)
	}
	c, err = load(`{"run_as": ["a=svc-a"]}`)
	if err != nil || !slices.Equal(c.RunAs, []string{"a=svc-a"}) {
		t.Errorf("run_as as a list: %q %v", c.RunAs, err)
	}
	if _, err := load(`{"run_as": {"a": 7}}`); err == nil || !strings.Contains(err.Error(), "run_as.a: want a string or a list of strings, not 7") {
		t.Errorf("a number for a namespace's users: %v", err)
	}
}

// A flag's old spelling (a kong alias) is read from the config file too, and Check
// knows it: "agent_restart_limit" sets --nexlet-restart-limit.
func TestOldSpellingsInTheConfig(t *testing.T) {
	var c struct {
		Limit int `name:"nexlet-restart-limit" aliases:"agent-restart-limit"`
	}
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(`{"agent_restart_limit": 7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kong.New(&c, kong.Resolvers(r), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Parse(nil); err != nil || c.Limit != 7 {
		t.Fatalf("limit %d, err %v: want 7 from the old spelling", c.Limit, err)
	}
	if err := config.Check(p, k.Model); err != nil {
		t.Fatalf("Check refused the old spelling: %v", err)
	}
}
