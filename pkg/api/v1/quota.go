package v1

import (
	"fmt"
	"strconv"
	"strings"
)

// Quota bounds one namespace across the cluster (a zero field bounds nothing): how many
// workloads (ended ones until removed), and the sums of the memory and cpu they ask for.
type Quota struct {
	Workloads int      `json:"workloads,omitempty"`
	Memory    ByteSize `json:"memory,omitempty"`
	CPU       float64  `json:"cpu,omitempty"`
}

// Usage is what a namespace's workloads hold against its quota.
type Usage struct {
	Workloads int      `json:"workloads"`
	Memory    ByteSize `json:"memory"`
	CPU       float64  `json:"cpu"`
}

// Add counts one more workload asking for res (nil: nothing).
func (u *Usage) Add(res *Resources) {
	u.Workloads++
	if res != nil {
		u.Memory += res.Memory
		u.CPU += res.CPU
	}
}

// UsageReply is one node's answer to USAGE: what each namespace holds there, its quota.
type UsageReply struct {
	NodeID     string                    `json:"node_id"`
	Namespaces map[string]NamespaceUsage `json:"namespaces"`
}

// NamespaceUsage is a namespace's usage, and its quota when it has one.
type NamespaceUsage struct {
	Usage
	Quota *Quota `json:"quota,omitempty"`
}

// BundleBucketReply names the namespace's bundle bucket, made or found.
type BundleBucketReply struct {
	Bucket   string `json:"bucket"`
	MaxBytes int64  `json:"max_bytes"`
}

// Zero says whether q bounds nothing.
func (q Quota) Zero() bool { return q == Quota{} }

// String writes q as ParseQuota reads it.
func (q Quota) String() string {
	var out []string
	if q.Workloads > 0 {
		out = append(out, "workloads="+strconv.Itoa(q.Workloads))
	}
	if q.Memory > 0 {
		out = append(out, "memory="+strings.ReplaceAll(q.Memory.String(), " ", "")) // as the flag is written
	}
	if q.CPU > 0 {
		out = append(out, "cpu="+FormatCores(q.CPU))
	}
	return strings.Join(out, ",")
}

// ParseQuota reads a quota as the flag writes it: "workloads=20,memory=8GiB,cpu=4" (any).
func ParseQuota(s string) (Quota, error) {
	q, seen := Quota{}, map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok {
			return q, fmt.Errorf("%q: want NAME=VALUE, with NAME workloads, memory or cpu (workloads=20,memory=8GiB,cpu=4)", kv)
		}
		if seen[k] { // the last one won, unsaid (a newcomer's walk)
			return q, fmt.Errorf("%q: %s is given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "workloads":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return q, fmt.Errorf("workloads=%s: want a number of workloads above 0", v)
			}
			q.Workloads = n
		case ResourceMemory:
			b, err := ParseByteSize(v)
			if err != nil || b <= 0 {
				return q, fmt.Errorf("memory=%s: want a size above 0, like 8GiB", v)
			}
			q.Memory = b
		case ResourceCPU:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f > 0) || f > 1e6 {
				return q, fmt.Errorf("cpu=%s: want a number of cores above 0, like 4", v)
			}
			q.CPU = f
		default:
			return q, fmt.Errorf("%q: unknown quota %q (workloads, memory or cpu)", kv, k)
		}
	}
	if q.Zero() {
		return q, fmt.Errorf("%q: a quota names at least one of workloads, memory, cpu (workloads=20,memory=8GiB,cpu=4)", s)
	}
	return q, nil
}

// ParseQuotas reads the entries of nexd --namespace-quota: NS=QUOTA, where NS is a
// namespace or "*" (every namespace but system that has no entry of its own).
func ParseQuotas(entries []string) (map[string]Quota, error) {
	out := map[string]Quota{}
	for _, e := range entries {
		ns, q, ok := strings.Cut(e, "=")
		if !ok || ns == "" {
			return nil, fmt.Errorf("--namespace-quota %q: want NS=workloads=N,memory=SIZE,cpu=CORES (NS a namespace, or * for every one)", e)
		}
		if ns != "*" {
			if err := ValidateNamespace(ns); err != nil {
				return nil, fmt.Errorf("--namespace-quota %q: %w", e, err)
			}
		}
		if _, dup := out[ns]; dup {
			return nil, fmt.Errorf("--namespace-quota: namespace %s has two quotas", ns)
		}
		quota, err := ParseQuota(q)
		if err != nil {
			return nil, fmt.Errorf("--namespace-quota %s: %w", ns, err)
		}
		out[ns] = quota
	}
	return out, nil
}

// QuotaOf is the quota of namespace ns among quotas ("*" for those with none of their
// own, never for system); ok is false when none applies.
func QuotaOf(quotas map[string]Quota, ns string) (Quota, bool) {
	if q, ok := quotas[ns]; ok {
		return q, true
	}
	if ns == SystemNamespace {
		return Quota{}, false
	}
	q, ok := quotas["*"]
	return q, ok
}

// Exceeds says which part of q usage with one more workload asking for res would go past
// ("" when none), naming the quota and what is in use.
func (q Quota) Exceeds(ns string, u Usage, res *Resources) string {
	var mem ByteSize
	var cpu float64
	if res != nil {
		mem, cpu = res.Memory, res.CPU
	}
	switch {
	case q.Workloads > 0 && u.Workloads+1 > q.Workloads:
		return fmt.Sprintf("namespace %s has %d workload%s, its quota is %d", ns, u.Workloads, map[bool]string{true: "s"}[u.Workloads != 1], q.Workloads)
	case q.Memory > 0 && mem == 0:
		return fmt.Sprintf("namespace %s has a memory quota (%s): a start must ask for start_request.resources.memory, or the node give it a default (nexd --default-limits)", ns, q.Memory)
	case q.CPU > 0 && cpu == 0:
		return fmt.Sprintf("namespace %s has a cpu quota (%s): a start must ask for start_request.resources.cpu, or the node give it a default (nexd --default-limits)", ns, FormatCores(q.CPU))
	case q.Memory > 0 && u.Memory+mem > q.Memory:
		return fmt.Sprintf("namespace %s asks for %s memory, %s of its quota of %s is in use", ns, mem, u.Memory, q.Memory)
	case q.CPU > 0 && u.CPU+cpu > q.CPU+0.001:
		return fmt.Sprintf("namespace %s asks for %s cpu, %s of its quota of %s is in use", ns, FormatCores(cpu), FormatCores(u.CPU), FormatCores(q.CPU))
	}
	return ""
}
