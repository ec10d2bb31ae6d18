package nexfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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
	if _, err := Definition(nil, Overrides{Name: "x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("missing fields accepted: %v", err)
	}
	if _, err := Definition(nil, Overrides{Name: "x", Type: "native", Lifecycle: "job", StartRequest: "{"}); !errors.Is(err, ErrInvalid) {
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
