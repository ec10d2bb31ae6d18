package placement

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nexrun/nex/internal/words"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/registry"
)

// Which of a node's nexlets may bid: decided on the registry's copies (registry.All), the
// workloads each runs (counts, by nexlet ID) and the request.

// Candidates are the nexlets that may bid for req: ready, of its type and lifecycle,
// giving the isolation asked for ("": any) and running limits with the cgroups its tag
// asks for, not lost, and under their max_workloads.
func Candidates(nexlets []registry.Nexlet, req *v1.AuctionRequest, isolation string, counts map[string]int) []registry.Nexlet {
	cgroups := req.Tags[v1.TagCgroups]
	var out []registry.Nexlet
	for _, e := range nexlets {
		if e.Ready && e.Reg.RegisterType == req.Type && slices.Contains(e.Reg.Lifecycles, req.Lifecycle) && Isolates(e, isolation) &&
			(cgroups == "" || CgroupsOf(e) == cgroups) && e.Health != v1.HealthLost &&
			(e.Reg.MaxWorkloads <= 0 || counts[e.Reg.NexletID] < e.Reg.MaxWorkloads) {
			out = append(out, e)
		}
	}
	return out
}

// NoCandidate says why no nexlet of the requested type can bid (Candidates found none),
// and whether one may bid in a moment (soon: it is still registering).
func NoCandidate(nexlets []registry.Nexlet, req *v1.AuctionRequest, counts map[string]int) (why string, soon bool) {
	var reasons []string
	for _, e := range nexlets {
		id := e.Reg.NexletID
		if e.Reg.RegisterType != req.Type || !slices.Contains(e.Reg.Lifecycles, req.Lifecycle) {
			continue
		}
		switch {
		case e.Health == v1.HealthRegistering:
			soon = true
			reasons = append(reasons, fmt.Sprintf("nexlet %s is still registering (reconciling its workloads); try again in a moment", id))
		case e.Health == v1.HealthLost:
			reasons = append(reasons, fmt.Sprintf("nexlet %s is lost (no heartbeat since %s)", id, e.LastHeartbeat.UTC().Format(time.RFC3339)))
		case e.Reg.MaxWorkloads > 0 && counts[id] >= e.Reg.MaxWorkloads:
			reasons = append(reasons, fmt.Sprintf("nexlet %s is at capacity (%s)", id, words.Count(counts[id], "workload", "workloads")))
		}
	}
	if len(reasons) == 0 {
		return fmt.Sprintf("no nexlet of type %s can take a %s workload", req.Type, req.Lifecycle), false
	}
	sort.Strings(reasons)
	return strings.Join(reasons, "; "), soon
}

// Isolates says whether nexlet e gives a workload the isolation it asks for ("": any).
func Isolates(e registry.Nexlet, want string) bool {
	have := e.Reg.Isolation
	if have == "" {
		have = v1.IsolationNone
	}
	return want == "" || want == have
}

// Enforces says whether nexlet e limits every resource of names.
func Enforces(e registry.Nexlet, names []string) bool {
	for _, name := range names {
		if !slices.Contains(e.Reg.Limits, name) {
			return false
		}
	}
	return true
}

// CgroupsOf is the cgroups kind nexlet e enforces limits with.
func CgroupsOf(e registry.Nexlet) string {
	if e.Reg.Cgroups == "" {
		return v1.CgroupsNone
	}
	return e.Reg.Cgroups
}

// cgroupsRank orders cgroup kinds, best last.
var cgroupsRank = map[string]int{v1.CgroupsNone: 0, v1.CgroupsV1: 1, v1.CgroupsV2: 2}

// BestCgroups is the best cgroups kind among the ready nexlets of type typ ("": any
// type), none when there is none.
func BestCgroups(nexlets []registry.Nexlet, typ string) string {
	best := v1.CgroupsNone
	for _, e := range nexlets {
		if e.Ready && (typ == "" || e.Reg.RegisterType == typ) && cgroupsRank[CgroupsOf(e)] > cgroupsRank[best] {
			best = CgroupsOf(e)
		}
	}
	return best
}

// LimitsReason says why none of candidates, nexlets of req's type, can enforce the
// limits req asks for; best is the best cgroups kind of that type here.
func LimitsReason(req *v1.AuctionRequest, candidates []registry.Nexlet, best string) string {
	names := req.Resources.Names()
	for _, name := range names {
		if !slices.ContainsFunc(candidates, func(e registry.Nexlet) bool { return slices.Contains(e.Reg.Limits, name) }) {
			return fmt.Sprintf("cannot enforce resources.%s: no nexlet of type %s here limits %s (%s=%s)", name, req.Type, name, v1.TagCgroups, best)
		}
	}
	return fmt.Sprintf("cannot enforce resources.%s together: no nexlet of type %s here limits all of them (%s=%s)",
		strings.Join(names, ", "), req.Type, v1.TagCgroups, best)
}

// IsolationFor is the best isolation a nexlet of type typ offers.
func IsolationFor(nexlets []registry.Nexlet, typ string) string {
	for _, e := range nexlets {
		if e.Reg.RegisterType == typ && e.Reg.Isolation == v1.IsolationUID {
			return v1.IsolationUID
		}
	}
	return v1.IsolationNone
}

// NodeIsolation is what the node's tags say of its nexlets together: uid when every one
// runs each workload as a user of its own (else none), namespaces when every one runs it
// in a sandbox of its own (else none); none of either without nexlets.
func NodeIsolation(nexlets []registry.Nexlet) (isolation, sandbox string) {
	isolation, sandbox = v1.IsolationNone, v1.SandboxNone
	if len(nexlets) == 0 {
		return isolation, sandbox
	}
	isolation, sandbox = v1.IsolationUID, v1.SandboxNamespaces
	for _, e := range nexlets {
		if e.Reg.Isolation != v1.IsolationUID {
			isolation = v1.IsolationNone
		}
		if e.Reg.Sandbox != v1.SandboxNamespaces {
			sandbox = v1.SandboxNone
		}
	}
	return isolation, sandbox
}
