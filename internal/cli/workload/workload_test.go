package workload

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestReadableJSON(t *testing.T) {
	raw := json.RawMessage(`{"argv":["-c","echo oops \u003e\u00262"],"n":1.50}`)
	if got := readableJSON(raw, ""); !strings.Contains(got, `"echo oops >&2"`) || !strings.Contains(got, "1.50") {
		t.Fatalf("readableJSON: %s", got)
	}
}

// maskSecrets hides the values of secret-looking environment variables and of values
// sealed for a nexlet, and leaves the rest as they are.
func TestMaskSecrets(t *testing.T) {
	in := json.RawMessage(`{"uri":"file:///bin/x","environment":{"DB_PASSWORD":"p","API_TOKEN":"t","HOME":"/h","X":"nexenc:abc"}}`)
	var out map[string]any
	if err := json.Unmarshal(maskSecrets(in), &out); err != nil {
		t.Fatal(err)
	}
	env := out["environment"].(map[string]any)
	want := map[string]any{"DB_PASSWORD": "*****", "API_TOKEN": "*****", "HOME": "/h", "X": "*****"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %v, want %v", k, env[k], v)
		}
	}
	if out["uri"] != "file:///bin/x" {
		t.Errorf("uri changed: %v", out["uri"])
	}
}
