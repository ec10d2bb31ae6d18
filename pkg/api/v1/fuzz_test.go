package v1

import (
	"encoding/json"
	"strings"
	"testing"
)

func FuzzValidateToken(f *testing.F) {
	for _, s := range []string{"default", "a.b", "*", ">", "", " ", "é", "\x00", "\xff", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateToken("token", s) != nil {
			return
		}
		// whatever passes must be one well-formed subject token
		if s == "" || strings.ContainsAny(s, ".*> \t\r\n") || len(s) > MaxTokenBytes {
			t.Fatalf("ValidateToken accepted %q", s)
		}
		if got := ControlSubject(s, VerbList); strings.Count(got, ".") != 5 {
			t.Fatalf("token %q made subject %q", s, got)
		}
	})
}

// FuzzDecodeRequests feeds arbitrary bytes to every request type the node and nexlets
// decode, as the micro adapter does: decode, then Validate. Nothing may panic.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{`{}`, `{"type":"native","lifecycle":"job","tags":{"a":"b"}}`, `{"workload":{"name":"x"}}`,
		`{"nexlet_id":"n","register_type":"native","supported_lifecycles":["job"],"start_request_schema":{}}`, `null`, `[`, `{"delay":"5s"}`,
		`{"grace_period":-1}`, `{"ports":[0,70000]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		targets := []any{&AuctionRequest{}, &DeployRequest{}, &StopRequest{}, &ListRequest{}, &RegisterRequest{}, &Heartbeat{},
			&StartWorkloadRequest{}, &NexletListRequest{}, &LameduckRequest{}, &CloneRequest{}, &CredsUpdate{}, &WorkloadDefinition{}}
		for _, v := range targets {
			if json.Unmarshal(b, v) != nil {
				continue
			}
			if val, ok := v.(interface{ Validate() error }); ok {
				_ = val.Validate()
			}
		}
		var d DeployRequest
		if json.Unmarshal(b, &d) == nil && d.Workload.Validate() == nil {
			if ValidateToken("name", d.Workload.Name) != nil || ValidateToken("namespace", d.Workload.Namespace) != nil {
				t.Fatalf("a definition with bad tokens validated: %+v", d.Workload)
			}
		}
	})
}
