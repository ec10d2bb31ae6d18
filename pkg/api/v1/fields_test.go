package v1_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// The fields the node reads are first-class in the definition; a start request's
// conventional fields fill them, the same value in both is fine, and two different
// values are refused, naming the field. The start request is left as given.
func TestNormalizeFirstClassFields(t *testing.T) {
	def := func(sr string) v1.WorkloadDefinition {
		return v1.WorkloadDefinition{Namespace: "default", Name: "w", Type: "native", Lifecycle: v1.LifecycleService, StartRequest: json.RawMessage(sr)}
	}
	d := def(`{"uri":"file:///bin/sh","resources":{"memory":"64MiB"},"expose_ports":[8080],"grace_period":"3s"}`)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Resources == nil || d.Resources.Memory != 64<<20 || !slices.Equal(d.ExposePorts, []int{8080}) || time.Duration(d.GracePeriod) != 3*time.Second {
		t.Fatalf("from the start request: %+v %v %v", d.Resources, d.ExposePorts, d.GracePeriod)
	}

	d = def(`{"value":"x"}`)
	d.Resources, d.ExposePorts, d.GracePeriod = &v1.Resources{CPU: 0.5}, []int{9090}, v1.Duration(time.Second)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if string(d.StartRequest) != `{"value":"x"}` {
		t.Fatalf("the start request was changed: %s", d.StartRequest)
	}
	if r, _ := d.WantedResources(); r.CPU != 0.5 || !slices.Equal(d.Ports(), []int{9090}) || d.Grace() != time.Second {
		t.Fatalf("read back: %+v %v %v", r, d.Ports(), d.Grace())
	}

	d = def(`{"value":"x","expose_ports":[9090]}`)
	d.ExposePorts = []int{9090}
	if err := d.Validate(); err != nil {
		t.Fatalf("the same ports in both places: %v", err)
	}

	for _, c := range []struct {
		sr     string
		mutate func(*v1.WorkloadDefinition)
		want   string
	}{
		{`{"resources":{"memory":"64MiB"}}`, func(d *v1.WorkloadDefinition) { d.Resources = &v1.Resources{Memory: 128 << 20} }, "resources are given twice, differently"},
		{`{"expose_ports":[1]}`, func(d *v1.WorkloadDefinition) { d.ExposePorts = []int{2} }, "expose_ports are given twice, differently"},
		{`{"grace_period":"1s"}`, func(d *v1.WorkloadDefinition) { d.GracePeriod = v1.Duration(2 * time.Second) }, "grace_period is given twice, differently"},
		{`{"grace_period":"soon"}`, func(*v1.WorkloadDefinition) {}, `start_request.grace_period "soon" is not a duration`},
		{`{}`, func(d *v1.WorkloadDefinition) { d.ExposePorts = []int{70000} }, "expose_ports: 70000 is not a port"},
		{`{}`, func(d *v1.WorkloadDefinition) { d.GracePeriod = v1.Duration(-time.Second) }, "grace_period -1s: between 0 and 1h0m0s"},
		// a stop holds its request for the grace period: a tenant's 1000h held every slot
		{`{}`, func(d *v1.WorkloadDefinition) { d.GracePeriod = v1.Duration(2 * time.Hour) }, "grace_period 2h0m0s: between 0 and 1h0m0s"},
		{`{"grace_period":"1000h"}`, func(*v1.WorkloadDefinition) {}, "start_request.grace_period 1000h0m0s: between 0 and 1h0m0s"},
		// the same field to every JSON decoder, the nexlet's too: a review's way past the cap
		{`{"grace\u005fperiod":"1000h"}`, func(*v1.WorkloadDefinition) {}, "start_request.grace_period 1000h0m0s: between 0 and 1h0m0s"},
		{`{}`, func(d *v1.WorkloadDefinition) { d.Resources = &v1.Resources{CPU: -1} }, "resources.cpu"},
		// one start must not hold every port of a node
		{`{}`, func(d *v1.WorkloadDefinition) { d.ExposePorts = make([]int, 65) }, "expose_ports: 65 ports, at most 64"},
		{`{"expose_ports":[` + strings.Repeat("1,", 64) + `1]}`, func(*v1.WorkloadDefinition) {}, "expose_ports: 65 ports, at most 64"},
	} {
		d := def(c.sr)
		c.mutate(&d)
		if err := d.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s with %+v: %v, want %q", c.sr, d, err, c.want)
		}
	}
}

// A start request's resources are read however its keys are written: escaped, they are
// the same field to the nexlet (and were not to the node, which placed and counted none).
func TestEscapedFieldsRead(t *testing.T) {
	d := v1.WorkloadDefinition{StartRequest: json.RawMessage(`{"re\u0073ources":{"memory":"64MiB"}}`)}
	if r, err := d.WantedResources(); err != nil || r == nil || r.Memory != 64<<20 {
		t.Fatalf("escaped resources: %+v %v", r, err)
	}
}

// A stop's grace period is at most an hour: a stop holds its request until the workload
// is gone.
func TestStopGraceBounded(t *testing.T) {
	for g, ok := range map[time.Duration]bool{0: true, time.Hour: true, time.Hour + time.Second: false, -time.Second: false} {
		r := v1.StopRequest{GracePeriod: v1.Duration(g)}
		if err := r.Validate(); (err == nil) != ok {
			t.Errorf("grace_period %s: %v", g, err)
		}
	}
}

// A record written before the fields were first-class has them in its start request
// only: the node reads them there.
func TestFieldsOfAnOldRecord(t *testing.T) {
	d := v1.WorkloadDefinition{StartRequest: json.RawMessage(`{"resources":{"pids":9},"expose_ports":[7],"grace_period":"4s"}`)}
	if r, _ := d.WantedResources(); r == nil || r.PIDs != 9 || !slices.Equal(d.Ports(), []int{7}) || d.Grace() != 4*time.Second {
		t.Fatalf("read from the start request: %+v %v %v", r, d.Ports(), d.Grace())
	}
}

// A description is text: a control character other than newline and tab is refused (the
// CLI shows descriptions to operators' terminals, which act on escape sequences: a
// tenant's retitled an operator's terminal and forged a status line).
func TestDescriptionIsText(t *testing.T) {
	d := v1.WorkloadDefinition{Namespace: "a", Name: "w", Type: "native", Lifecycle: v1.LifecycleService, StartRequest: json.RawMessage(`{"uri":"file:///bin/true"}`)}
	d.Description = "two lines\n\tindented"
	if err := d.Validate(); err != nil {
		t.Fatalf("a description with a newline and a tab: %v", err)
	}
	for _, bad := range []string{"\x1b]0;OWNED\a", "clear\x1b[2J", "c1 \u009b31m", "nul\x00"} {
		d.Description = bad
		if err := d.Validate(); !v1.IsCode(err, v1.CodeBadRequest) || !strings.Contains(err.Error(), "control character") {
			t.Errorf("description %q: %v, want bad_request naming the control character", bad, err)
		}
	}
}
