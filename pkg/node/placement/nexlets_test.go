package placement

import (
	"strings"
	"testing"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/registry"
)

func nexlet(id string, change func(*registry.Nexlet)) registry.Nexlet {
	e := registry.Nexlet{Ready: true, Health: v1.HealthHealthy, Reg: v1.RegisterRequest{NexletID: id, RegisterType: "native",
		Lifecycles: []string{v1.LifecycleService, v1.LifecycleJob}, Isolation: v1.IsolationUID, Cgroups: v1.CgroupsV2, Limits: []string{"memory", "cpu"}}}
	if change != nil {
		change(&e)
	}
	return e
}

func ids(nexlets []registry.Nexlet) string {
	var out []string
	for _, e := range nexlets {
		out = append(out, e.Reg.NexletID)
	}
	return strings.Join(out, ",")
}

func TestCandidates(t *testing.T) {
	all := []registry.Nexlet{
		nexlet("a", nil),
		nexlet("registering", func(e *registry.Nexlet) { e.Ready, e.Health = false, v1.HealthRegistering }),
		nexlet("lost", func(e *registry.Nexlet) { e.Health = v1.HealthLost }),
		nexlet("full", func(e *registry.Nexlet) { e.Reg.MaxWorkloads = 2 }),
		nexlet("shared", func(e *registry.Nexlet) { e.Reg.Isolation = "" }),
		nexlet("v1", func(e *registry.Nexlet) { e.Reg.Cgroups = v1.CgroupsV1 }),
		nexlet("other", func(e *registry.Nexlet) { e.Reg.RegisterType = "wasm" }),
	}
	counts := map[string]int{"full": 2}
	for _, c := range []struct {
		name      string
		req       v1.AuctionRequest
		isolation string
		want      string
	}{
		{"any", v1.AuctionRequest{Type: "native", Lifecycle: v1.LifecycleService}, "", "a,shared,v1"},
		{"isolated", v1.AuctionRequest{Type: "native", Lifecycle: v1.LifecycleService}, v1.IsolationUID, "a,v1"},
		{"unisolated", v1.AuctionRequest{Type: "native", Lifecycle: v1.LifecycleService}, v1.IsolationNone, "shared"},
		{"cgroups v1", v1.AuctionRequest{Type: "native", Lifecycle: v1.LifecycleService, Tags: map[string]string{v1.TagCgroups: v1.CgroupsV1}}, "", "v1"},
		{"a lifecycle none serves", v1.AuctionRequest{Type: "native", Lifecycle: v1.LifecycleFunction}, "", ""},
		{"another type", v1.AuctionRequest{Type: "wasm", Lifecycle: v1.LifecycleJob}, "", "other"},
	} {
		if got := ids(Candidates(all, &c.req, c.isolation, counts)); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestNoCandidate(t *testing.T) {
	req := &v1.AuctionRequest{Type: "native", Lifecycle: v1.LifecycleService}
	for _, c := range []struct {
		name    string
		nexlets []registry.Nexlet
		counts  map[string]int
		want    []string
		soon    bool // a nexlet may bid in a moment
	}{
		{"registering", []registry.Nexlet{nexlet("n", func(e *registry.Nexlet) { e.Ready, e.Health = false, v1.HealthRegistering })}, nil, []string{"nexlet n is still registering"}, true},
		{"lost", []registry.Nexlet{nexlet("n", func(e *registry.Nexlet) { e.Health = v1.HealthLost })}, nil, []string{"nexlet n is lost (no heartbeat since "}, false},
		{"full", []registry.Nexlet{nexlet("n", func(e *registry.Nexlet) { e.Reg.MaxWorkloads = 1 })}, map[string]int{"n": 1}, []string{"nexlet n is at capacity (1 workload)"}, false},
		{"both, sorted", []registry.Nexlet{nexlet("z", func(e *registry.Nexlet) { e.Health = v1.HealthLost }), nexlet("b", func(e *registry.Nexlet) { e.Reg.MaxWorkloads = 1 })}, map[string]int{"b": 1}, []string{"nexlet b is at capacity", "; nexlet z is lost"}, false},
		{"none of the kind", []registry.Nexlet{nexlet("n", func(e *registry.Nexlet) { e.Reg.Lifecycles = []string{v1.LifecycleJob} })}, nil, []string{"no nexlet of type native can take a service workload"}, false},
	} {
		got, soon := NoCandidate(c.nexlets, req, c.counts)
		if soon != c.soon {
			t.Errorf("%s: soon %v", c.name, soon)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q does not say %q", c.name, got, w)
			}
		}
	}
}

func TestLimitsAndCgroups(t *testing.T) {
	memOnly := nexlet("m", func(e *registry.Nexlet) { e.Reg.Limits, e.Reg.Cgroups = []string{"memory"}, v1.CgroupsV1 })
	cpuOnly := nexlet("c", func(e *registry.Nexlet) { e.Reg.Limits, e.Reg.Cgroups = []string{"cpu"}, "" })
	both := &v1.AuctionRequest{Type: "native", Resources: &v1.Resources{Memory: 1 << 20, CPU: 1}}
	if Enforces(memOnly, both.Resources.Names()) || !Enforces(nexlet("a", nil), both.Resources.Names()) {
		t.Error("Enforces: a nexlet limiting memory alone enforces memory and cpu, or one limiting both does not")
	}
	if got := LimitsReason(both, []registry.Nexlet{memOnly, cpuOnly}, v1.CgroupsV1); !strings.Contains(got, "cannot enforce resources.memory, cpu together") {
		t.Errorf("LimitsReason, each limited by one nexlet: %q", got)
	}
	if got := LimitsReason(both, []registry.Nexlet{memOnly}, v1.CgroupsV1); !strings.Contains(got, "cannot enforce resources.cpu: no nexlet of type native here limits cpu (nex.cgroups=v1)") {
		t.Errorf("LimitsReason, cpu limited by none: %q", got)
	}
	for _, c := range []struct {
		nexlets []registry.Nexlet
		typ     string
		want    string
	}{
		{nil, "", v1.CgroupsNone},
		{[]registry.Nexlet{cpuOnly}, "", v1.CgroupsNone},
		{[]registry.Nexlet{cpuOnly, memOnly}, "native", v1.CgroupsV1},
		{[]registry.Nexlet{memOnly, nexlet("a", nil)}, "", v1.CgroupsV2},
		{[]registry.Nexlet{nexlet("a", func(e *registry.Nexlet) { e.Ready = false })}, "", v1.CgroupsNone},
		{[]registry.Nexlet{nexlet("a", nil)}, "wasm", v1.CgroupsNone},
	} {
		if got := BestCgroups(c.nexlets, c.typ); got != c.want {
			t.Errorf("BestCgroups(%s, %q) = %s, want %s", ids(c.nexlets), c.typ, got, c.want)
		}
	}
}

func TestNodeIsolation(t *testing.T) {
	shared := nexlet("s", func(e *registry.Nexlet) { e.Reg.Isolation = v1.IsolationNone })
	boxed := nexlet("b", func(e *registry.Nexlet) { e.Reg.Sandbox = v1.SandboxNamespaces })
	for _, c := range []struct {
		nexlets       []registry.Nexlet
		iso, box      string
		isoFor, typed string
	}{
		{nil, v1.IsolationNone, v1.SandboxNone, "native", v1.IsolationNone},
		{[]registry.Nexlet{boxed}, v1.IsolationUID, v1.SandboxNamespaces, "native", v1.IsolationUID},
		{[]registry.Nexlet{boxed, nexlet("a", nil)}, v1.IsolationUID, v1.SandboxNone, "native", v1.IsolationUID},
		{[]registry.Nexlet{boxed, shared}, v1.IsolationNone, v1.SandboxNone, "native", v1.IsolationUID},
		{[]registry.Nexlet{shared}, v1.IsolationNone, v1.SandboxNone, "native", v1.IsolationNone},
	} {
		iso, box := NodeIsolation(c.nexlets)
		if iso != c.iso || box != c.box || IsolationFor(c.nexlets, c.isoFor) != c.typed {
			t.Errorf("%s: isolation %s, sandbox %s, for %s %s; want %s, %s, %s", ids(c.nexlets), iso, box, c.isoFor, IsolationFor(c.nexlets, c.isoFor), c.iso, c.box, c.typed)
		}
	}
}
