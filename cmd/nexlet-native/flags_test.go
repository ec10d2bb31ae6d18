package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The flags nexd, the unit files and the docs pass read as they did with kong: both
// --name value and --name=value, environment defaults, -s and --node, lists by commas or
// repeats, enums and the required node ID checked, file flags made absolute.
func TestParseFlags(t *testing.T) {
	for _, k := range []string{"NEX_NODE_ID", "NEX_NEXLET_ID", "NEX_WORKLOAD_UIDS", "NEX_CGROUPS", "NEX_RUN_AS", "NATS_URL", "NATS_CONTEXT", "NATS_PASSWORD", "NATS_TOKEN"} {
		t.Setenv(k, "")
	}
	var out bytes.Buffer
	c, err := parseFlags(strings.Fields("--node-id=N1 --nexlet-id native-2 --data-dir /d --max-workloads 5 --workload-uids none --cgroups=none --run-as a=x,b=y --run-as c=z --stop-grace 3s --show-workload-logs --log-level warn --log-json --nats.servers=nats://a:1,nats://b:2 --nats.creds-file rel.creds --nats.tls-first"), &out)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("rel.creds")
	if c.NodeID != "N1" || c.NexletID != "native-2" || c.DataDir != "/d" || c.MaxWorkloads != 5 || c.WorkloadUIDs != "none" || c.Cgroups != "none" ||
		!slices.Equal(c.RunAs, []string{"a=x", "b=y", "c=z"}) || c.StopGrace != 3*time.Second || !c.ShowWorkloadLogs || c.LogLevel != "warn" || !c.LogJSON ||
		!slices.Equal(c.NATS.Servers, []string{"nats://a:1", "nats://b:2"}) || c.NATS.CredsFile != abs || !c.NATS.TLSFirst || c.NATS.Timeout != 5*time.Second {
		t.Fatalf("parsed %+v", c)
	}

	// defaults, and the environment
	t.Setenv("NEX_NODE_ID", "NENV")
	t.Setenv("NATS_URL", "nats://e:1")
	t.Setenv("NEX_RUN_AS", "*=nobody")
	c, err = parseFlags(nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "NENV" || c.NexletID != "native" || c.WorkloadUIDs != "auto" || c.Cgroups != "auto" || !slices.Equal(c.RunAs, []string{"*=nobody"}) ||
		c.StopGrace != 10*time.Second || c.LogLevel != "info" || !slices.Equal(c.NATS.Servers, []string{"nats://e:1"}) {
		t.Fatalf("defaults %+v", c)
	}
	if c, err = parseFlags([]string{"--node", "N2", "-s", "nats://x:3"}, &out); err != nil || c.NodeID != "N2" || !slices.Equal(c.NATS.Servers, []string{"nats://x:3"}) {
		t.Fatalf("--node and -s: %+v %v", c, err)
	}

	t.Setenv("NEX_NODE_ID", "")
	for args, want := range map[string]string{
		"":                              "missing flag --node-id",
		"--node-id N --cgroups v3":      `--cgroups must be one of auto,none but got "v3"`,
		"--node-id N --log-level trace": `--log-level must be one of debug,info,warn,error`,
		"--node-id N --bogus":           "flag provided but not defined: -bogus",
		"--node-id N extra":             `unexpected argument "extra"`,
		"--node-id N --stop-grace soon": "invalid value",
	} {
		if _, err := parseFlags(strings.Fields(args), &out); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", args, err, want)
		}
	}
	out.Reset()
	if _, err := parseFlags([]string{"--help"}, &out); !errors.Is(err, errHelp) || !strings.Contains(out.String(), "--node-id N...") || !strings.Contains(out.String(), "-run-as") {
		t.Fatalf("--help: %v\n%s", err, out.String())
	}
	out.Reset()
	if _, err := parseFlags([]string{"--version"}, &out); !errors.Is(err, errVersion) || !strings.HasPrefix(out.String(), "nexlet-native ") {
		t.Fatalf("--version: %v %q", err, out.String())
	}
}
