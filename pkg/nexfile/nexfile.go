// Package nexfile loads Nexfiles (YAML or JSON workload definitions), finds them, and
// applies command-line overrides.
package nexfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/nexrun/nex/internal/suggest"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// DefaultName is the file discovered in the working directory.
const DefaultName = "Nexfile"

// Nexfile is a workload definition on disk.
type Nexfile struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Type        string            `json:"type"`
	Lifecycle   string            `json:"lifecycle"`
	Tags        map[string]string `json:"tags,omitempty"`
	// Isolation "required" places the workload only on a node that runs it as a user of
	// its own (the tag nex.isolation=uid).
	Isolation string `json:"isolation,omitempty"`
	// Disconnect "stop" stops the workload on a node cut off from NATS before the cluster
	// starts it elsewhere (see v1.WorkloadDefinition.Disconnect).
	Disconnect string `json:"disconnect,omitempty"`
	// Replicas, when set, runs that many copies as a replica group, at most MaxPerNode
	// (default 1) on a node, spread evenly over the values of the node tag Spread.
	Replicas     *int            `json:"replicas,omitempty"`
	MaxPerNode   int             `json:"max_per_node,omitempty"`
	Spread       string          `json:"spread,omitempty"`
	StartRequest json.RawMessage `json:"start_request,omitempty"`
}

// IsolationRequired is the one value of a Nexfile's isolation (and of --isolation).
const IsolationRequired = "required"

// Load reads a Nexfile; YAML and JSON are both accepted, and unknown keys are errors
// so a typo does not silently drop a setting.
func Load(path string) (*Nexfile, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, fmt.Errorf("load nexfile %s: %w", path, err)
	}
	nf, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("load nexfile %s: %w", path, err)
	}
	return nf, nil
}

// MaxSize bounds a Nexfile: one workload's definition (a start request's inline
// environment included) is kilobytes; -f /dev/zero read until the CLI ran out of memory.
const MaxSize = 1 << 20

// readBounded reads path, refusing one larger than MaxSize.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: larger than the limit of %d KiB: a Nexfile holds one workload's definition", ErrInvalid, MaxSize>>10)
	}
	return b, nil
}

// Parse decodes Nexfile content: JSON when it starts with '{' (nothing may follow the
// object), else YAML. Errors name the format the file is written in.
func Parse(b []byte) (*Nexfile, error) {
	format, j := "JSON", b
	if trimmed := bytes.TrimSpace(b); len(trimmed) == 0 || trimmed[0] != '{' {
		format = "YAML"
		var err error
		if j, err = yaml.YAMLToJSON(b); err != nil {
			return nil, fmt.Errorf("%w: YAML Nexfile: %s", ErrInvalid, strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var nf Nexfile
	if err := dec.Decode(&nf); err != nil {
		return nil, fmt.Errorf("%w: %s Nexfile: %s%s", ErrInvalid, format, strings.TrimPrefix(err.Error(), "json: "), didYouMean(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s Nexfile: content after the workload definition (at byte %d)", ErrInvalid, format, dec.InputOffset())
	}
	// Tag values written as YAML numbers or booleans arrive as strings already via the
	// map type; a null start_request is as good as none.
	if string(nf.StartRequest) == "null" {
		nf.StartRequest = nil
	}
	return &nf, nil
}

// didYouMean names the Nexfile key closest to an unknown one err names, when one is close.
func didYouMean(err error) string {
	_, after, ok := strings.Cut(err.Error(), `unknown field "`)
	if !ok {
		return ""
	}
	unknown, _, _ := strings.Cut(after, `"`)
	var keys []string
	t := reflect.TypeOf(Nexfile{})
	for i := range t.NumField() {
		if key, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); key != "" {
			keys = append(keys, key)
		}
	}
	best := suggest.Closest(unknown, keys, 2)
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// RequireIsolation applies an isolation setting to d: "" leaves it alone, "required" asks
// for the tag nex.isolation=uid (on a copy of d's tags).
func RequireIsolation(d *v1.WorkloadDefinition, isolation string) error {
	switch isolation {
	case "":
	case IsolationRequired:
		d.Tags = maps.Clone(d.Tags)
		if d.Tags == nil {
			d.Tags = map[string]string{}
		}
		d.Tags[v1.TagIsolation] = v1.IsolationUID
	default:
		return fmt.Errorf("%w: isolation %q (--isolation, or isolation: in a Nexfile): the one value is %q", ErrInvalid, isolation, IsolationRequired)
	}
	return nil
}

// Discover returns explicit if set, else ./Nexfile when it exists, else "".
func Discover(explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("nexfile %s: %w", explicit, err)
		}
		return explicit, nil
	}
	if st, err := os.Stat(DefaultName); err == nil && !st.IsDir() {
		return DefaultName, nil
	}
	return "", nil
}

// Overrides are the flag values that win over a Nexfile; empty fields leave it alone.
type Overrides struct {
	Name         string
	Description  string
	Type         string
	Lifecycle    string
	Tags         map[string]string
	Isolation    string
	Disconnect   string
	StartRequest string
}

// Definition merges o over nf (nf may be nil) into a workload definition, and checks
// that everything required is there.
func Definition(nf *Nexfile, o Overrides) (v1.WorkloadDefinition, error) {
	var d v1.WorkloadDefinition
	if nf != nil {
		d = v1.WorkloadDefinition{Name: nf.Name, Description: nf.Description, Type: nf.Type, Lifecycle: nf.Lifecycle, StartRequest: nf.StartRequest, Disconnect: nf.Disconnect}
		if len(nf.Tags) > 0 {
			d.Tags = map[string]string{}
			for k, v := range nf.Tags {
				d.Tags[k] = v
			}
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&d.Name, o.Name)
	set(&d.Description, o.Description)
	set(&d.Type, o.Type)
	set(&d.Lifecycle, o.Lifecycle)
	set(&d.Disconnect, o.Disconnect)
	if d.Disconnect != "" && d.Disconnect != v1.DisconnectStop {
		return d, fmt.Errorf("%w: disconnect %q (--disconnect, or disconnect: in a Nexfile): the one value is %q", ErrInvalid, d.Disconnect, v1.DisconnectStop)
	}
	if len(o.Tags) > 0 {
		if d.Tags == nil {
			d.Tags = map[string]string{}
		}
		for k, v := range o.Tags {
			d.Tags[k] = v
		}
	}
	isolation := o.Isolation
	if isolation == "" && nf != nil {
		isolation = nf.Isolation
	}
	if err := RequireIsolation(&d, isolation); err != nil {
		return d, err
	}
	if o.StartRequest != "" {
		var v any
		if err := json.Unmarshal([]byte(o.StartRequest), &v); err != nil {
			return d, v1.BadRequest("--start-request is not valid JSON: %v", err)
		}
		d.StartRequest = json.RawMessage(o.StartRequest)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"name (--name)", d.Name}, {"type (--type)", d.Type}, {"lifecycle (--lifecycle)", d.Lifecycle}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(d.StartRequest) == 0 {
		missing = append(missing, "start_request (--start-request)")
	}
	if len(missing) > 0 {
		if nf != nil {
			return d, fmt.Errorf("%w: missing %s; give them in the Nexfile or as flags", ErrInvalid, strings.Join(missing, ", "))
		}
		where := "none given with --nexfile, no ./Nexfile here"
		if _, err := os.Stat("Nexfile"); err == nil {
			where = "./Nexfile is not read when --type or --start-request is given: name it with --nexfile"
		}
		// no Nexfile was read: the error is not a Nexfile's, though it is ErrInvalid
		return d, incomplete(fmt.Sprintf("the workload is not fully defined: missing %s; give them as flags or in a Nexfile (%s)", strings.Join(missing, ", "), where))
	}
	return d, nil
}
