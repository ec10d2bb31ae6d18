package cluster

import (
	"context"
	"slices"
	"strings"
	"sync"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
)

// groupBook is what the coordinator knows of the replica groups that GROUPS and a GROUP
// request from system read beside the actor: why copies are missing (the actor writes
// it as it places copies) and the actor's last listing of the groups. A slow group
// operation under way at the actor held every tenant's list (a review).
type groupBook struct {
	cs      records.ClusterStore
	mu      sync.Mutex
	pending map[string]string      // namespace/group ID -> why copies are missing
	views   map[string]*groupsView // namespace -> the last listing of its groups; "": every group's, the actor's
}

// viewsMost bounds the namespaces whose own listings the book keeps.
const viewsMost = 1024

// groupsView is a listing of groups' records at their revision rev.
type groupsView struct {
	rev    uint64
	groups []*records.Group
}

// why is why copies of namespace ns's group id are missing ("": none are, or the
// coordinator does not know).
func (b *groupBook) why(ns, id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pending[ns+"/"+id]
}

// setWhy records why copies of ns's group id are missing ("": none are).
func (b *groupBook) setWhy(ns, id, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if why == "" {
		delete(b.pending, ns+"/"+id)
	} else {
		b.pending[ns+"/"+id] = why
	}
}

// listed keeps the actor's listing of every group at revision rev.
func (b *groupBook) listed(rev uint64, groups []*records.Group) { b.keep("", rev, groups) }

// at is the actor's last listing of the groups when it was made at revision rev.
func (b *groupBook) at(rev uint64) ([]*records.Group, bool) { return b.viewAt("", rev) }

// viewAt is the last listing of namespace ns's groups (every group's: "") when it was
// made at revision rev.
func (b *groupBook) viewAt(ns string, rev uint64) ([]*records.Group, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v := b.views[ns]; v != nil && v.rev == rev {
		return v.groups, true
	}
	return nil, false
}

// keep keeps a listing of namespace ns's groups (every group's: "") at revision rev.
func (b *groupBook) keep(ns string, rev uint64, groups []*records.Group) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, known := b.views[ns]; !known && len(b.views) >= viewsMost {
		every := b.views[""]
		clear(b.views)
		if every != nil {
			b.views[""] = every
		}
	}
	b.views[ns] = &groupsView{rev: rev, groups: groups}
}

// now is every group's record (ns ""): as the actor's last listing found them while no
// group's record was written since (one read of the last write's sequence), else from
// the store. Of namespace ns, its groups' records alone, listed again only when one of
// them was written: another tenant's writes, each one a new revision of every group,
// had every tenant's GROUPS list every group again (a newcomer's walk: one tenant
// scaling its 1,204 groups four times a second made another's list take 0.35 s).
func (b *groupBook) now(ctx context.Context, ns string) ([]*records.Group, error) {
	rev, err := b.cs.GroupsRevision(ctx, ns)
	if err != nil {
		return nil, records.StorageError(err, "list the replica groups")
	}
	if groups, ok := b.viewAt(ns, rev); ok {
		return groups, nil
	}
	groups, err := b.cs.Groups(ctx, ns)
	if err != nil {
		return nil, records.StorageError(err, "list the replica groups")
	}
	if ns != "" { // every group's listing is the actor's to keep (one of its own term)
		b.keep(ns, rev, groups)
	}
	return groups, nil
}

// namespace is the namespace of the group id that a request from system names ("" when
// no namespace has one): system acts on every namespace's groups, as on their
// workloads, and a group's ID is unique only in its namespace.
func (b *groupBook) namespace(ctx context.Context, id string) (string, error) {
	groups, err := b.now(ctx, "")
	if err != nil {
		return "", err
	}
	var owners []string
	for _, g := range groups {
		if g.ID == id {
			owners = append(owners, g.Definition.Namespace)
		}
	}
	switch len(owners) {
	case 0:
		return "", nil
	case 1:
		return owners[0], nil
	}
	slices.Sort(owners)
	return "", v1.BadRequest("group ID %s is used in namespaces %s: give the namespace (nex --namespace NS ...)", id, strings.Join(owners, ", "))
}
