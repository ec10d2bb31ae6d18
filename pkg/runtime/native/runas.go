package native

import (
	"os"
	"os/user"
	"slices"
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

// RunAnyUser, in Options.RunAs, lets workloads run as any user but root.
const RunAnyUser = "any"

// resolveRunAs finds the user and group a start request names; nil when it names none.
// It runs only when the nexlet is root, only as a user the operator allows (never root
// unless named), and never as a UID of the workload pool (another workload's user).
func (d *Driver) resolveRunAs(sr *parsed, workdir string) (*runAs, error) {
	if sr.User == "" && sr.Group == "" {
		return nil, nil
	}
	bad := func(field, format string, args ...any) error {
		return v1.NewError(400, v1.CodeSchemaInvalid, "start_request.%s: "+format, append([]any{field}, args...)...)
	}
	if sr.User == "" {
		return nil, bad("group", "%q needs start_request.user as well", sr.Group)
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
			return nil, bad("user", "no user %q on this machine", sr.User)
		}
		r.name = u.Username
		n, _ := strconv.ParseUint(u.Uid, 10, 32)
		r.uid = uint32(n)
		r.setFrom(u)
	}
	if sr.Group != "" {
		if n, err := strconv.ParseUint(sr.Group, 10, 32); err == nil {
			r.gid = uint32(n)
		} else {
			g, err := user.LookupGroup(sr.Group)
			if err != nil {
				return nil, bad("group", "no group %q on this machine", sr.Group)
			}
			n, _ := strconv.ParseUint(g.Gid, 10, 32)
			r.gid = uint32(n)
		}
	}
	allowed := d.opts.RunAs
	if len(allowed) == 0 {
		allowed = []string{RunAnyUser}
	}
	uid := strconv.FormatUint(uint64(r.uid), 10)
	named := slices.Contains(allowed, r.name) || slices.Contains(allowed, uid)
	switch {
	case r.uid == 0 && !named:
		return nil, bad("user", "root is not allowed: a workload runs as root only where nexlet-native --run-as names root")
	case !named && !slices.Contains(allowed, RunAnyUser):
		return nil, bad("user", "%s is not among the users workloads may run as here (nexlet-native --run-as %s)", r.name, strings.Join(allowed, ","))
	case d.opts.UIDs != nil && d.opts.UIDs.Contains(r.uid):
		return nil, bad("user", "UID %d belongs to the workload UID pool (%s): it is another workload's user", r.uid, d.opts.UIDs)
	case d.uids == nil:
		if err := openWorkloadsRoot(d.opts.DataDir); err != nil { // so that user reaches its workdir
			return nil, v1.NewError(503, v1.CodeUnavailable, "%v", err)
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
