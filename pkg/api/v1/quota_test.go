package v1

import "testing"

// A quota's refusal is plain English for one workload as for many (a newcomer's walk:
// "namespace x has 1 workloads").
func TestQuotaRefusalCounts(t *testing.T) {
	for _, c := range []struct {
		used, quota int
		want        string
	}{
		{1, 1, "namespace x has 1 workload, its quota is 1"},
		{2, 2, "namespace x has 2 workloads, its quota is 2"},
		{0, 0, ""},
	} {
		if got := (Quota{Workloads: c.quota}).Exceeds("x", Usage{Workloads: c.used}, nil); got != c.want {
			t.Errorf("%d of %d: %q, want %q", c.used, c.quota, got, c.want)
		}
	}
}
