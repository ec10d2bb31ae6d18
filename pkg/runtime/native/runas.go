package native

import (
	"os"
	"os/user"
	"strconv"

	"github.com/nexrun/nex/internal/hostusers"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native/workdir"
)

// runAs is the user a workload asked to run as (start_request.user and .group).
type runAs struct {
	uid, gid uint32
	name     string // the user's name, or its number when it has no name
	home     string // its home from the user database; the workdir when it has none
}

// RunAsPolicy is who a namespace's workloads may run as (hostusers.RunAsPolicy).
type RunAsPolicy = hostusers.RunAsPolicy

// MinSharedID is the lowest UID or GID a "*" entry of the run-as policy admits.
const MinSharedID = hostusers.MinSharedID

// ParseRunAs reads the run-as policy from NS=NAME entries ("none", or nothing: no one).
func ParseRunAs(entries []string) (RunAsPolicy, error) { return hostusers.ParseRunAs(entries) }

// resolveRunAs finds the user and group a start request names; nil when it names none.
// It runs only when the nexlet is root, only as a user (and group) the operator's policy
// lists for the workload's namespace, and never as a UID of the workload pool (another
// workload's user). home is the workload's workdir: the home of a user with none.
func (d *Driver) resolveRunAs(sr *parsed, ns, home string) (*runAs, error) {
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
	r := &runAs{home: home}
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
	if !policy.Allows(ns, r.name, r.uid) && !policy.Allows(ns, sr.User, r.uid) {
		return nil, bad("user", "namespace %s may not run as %s (UID %d): this node lets it run as %s (nexd --run-as NS=USER)", ns, r.name, r.uid, policy.Listed(ns))
	}
	if sr.Group != "" {
		gname := sr.Group
		if n, err := strconv.ParseUint(sr.Group, 10, 32); err == nil {
			if g, err := user.LookupGroupId(sr.Group); err == nil {
				gname = g.Name
			}
			if gid := uint32(n); gid != r.gid {
				r.gid = gid
				if !policy.Allows(ns, gname, gid) {
					return nil, bad("group", "namespace %s may not run as group %s (GID %d): this node lets it use %s and the user's own group", ns, gname, gid, policy.Listed(ns))
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
				if !policy.Allows(ns, g.Name, gid) {
					return nil, bad("group", "namespace %s may not run as group %s (GID %d): this node lets it use %s and the user's own group", ns, g.Name, gid, policy.Listed(ns))
				}
			}
		}
	}
	switch {
	case r.gid == 0 && !policy.Allows(ns, "0", 0) && !policy.Allows(ns, "root", 0):
		return nil, bad("group", "namespace %s may not run with group root (GID 0) unless --run-as names it for that namespace", ns)
	case d.opts.UIDs != nil && (d.opts.UIDs.Contains(r.uid) || d.opts.UIDs.Contains(r.gid)):
		return nil, bad("user", "UID or GID %d:%d lies in the workload UID pool (%s): it is another workload's user", r.uid, r.gid, d.opts.UIDs)
	case d.uids == nil:
		if err := workdir.OpenWorkloadsRoot(d.opts.DataDir); err != nil { // so that user reaches its workdir
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
