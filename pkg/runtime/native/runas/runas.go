// Package runas resolves the user a workload of the native runtime asks to run as
// (start_request.user and .group) against the operator's run-as policy. It keeps no state.
package runas

import (
	"os"
	"os/user"
	"strconv"

	"github.com/nexrun/nex/internal/hostusers"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// User is the user a workload asked to run as (start_request.user and .group).
type User struct {
	uid, gid uint32
	name     string // the user's name, or its number when it has no name
	home     string // its home from the user database; the workdir when it has none
}

// IDs are the user's UID and GID.
func (r *User) IDs() (uid, gid uint32) { return r.uid, r.gid }

// Name is the user's name, or its number when it has no name.
func (r *User) Name() string { return r.name }

// Home is the user's home from the user database; the workdir when it has none.
func (r *User) Home() string { return r.home }

// Resolve finds the user and group a start request names (start_request.user and
// .group); nil when it names none. It runs only when the nexlet is root, only as a user
// (and group) policy lists for the workload's namespace ns, and never as a UID of the
// workload pool (another workload's user; nil: no pool). home is the workload's workdir:
// the home of a user with none.
func Resolve(userName, group, ns, home string, policy hostusers.RunAsPolicy, pool *hostusers.UIDRange) (*User, error) {
	if userName == "" && group == "" {
		return nil, nil
	}
	bad := func(field, format string, args ...any) error {
		return v1.Errorf(v1.CodeForbidden, "start_request.%s: "+format, append([]any{field}, args...)...)
	}
	if userName == "" {
		return nil, v1.Errorf(v1.CodeSchemaInvalid, "start_request.group: %q needs start_request.user as well", group)
	}
	if euid := os.Geteuid(); euid != 0 {
		return nil, bad("user", "this nexlet runs as UID %d, not root, so it cannot run a workload as %q", euid, userName)
	}
	r := &User{home: home}
	if n, err := strconv.ParseUint(userName, 10, 32); err == nil {
		r.uid, r.gid, r.name = uint32(n), uint32(n), userName
		if u, err := user.LookupId(userName); err == nil {
			r.name = u.Username
			r.setFrom(u)
		}
	} else {
		u, err := user.Lookup(userName)
		if err != nil {
			return nil, v1.Errorf(v1.CodeSchemaInvalid, "start_request.user: no user %q on this machine", userName)
		}
		r.name = u.Username
		n, _ := strconv.ParseUint(u.Uid, 10, 32)
		r.uid = uint32(n)
		r.setFrom(u)
	}
	if !policy.Allows(ns, r.name, r.uid) && !policy.Allows(ns, userName, r.uid) {
		return nil, bad("user", "namespace %s may not run as %s (UID %d): this node lets it run as %s (nexd --run-as NS=USER)", ns, r.name, r.uid, policy.Listed(ns))
	}
	if group != "" {
		gname := group
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			if g, err := user.LookupGroupId(group); err == nil {
				gname = g.Name
			}
			if gid := uint32(n); gid != r.gid {
				r.gid = gid
				if !policy.Allows(ns, gname, gid) {
					return nil, bad("group", "namespace %s may not run as group %s (GID %d): this node lets it use %s and the user's own group", ns, gname, gid, policy.Listed(ns))
				}
			}
		} else {
			g, err := user.LookupGroup(group)
			if err != nil {
				return nil, v1.Errorf(v1.CodeSchemaInvalid, "start_request.group: no group %q on this machine", group)
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
	case pool != nil && (pool.Contains(r.uid) || pool.Contains(r.gid)):
		return nil, bad("user", "UID or GID %d:%d lies in the workload UID pool (%s): it is another workload's user", r.uid, r.gid, pool)
	}
	return r, nil
}

func (r *User) setFrom(u *user.User) {
	if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
		r.gid = uint32(n)
	}
	if u.HomeDir != "" {
		r.home = u.HomeDir
	}
}
