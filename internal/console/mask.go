package console

import (
	"encoding/json"
	"strings"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/seal"
)

// Hidden stands in for every value the console does not show: environment values (their
// keys are shown), sealed values and secret references.
const Hidden = "(hidden)"

// masked is a copy of w fit to show: environment values and sealed values hidden, in
// its definition and in metadata that holds a start request.
func masked(w *v1.WorkloadInfo) *v1.WorkloadInfo {
	out := *w
	out.Definition = maskDefinition(w.Definition)
	if len(w.Metadata) > 0 {
		out.Metadata = make(map[string]string, len(w.Metadata))
		for k, v := range w.Metadata {
			out.Metadata[k] = maskText(v)
		}
	}
	return &out
}

// maskDefinition is a copy of d with its start request masked.
func maskDefinition(d *v1.WorkloadDefinition) *v1.WorkloadDefinition {
	if d == nil {
		return nil
	}
	out := *d
	out.StartRequest = maskJSON(d.StartRequest)
	return &out
}

// maskJSON hides the values of every "environment" object and every sealed string in a
// JSON document; what does not parse is hidden whole.
func maskJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		b, _ := json.Marshal(Hidden)
		return b
	}
	b, err := json.Marshal(maskValue(v, false))
	if err != nil {
		b, _ = json.Marshal(Hidden)
	}
	return b
}

// maskText masks a metadata value that holds a JSON object (a start request) or a sealed value.
func maskText(s string) string {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		return string(maskJSON(json.RawMessage(t)))
	}
	if seal.IsSealed(t) || strings.Contains(t, seal.Marker) {
		return Hidden
	}
	return s
}

// maskValue walks v: under an "environment" key every value is hidden, elsewhere sealed
// strings are.
func maskValue(v any, env bool) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = maskValue(e, env || strings.EqualFold(k, "environment") || strings.EqualFold(k, "env"))
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = maskValue(e, env)
		}
		return x
	case string:
		if env || strings.Contains(x, seal.Marker) {
			return Hidden
		}
		return x
	case nil:
		return nil
	default:
		if env {
			return Hidden
		}
		return x
	}
}
