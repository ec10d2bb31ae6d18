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

// A quota naming one of its parts twice is refused, not read as its last (a newcomer's
// walk: --namespace-quota 'a=workloads=4,workloads=2' was accepted, and 2 won).
func TestQuotaPartGivenTwice(t *testing.T) {
	if _, err := ParseQuota("workloads=4,workloads=2"); err == nil || err.Error() != `"workloads=4,workloads=2": workloads is given twice` {
		t.Fatalf("ParseQuota: %v", err)
	}
	if q, err := ParseQuota("workloads=4, memory=1GiB"); err != nil || q.Workloads != 4 || q.Memory != 1<<30 {
		t.Fatalf("ParseQuota of two parts: %+v %v", q, err)
	}
}
