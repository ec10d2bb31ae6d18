package native

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

// runAs is the user a workload asked to run as (start_request.user and .group).
type runAs struct {
	uid, gid uint32
	name     string // the user's name, or its number when it has no name
	home     string // its home from the user database; the workdir when it has none
}

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
			ids, err := lookupIDs(name)
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

// lookupIDs finds the IDs name stands for: a user's UID, a group's GID, or a number.
func lookupIDs(name string) ([]uint32, error) {
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

// allows says whether namespace ns may use the user or group named name (or numbered id).
func (p RunAsPolicy) allows(ns, name string, id uint32) bool {
	num := strconv.FormatUint(uint64(id), 10)
	if l := p[ns]; slices.Contains(l, name) || slices.Contains(l, num) {
		return true
	}
	l := p["*"]
	return id >= MinSharedID && (slices.Contains(l, name) || slices.Contains(l, num))
}

// listed is what ns may run as, for error messages.
func (p RunAsPolicy) listed(ns string) string {
	var l []string
	l = append(l, p[ns]...)
	l = append(l, p["*"]...)
	if len(l) == 0 {
		return "nothing"
	}
	return strings.Join(l, ", ")
}

// resolveRunAs finds the user and group a start request names; nil when it names none.
// It runs only when the nexlet is root, only as a user (and group) the operator's policy
// lists for the workload's namespace, and never as a UID of the workload pool (another
// workload's user).
func (d *Driver) resolveRunAs(sr *parsed, ns, workdir string) (*runAs, error) {
	if sr.User == "" && sr.Group == "" {
		return nil, nil
	}
	bad := func(field, format string, args ...any) error {
		return v1.Errorf(v1.CodeForbidden, "start_request.%s: "+format, append([]any{field}, args...)...)
	}
	if sr.User == "" {
		return nil, v1.Errorf(v1.CodeSchemaInvalid, "start_request.group: %q needs start_request.user as well", sr.Group)
	}
	if euid := os.Geteuid(); euid != 0 {
		return nil, bad("user", "this nexlet runs as UID %d, not root, so it cannot run a workload as %q", euid, sr.User)
	}
	r := &runAs{home: workdir}
	if n, err := strconv.ParseUint(sr.User, 10, 32); err == nil {
		r.uid, r.gid, r.name = uint32(n), uint32(n), sr.User
		if u, err := user.LookupId(sr.User); err == nil {
			r.name = u.Username
			r.setFrom(u)
		}
	} else {
		u, err := user.Lookup(sr.User)
		if err != nil {
			return nil, v1.Errorf(v1.CodeSchemaInvalid, "start_request.user: no user %q on this machine", sr.User)
		}
		r.name = u.Username
		n, _ := strconv.ParseUint(u.Uid, 10, 32)
		r.uid = uint32(n)
		r.setFrom(u)
	}
	policy := d.opts.RunAs
	if !policy.allows(ns, r.name, r.uid) && !policy.allows(ns, sr.User, r.uid) {
		return nil, bad("user", "namespace %s may not run as %s (UID %d): this node lets it run as %s (nexd --run-as NS=USER)", ns, r.name, r.uid, policy.listed(ns))
	}
	if sr.Group != "" {
		gname := sr.Group
		if n, err := strconv.ParseUint(sr.Group, 10, 32); err == nil {
			if g, err := user.LookupGroupId(sr.Group); err == nil {
				gname = g.Name
			}
			if gid := uint32(n); gid != r.gid {
				r.gid = gid
				if !policy.allows(ns, gname, gid) {
					return nil, bad("group", "namespace %s may not run as group %s (GID %d): this node lets it use %s and the user's own group", ns, gname, gid, policy.listed(ns))
				}
			}
		} else {
			g, err := user.LookupGroup(sr.Group)
			if err != nil {
				return nil, v1.Errorf(v1.CodeSchemaInvalid, "start_request.group: no group %q on this machine", sr.Group)
			}
			n, _ := strconv.ParseUint(g.Gid, 10, 32)
			if gid := uint32(n); gid != r.gid {
				r.gid = gid
				if !policy.allows(ns, g.Name, gid) {
					return nil, bad("group", "namespace %s may not run as group %s (GID %d): this node lets it use %s and the user's own group", ns, g.Name, gid, policy.listed(ns))
				}
			}
		}
	}
	switch {
	case r.gid == 0 && !policy.allows(ns, "0", 0) && !policy.allows(ns, "root", 0):
		return nil, bad("group", "namespace %s may not run with group root (GID 0) unless --run-as names it for that namespace", ns)
	case d.opts.UIDs != nil && (d.opts.UIDs.Contains(r.uid) || d.opts.UIDs.Contains(r.gid)):
		return nil, bad("user", "UID or GID %d:%d lies in the workload UID pool (%s): it is another workload's user", r.uid, r.gid, d.opts.UIDs)
	case d.uids == nil:
		if err := openWorkloadsRoot(d.opts.DataDir); err != nil { // so that user reaches its workdir
			return nil, v1.Errorf(v1.CodeUnavailable, "%v", err)
		}
	}
	return r, nil
}

func (r *runAs) setFrom(u *user.User) {
	if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
		r.gid = uint32(n)
	}
	if u.HomeDir != "" {
		r.home = u.HomeDir
	}
}
