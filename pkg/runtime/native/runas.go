package native

import (
	"github.com/nexrun/nex/internal/hostusers"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/runtime/native/runas"
	"github.com/nexrun/nex/pkg/runtime/native/workdir"
)

// RunAsPolicy is who a namespace's workloads may run as (hostusers.RunAsPolicy).
type RunAsPolicy = hostusers.RunAsPolicy

// MinSharedID is the lowest UID or GID a "*" entry of the run-as policy admits.
const MinSharedID = hostusers.MinSharedID

// ParseRunAs reads the run-as policy from NS=NAME entries ("none", or nothing: no one).
func ParseRunAs(entries []string) (RunAsPolicy, error) { return hostusers.ParseRunAs(entries) }

// resolveRunAs finds the user and group a start request names (runas.Resolve); nil when
// it names none. Without a UID pool, the workloads root is opened so that user reaches its
// workdir.
func (d *Driver) resolveRunAs(sr *parsed, ns, home string) (*runas.User, error) {
	r, err := runas.Resolve(sr.User, sr.Group, ns, home, d.opts.RunAs, d.opts.UIDs)
	if r == nil || err != nil || d.uids != nil {
		return r, err
	}
	if err := workdir.OpenWorkloadsRoot(d.opts.DataDir); err != nil { // so that user reaches its workdir
		return nil, v1.Errorf(v1.CodeUnavailable, "%v", err)
	}
	return r, nil
}
