package nexfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

const guideYAML = `name: hello-exec
description: simple native service
type: native
lifecycle: service
tags:
  region: lab
start_request:
  uri: "file:///usr/local/bin/hello-service"
  argv: ["--listen=:8080"]
  environment:
    LOG_LEVEL: info
  expose_ports: [8080]
`

func TestParseYAMLAndJSON(t *testing.T) {
	for name, src := range map[string]string{
		"yaml": guideYAML,
		"json": `{"name":"hello-exec","type":"native","lifecycle":"service","tags":{"region":"lab"},"start_request":{"uri":"file:///usr/local/bin/hello-service","argv":["--listen=:8080"],"environment":{"LOG_LEVEL":"info"},"expose_ports":[8080]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			nf, err := Parse([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if nf.Name != "hello-exec" || nf.Tags["region"] != "lab" {
				t.Fatalf("parsed %+v", nf)
			}
			want := `{"argv":["--listen=:8080"],"environment":{"LOG_LEVEL":"info"},"expose_ports":[8080],"uri":"file:///usr/local/bin/hello-service"}`
			if name == "yaml" && string(nf.StartRequest) != want {
				t.Fatalf("start_request %s", nf.StartRequest)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, src := range []string{"name: [", "nmae: typo\n", "- a list\n"} {
		if _, err := Parse([]byte(src)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: want ErrInvalid, got %v", src, err)
		}
	}
}

func TestDefinitionOverrides(t *testing.T) {
	nf, _ := Parse([]byte(guideYAML))
	d, err := Definition(nf, Overrides{Name: "api", Tags: map[string]string{"region": "prod", "arch": "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "api" || d.Tags["region"] != "prod" || d.Tags["arch"] != "amd64" || d.Lifecycle != "service" {
		t.Fatalf("definition %+v", d)
	}
	if nf.Tags["region"] != "lab" {
		t.Fatal("override changed the Nexfile")
	}
	// without a Nexfile, what is missing is named by its flag, and no Nexfile is blamed
	if _, err := Definition(nil, Overrides{Name: "x"}); !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "invalid Nexfile") ||
		!strings.Contains(err.Error(), "missing type (--type), lifecycle (--lifecycle), start_request (--start-request)") {
		t.Fatalf("missing fields: %v", err)
	}
	if _, err := Definition(nil, Overrides{Name: "x", Type: "native", Lifecycle: "job", StartRequest: "{"}); !v1.IsCode(err, v1.CodeBadRequest) ||
		strings.Contains(err.Error(), "Nexfile") || !strings.Contains(err.Error(), "--start-request is not valid JSON: unexpected end of JSON input") {
		t.Fatalf("bad JSON accepted: %v", err)
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if p, err := Discover(""); err != nil || p != "" {
		t.Fatalf("empty dir: %q %v", p, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Nexfile"), []byte(guideYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := Discover(""); err != nil || p != "Nexfile" {
		t.Fatalf("discover: %q %v", p, err)
	}
	if _, err := Discover("missing.yaml"); err == nil {
		t.Fatal("missing explicit file accepted")
	}
}

// A Nexfile's errors name the format it is written in, and nothing may follow a JSON one.
func TestParseNamesTheFormat(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"name":"a","type":"native","lifecycle":"job"} trailing`, "JSON Nexfile: content after the workload definition"},
		{`{"name":"a","type":"native","lifecycle":"job"}{"name":"b"}`, "JSON Nexfile: content after the workload definition"},
		{`{"name":"a",`, "JSON Nexfile: unexpected EOF"},
		{"name: a\nreplica: 3\n", `YAML Nexfile: unknown field "replica" (did you mean replicas?)`},
		{"name: a\nlifecyle: job\n", `unknown field "lifecyle" (did you mean lifecycle?)`},
		{"name: a\n  bad: [\n", "YAML Nexfile: line"},
		{`{"name":"a","replica":3}`, `JSON Nexfile: unknown field "replica"`},
	} {
		_, err := Parse([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", c.in, err, c.want)
		}
	}
	if _, err := Parse([]byte("{\"name\":\"a\",\"type\":\"native\",\"lifecycle\":\"job\"}\n\n")); err != nil {
		t.Fatalf("trailing whitespace refused: %v", err)
	}
}

func TestIsolationRequired(t *testing.T) {
	nf, err := Parse([]byte("name: a\ntype: native\nlifecycle: service\nisolation: required\nstart_request: {uri: file:///bin/true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Definition(nf, Overrides{})
	if err != nil || d.Tags[v1.TagIsolation] != v1.IsolationUID {
		t.Fatalf("isolation: required gives tags %v (%v)", d.Tags, err)
	}
	nf.Isolation = "please"
	if _, err := Definition(nf, Overrides{}); err == nil || !strings.Contains(err.Error(), `isolation "please"`) {
		t.Fatalf("isolation: please: %v", err)
	}
	nf.Isolation = ""
	if d, err := Definition(nf, Overrides{Isolation: IsolationRequired}); err != nil || d.Tags[v1.TagIsolation] != v1.IsolationUID {
		t.Fatalf("--isolation required gives tags %v (%v)", d.Tags, err)
	}
}

func TestDisconnectSetting(t *testing.T) {
	nf, err := Parse([]byte("name: a\ntype: native\nlifecycle: service\ndisconnect: stop\nstart_request: {uri: file:///bin/true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := Definition(nf, Overrides{}); err != nil || d.Disconnect != v1.DisconnectStop {
		t.Fatalf("disconnect: stop gives %q (%v)", d.Disconnect, err)
	}
	if _, err := Definition(nf, Overrides{Disconnect: "later"}); err == nil || !strings.Contains(err.Error(), `disconnect "later"`) {
		t.Fatalf("--disconnect later: %v", err)
	}
}
