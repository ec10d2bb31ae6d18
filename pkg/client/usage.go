package client

import (
	"context"
	"slices"
	"strings"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// UsageReport is what a namespace's workloads hold across the nodes that answered, and
// its quota. Nodes should share --namespace-quota: when they do not, Quota is nil and
// Differ says so (a node with no quota for the namespace counts as one that differs).
type UsageReport struct {
	Namespace string    `json:"namespace"`
	Usage     v1.Usage  `json:"usage"`
	Quota     *v1.Quota `json:"quota,omitempty"`
	Differ    bool      `json:"quotas_differ,omitempty"`
	Nodes     int       `json:"nodes"`
	quotas    map[v1.Quota]int
}

// Usage sums the USAGE answers of every node: the client's namespace (from system, every
// namespace a node runs or has a quota for; "*" names the quota of those without one).
// missing names nodes that did not answer in time though others named them alive: their
// workloads are not counted.
func (c *Client) Usage(ctx context.Context) (reports []UsageReport, missing []string, err error) {
	by := map[string]*UsageReport{}
	var firstErr error
	missing, err = svc.FanOutMissing(ctx, c.nc, v1.ControlSubject(c.ns, v1.VerbUsage), struct{}{}, c.Straggler, func(r svc.Reply) bool {
		var ur v1.UsageReply
		if err := r.Decode(&ur); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return false
		}
		for ns, u := range ur.Namespaces {
			rep := by[ns]
			if rep == nil {
				rep = &UsageReport{Namespace: ns}
				by[ns] = rep
			}
			rep.Nodes++
			rep.Usage.Workloads += u.Workloads
			rep.Usage.Memory += u.Memory
			rep.Usage.CPU += u.CPU
			if u.Quota != nil {
				if rep.quotas == nil {
					rep.quotas = map[v1.Quota]int{}
				}
				rep.quotas[*u.Quota]++
			}
		}
		return false
	})
	if err != nil {
		return nil, nil, c.noNode(err, "ask for the namespace's usage")
	}
	if len(by) == 0 && firstErr != nil {
		return nil, missing, firstErr
	}
	for _, rep := range by {
		for q, nodes := range rep.quotas {
			if len(rep.quotas) == 1 && nodes == rep.Nodes {
				rep.Quota = &q
			} else {
				rep.Differ = true
			}
		}
		reports = append(reports, *rep)
	}
	slices.SortFunc(reports, func(a, b UsageReport) int { return strings.Compare(a.Namespace, b.Namespace) })
	return reports, missing, nil
}
