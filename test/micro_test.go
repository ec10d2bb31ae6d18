package test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/xeipuuv/gojsonschema"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The micro-service discovery replies, as the NATS CLI validates them (ADR-32 schemas,
// io.nats.micro.v1.*), reduced to what matters here.
const microCommon = `
  "name": {"type": "string", "pattern": "^[A-Za-z0-9\\-_]+$"},
  "id": {"type": "string", "minLength": 1},
  "version": {"type": "string", "pattern": "^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$"},
  "metadata": {"type": "object", "required": ["api"], "properties": {"api": {"const": "v1"}}, "additionalProperties": {"type": "string"}}`

var microSchemas = map[string]string{
	"PING": `{"type": "object", "required": ["type","name","id","version","metadata"], "properties": {
  "type": {"const": "io.nats.micro.v1.ping_response"},` + microCommon + `}}`,
	"INFO": `{"type": "object", "required": ["type","name","id","version","metadata","description","endpoints"], "properties": {
  "type": {"const": "io.nats.micro.v1.info_response"},` + microCommon + `,
  "description": {"type": "string"},
  "endpoints": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name","subject"], "properties": {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9\\-_]+$"},
    "subject": {"type": "string", "pattern": "^[^ \\t]+$"},
    "queue_group": {"type": "string"},
    "metadata": {"type": ["object","null"], "additionalProperties": {"type": "string"}}}}}}}`,
	"STATS": `{"type": "object", "required": ["type","name","id","version","started","endpoints"], "properties": {
  "type": {"const": "io.nats.micro.v1.stats_response"},` + microCommon + `,
  "started": {"type": "string", "format": "date-time"},
  "endpoints": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["name","subject","num_requests","num_errors","processing_time","average_processing_time"], "properties": {
    "num_requests": {"type": "integer", "minimum": 0}, "num_errors": {"type": "integer", "minimum": 0},
    "processing_time": {"type": "integer"}, "average_processing_time": {"type": "integer"}}}}}}`,
}

// TestMicroDiscovery checks that nexd and nexlet answer the micro discovery requests with
// replies that pass the NATS CLI's validation, and runs `nats micro` when it is installed.
func TestMicroDiscovery(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	startNexd(t, u, s.ClientURL(), filepath.Join(u.home, "data"))
	nc := testutil.Connect(t, s)
	for _, svc := range []string{"nexd", "nexlet"} {
		for verb, schema := range microSchemas {
			inbox := nats.NewInbox()
			sub, _ := nc.SubscribeSync(inbox)
			if err := nc.PublishRequest("$SRV."+verb+"."+svc, inbox, nil); err != nil {
				t.Fatal(err)
			}
			m, err := sub.NextMsg(2 * time.Second)
			if err != nil {
				t.Fatalf("$SRV.%s.%s: %v", verb, svc, err)
			}
			sub.Unsubscribe()
			res, err := gojsonschema.Validate(gojsonschema.NewStringLoader(schema), gojsonschema.NewBytesLoader(m.Data))
			if err != nil {
				t.Fatalf("$SRV.%s.%s: %v", verb, svc, err)
			}
			if !res.Valid() {
				t.Errorf("$SRV.%s.%s reply does not validate: %v\n%s", verb, svc, res.Errors(), m.Data)
			}
			var r struct {
				Name string `json:"name"`
			}
			json.Unmarshal(m.Data, &r)
			if r.Name != svc {
				t.Errorf("$SRV.%s.%s answered by %q", verb, svc, r.Name)
			}
		}
	}
	// Error replies of concurrently answered endpoints are counted in the endpoint's data
	// (micro's own num_errors cannot see them).
	if _, _, code := u.nex("-s", s.ClientURL(), "--namespace", "default", "workload", "stop", "NoSuchWorkload"); code == 0 {
		t.Fatal("stopping an unknown workload succeeded")
	}
	m, err := nc.Request("$SRV.STATS.nexd", nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Endpoints []struct {
			Name string `json:"name"`
			Data struct {
				Errors    int    `json:"errors"`
				LastError string `json:"last_error"`
			} `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(m.Data, &stats); err != nil {
		t.Fatal(err)
	}
	for _, e := range stats.Endpoints {
		if e.Name == v1.VerbStop && (e.Data.Errors != 1 || !strings.Contains(e.Data.LastError, "NoSuchWorkload")) {
			t.Errorf("STOP endpoint data after one failed stop: %+v", e.Data)
		}
	}
	natsCLI, err := exec.LookPath("nats")
	if err != nil {
		t.Log("the NATS CLI is not installed: only the schema check ran")
		return
	}
	for _, args := range [][]string{{"micro", "ls"}, {"micro", "info", "nexd"}, {"micro", "stats", "nexlet"}} {
		out, err := exec.Command(natsCLI, append([]string{"--server", s.ClientURL()}, args...)...).CombinedOutput()
		if err != nil || strings.Contains(strings.ToLower(string(out)), "invalid") {
			t.Errorf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
