// Package hostusers holds the operator's choices of the machine's users that workloads
// run as: the range of UIDs each workload gets one of (--workload-uids) and who a
// namespace's workloads may run as (--run-as). nexd checks its flags with it without
// linking the native nexlet, which enforces them.
package hostusers

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// DefaultUIDs is the range --workload-uids takes by default: above the UIDs distributions
// give to people and to their own services, below 2^31.
const DefaultUIDs = "200000-265535"

// UIDRange is the first and last UID workloads may run as.
type UIDRange struct{ First, Last uint32 }

// ParseUIDRange reads "FIRST-LAST" (e.g. 200000-265535).
func ParseUIDRange(s string) (UIDRange, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	first, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	last, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return UIDRange{}, fmt.Errorf("workload UIDs %q: want FIRST-LAST, e.g. %s", s, DefaultUIDs)
	}
	r := UIDRange{First: uint32(first), Last: uint32(last)}
	switch {
	case r.First > r.Last:
		return UIDRange{}, fmt.Errorf("workload UIDs %q: the first is above the last", s)
	case r.First == r.Last:
		return UIDRange{}, fmt.Errorf("workload UIDs %q: one UID; nexlet-native keeps one of the range for itself (it ends workloads' processes as it), so give at least two", s)
	case r.First < 1000:
		return UIDRange{}, fmt.Errorf("workload UIDs %q: UIDs below 1000 belong to the system", s)
	case r.Last >= 1<<31-1:
		return UIDRange{}, fmt.Errorf("workload UIDs %q: the last must be below 2147483647", s)
	}
	if self := uint32(os.Geteuid()); self >= r.First && self <= r.Last {
		return UIDRange{}, fmt.Errorf("workload UIDs %q: the range holds this process's own UID %d", s, self)
	}
	return r, nil
}

func (r UIDRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// Contains reports whether uid is in the range.
func (r *UIDRange) Contains(uid uint32) bool { return r.First <= uid && uid <= r.Last }

// RunAsPolicy is who a namespace's workloads may run as (start_request.user, .group):
// namespace ("*" for every one) to the user and group names or numbers the operator
// listed. Nothing is allowed that is not listed; a "*" entry never admits root or a
// system account (UID or GID below MinSharedID), which need their namespace named.
type RunAsPolicy map[string][]string

// MinSharedID is the lowest UID or GID a "*" entry of the run-as policy admits.
const MinSharedID = 1000

// ParseRunAs reads the run-as policy from NS=NAME entries ("none", or nothing: no one).
func ParseRunAs(entries []string) (RunAsPolicy, error) {
	p := RunAsPolicy{}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || e == "none" {
			continue
		}
		ns, name, ok := strings.Cut(e, "=")
		if !ok || name == "" {
			why := ""
			if e == "any" {
				why = ": 'any' let every tenant run as every user of the machine and is gone"
			}
			return nil, fmt.Errorf("--run-as %q%s; name each namespace's users and groups: NS=NAME (a user or a group, by name or number; * for every namespace, never root or an ID below %d), e.g. --run-as a=svc-a,b=svc-b, or none", e, why, MinSharedID)
		}
		if ns != "*" {
			if err := v1.ValidateNamespace(ns); err != nil {
				return nil, fmt.Errorf("--run-as %q: %w", e, err)
			}
		}
		p[ns] = append(p[ns], name)
	}
	return p, nil
}

// Check looks each name up on this machine: a name that is neither a user nor a group
// is refused (a typo would silently allow nothing), and so is a "*" entry for root or a
// system account (below MinSharedID), which would be refused at every start anyway.
func (p RunAsPolicy) Check() error {
	for ns, names := range p {
		for _, name := range names {
			ids, err := LookupIDs(name)
			if err != nil {
				return fmt.Errorf("--run-as %s=%s: %w", ns, name, err)
			}
			if ns != "*" {
				continue
			}
			for _, id := range ids {
				if id < MinSharedID {
					return fmt.Errorf("--run-as *=%s: ID %d is root or a system account: name the namespace that may use it (NS=%s), never *", name, id, name)
				}
			}
		}
	}
	return nil
}

// LookupIDs finds the IDs name stands for: a user's UID, a group's GID, or a number.
func LookupIDs(name string) ([]uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return []uint32{uint32(n)}, nil
	}
	var ids []uint32
	if u, err := user.Lookup(name); err == nil {
		n, _ := strconv.ParseUint(u.Uid, 10, 32)
		ids = append(ids, uint32(n))
	}
	if g, err := user.LookupGroup(name); err == nil {
		n, _ := strconv.ParseUint(g.Gid, 10, 32)
		ids = append(ids, uint32(n))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no user or group %q on this machine", name)
	}
	return ids, nil
}

// String is the policy in its flag form (NS=NAME, sorted), "none" when empty.
func (p RunAsPolicy) String() string {
	var out []string
	for ns, names := range p {
		for _, n := range names {
			out = append(out, ns+"="+n)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// Allows says whether namespace ns may use the user or group named name (or numbered id).
func (p RunAsPolicy) Allows(ns, name string, id uint32) bool {
	num := strconv.FormatUint(uint64(id), 10)
	if l := p[ns]; slices.Contains(l, name) || slices.Contains(l, num) {
		return true
	}
	l := p["*"]
	return id >= MinSharedID && (slices.Contains(l, name) || slices.Contains(l, num))
}

// Listed is what ns may run as, for error messages.
func (p RunAsPolicy) Listed(ns string) string {
	var l []string
	l = append(l, p[ns]...)
	l = append(l, p["*"]...)
	if len(l) == 0 {
		return "nothing"
	}
	return strings.Join(l, ", ")
}
