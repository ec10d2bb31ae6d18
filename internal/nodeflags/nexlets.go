package nodeflags

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/alecthomas/kong"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// NexletSpec is a local nexlet nexd starts and supervises, from --nexlets or the config
// file: {"name": "wasm", "uri": "file:///usr/local/bin/nexlet-wasm", "argv": [...], "env": {...}}.
type NexletSpec struct {
	Name string            `json:"name"`
	URI  string            `json:"uri"`
	Argv []string          `json:"argv,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
}

// Nexlets is the --nexlets flag: each value a JSON object (or array of them) on the command
// line, or objects in the config file.
type Nexlets []NexletSpec

// Decode implements kong.MapperValue.
func (a *Nexlets) Decode(ctx *kong.DecodeContext) error {
	t := ctx.Scan.Pop()
	var raw []byte
	switch v := t.Value.(type) {
	case string:
		raw = []byte(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		raw = b
	}
	var many []NexletSpec
	strict := func(into any) error { // a misspelt key ("args") is an error, not ignored
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		return d.Decode(into)
	}
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
		if err := strict(&many); err != nil {
			return fmt.Errorf("want a JSON array of objects like {\"name\":\"wasm\",\"uri\":\"file:///usr/local/bin/nexlet-wasm\"}: %v", err)
		}
	} else {
		var one NexletSpec
		if err := strict(&one); err != nil {
			return fmt.Errorf("want a JSON object like {\"name\":\"wasm\",\"uri\":\"file:///usr/local/bin/nexlet-wasm\",\"argv\":[...],\"env\":{...}}: %v", err)
		}
		many = []NexletSpec{one}
	}
	for _, s := range many {
		if _, err := s.Path(); err != nil {
			return err
		}
	}
	*a = append(*a, many...)
	return nil
}

// Path checks the spec and returns the executable's path.
func (s NexletSpec) Path() (string, error) {
	if err := v1.ValidateToken("nexlet name", s.Name); err != nil {
		return "", err
	}
	u, err := url.Parse(s.URI)
	if err != nil || u.Scheme != "file" || !filepath.IsAbs(u.Path) {
		return "", fmt.Errorf("%s: uri %q must be file:///absolute/path", s.Name, s.URI)
	}
	return u.Path, nil
}
