package v1

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"time"
)

// fieldGracePeriod is the start request field that mirrors a definition's GracePeriod.
const fieldGracePeriod = "grace_period"

// Normalize makes the definition's Resources, ExposePorts and GracePeriod hold what the
// workload asks for: a value its start request gives in the conventional field
// ("resources", "expose_ports", "grace_period") is copied to the definition, and one
// given in both places, differently, is refused, naming the field. Values are validated.
func (d *WorkloadDefinition) Normalize() error {
	fromSR, err := RequestedResources(d.StartRequest)
	if err != nil {
		return err
	}
	if d.Resources != nil {
		if err := d.Resources.Validate("resources"); err != nil {
			return err
		}
		if d.Resources.Empty() {
			d.Resources = nil
		}
	}
	if d.Resources != nil && fromSR != nil && *d.Resources != *fromSR {
		return BadRequest("resources are given twice, differently: %s in the definition, %s in start_request.resources (give them once)", mustJSON(d.Resources), mustJSON(fromSR))
	}
	ports := ExposedPorts(d.StartRequest)
	if len(d.ExposePorts) > 0 && len(ports) > 0 && !slices.Equal(d.ExposePorts, ports) {
		return BadRequest("expose_ports are given twice, differently: %v in the definition, %v in start_request.expose_ports (give them once)", d.ExposePorts, ports)
	}
	if n := max(len(d.ExposePorts), len(ports)); n > MaxExposePorts {
		return BadRequest("expose_ports: %d ports, at most %d", n, MaxExposePorts)
	}
	if i := slices.IndexFunc(d.ExposePorts, notAPort); i >= 0 {
		return BadRequest("expose_ports: %d is not a port (1-65535)", d.ExposePorts[i])
	}
	grace, err := startRequestGrace(d.StartRequest)
	if err != nil {
		return err
	}
	if err := cmp.Or(within("grace_period", d.GracePeriod, MaxGracePeriod), within("start_request.grace_period", grace, MaxGracePeriod)); err != nil {
		return err
	}
	if d.GracePeriod > 0 && grace > 0 && d.GracePeriod != grace {
		return BadRequest("grace_period is given twice, differently: %s in the definition, %s in start_request.grace_period (give it once)", time.Duration(d.GracePeriod), time.Duration(grace))
	}
	// the node reads the definition's: one given in the start request only is copied
	// there (the start request is the nexlet's: a third-party nexlet's schema may not
	// allow these fields, so a value given in the definition is not written into it; the
	// nexlet gets the definition, and native reads it there)
	d.Resources = cmp.Or(d.Resources, fromSR)
	if len(d.ExposePorts) == 0 {
		d.ExposePorts = ports
	}
	d.GracePeriod = cmp.Or(d.GracePeriod, grace)
	return nil
}

// mayHold says whether a start request may have field key: it names it, or escapes
// something ("grace\u005fperiod" is that field to every decoder, the nexlet's too).
func mayHold(startRequest []byte, key string) bool {
	return bytes.Contains(startRequest, []byte(`"`+key+`"`)) || bytes.IndexByte(startRequest, '\\') >= 0
}

// startRequestGrace reads the start request's "grace_period" (0 when it has none).
func startRequestGrace(startRequest json.RawMessage) (Duration, error) {
	if !mayHold(startRequest, fieldGracePeriod) {
		return 0, nil
	}
	var sr struct {
		GracePeriod *string `json:"grace_period"`
	}
	if json.Unmarshal(startRequest, &sr) != nil || sr.GracePeriod == nil {
		return 0, nil // not an object, or not a string: the nexlet's schema says what is wrong
	}
	g, err := time.ParseDuration(*sr.GracePeriod)
	if err != nil || g < 0 {
		return 0, BadRequest("start_request.grace_period %q is not a duration (10s, 1m30s)", *sr.GracePeriod)
	}
	return Duration(g), nil
}

// WantedResources is what the workload asks of its machine: Resources, else (a record
// written before they were first-class) the start request's.
func (d *WorkloadDefinition) WantedResources() (*Resources, error) {
	if d.Resources != nil && !d.Resources.Empty() {
		return d.Resources, nil
	}
	return RequestedResources(d.StartRequest)
}

// Ports are the ports the workload listens on: ExposePorts, else the start request's.
func (d *WorkloadDefinition) Ports() []int {
	if len(d.ExposePorts) > 0 {
		return d.ExposePorts
	}
	return ExposedPorts(d.StartRequest)
}

// Grace is how long a stop waits for the workload before it kills it (0: the nexlet's
// default): GracePeriod, else the start request's.
func (d *WorkloadDefinition) Grace() time.Duration {
	g, _ := startRequestGrace(d.StartRequest)
	g = cmp.Or(max(d.GracePeriod, 0), g)
	return time.Duration(min(g, MaxGracePeriod)) // a record kept from before the bound: held to it
}

func notAPort(p int) bool { return p < 1 || p > 65535 }

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
