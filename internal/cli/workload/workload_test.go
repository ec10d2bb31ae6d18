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
