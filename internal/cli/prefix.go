package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// workloadIDLen is the length of a workload ID (v1.NewID); a shorter one is a prefix.
const workloadIDLen = v1.IDLen

// ResolveWorkload turns what a user typed for a workload into its whole ID: a whole ID
// as it is; a unique prefix of a workload's ID (lists show 12 characters) or of a replica
// group's (g-...); or a name: one workload's, or that of the copies of one replica group
// (the group's ID then). A group's prefix or name is looked for among the groups the
// coordinator knows as well, so a group none of whose copies could be placed is found,
// and a match no list shows makes it ambiguous. Something that matches nothing is
// returned as it is (the request then says not found); a prefix or a name that matches
// more is an error listing them.
func ResolveWorkload(ctx context.Context, cl *client.Client, arg string) (string, error) {
	isGroup := strings.HasPrefix(arg, v1.GroupIDPrefix)
	if whole := strings.TrimPrefix(arg, v1.GroupIDPrefix); len(whole) == workloadIDLen && v1.ValidateToken("workload ID", whole) == nil {
		return arg, nil
	}
	if v1.ValidateToken("workload ID", arg) != nil {
		return arg, nil
	}
	list, err := cl.List(ctx, v1.ListRequest{NoMetadata: true})
	if err != nil {
		return "", err
	}
	var matches []string
	if !isGroup {
		for _, w := range list {
			if strings.HasPrefix(w.ID, arg) {
				matches = append(matches, fmt.Sprintf("%s (%s, %s)", w.ID, w.Name, w.State))
			}
		}
		if len(matches) > 0 {
			return pick(arg, "workload", matches)
		}
		none, _ := copyless(ctx, cl, list)
		return byName(arg, list, none)
	}
	groups := map[string]bool{}
	for _, w := range list {
		if strings.HasPrefix(w.Group, arg) && !groups[w.Group] {
			groups[w.Group] = true
			matches = append(matches, fmt.Sprintf("%s (%s)", w.Group, w.Name))
		}
	}
	none, known := copyless(ctx, cl, list)
	for _, g := range none {
		if strings.HasPrefix(g.ID, arg) {
			matches = append(matches, fmt.Sprintf("%s (%s, no copy)", g.ID, g.Name))
		}
	}
	for _, m := range matches { // a whole ID is itself, whatever else it starts
		if whole, _, _ := strings.Cut(m, " "); whole == arg {
			return arg, nil
		}
	}
	switch {
	case len(matches) > 0:
		return pick(arg, "replica group", matches)
	case !known:
		return "", v1.Errorf(v1.CodeUnavailable, "no running copy is of a replica group whose ID begins %s, and the coordinator did not answer in %s to say whether a group without copies has one: give the whole ID, or try again", arg, GroupsWait)
	}
	return "", v1.NotFound("replica group %s not found in namespace %s: no group's ID begins so", arg, cl.Namespace())
}

// GroupsWait bounds a question to the coordinator beside a list or a name's lookup (it
// asks again while none answers, as one is chosen): without an answer, what the nodes
// list is all that is known.
const GroupsWait = time.Second

// copyless are the replica groups no copy of which is in list (none could be placed,
// or their nodes are gone), from the coordinator; none when the nodes keep no groups,
// and none, not known, when the coordinator cannot say in GroupsWait.
func copyless(ctx context.Context, cl *client.Client, list []v1.WorkloadInfo) ([]v1.GroupStatus, bool) {
	ctx, cancel := context.WithTimeout(ctx, GroupsWait)
	defer cancel()
	groups, err := cl.Groups(ctx)
	if v1.IsCode(err, v1.CodeNotImplemented) {
		return nil, true // no node serves groups
	}
	if err != nil {
		return nil, false
	}
	listed := map[string]bool{}
	for _, w := range list {
		listed[w.Namespace+"/"+w.Group] = true
	}
	return slices.DeleteFunc(groups, func(g v1.GroupStatus) bool { return listed[g.Namespace+"/"+g.ID] }), true
}

// Resolved connects and turns *id (a whole ID, a prefix or a name) into a whole ID with
// resolve (ResolveWorkload, or OneWorkload for commands about one workload).
func (g *Globals) Resolved(ctx context.Context, id *string, resolve func(context.Context, *client.Client, string) (string, error)) (*client.Client, error) {
	cl, err := g.Client()
	if err != nil {
		return nil, err
	}
	if *id, err = resolve(ctx, cl, *id); err != nil {
		return nil, err
	}
	return cl, nil
}

// OneWorkload is ResolveWorkload for commands about one workload: a replica group (by its
// ID or name) is an error that says how to name one of its copies.
func OneWorkload(ctx context.Context, cl *client.Client, arg string) (string, error) {
	id, err := ResolveWorkload(ctx, cl, arg)
	if err == nil && strings.HasPrefix(id, v1.GroupIDPrefix) {
		return "", v1.BadRequest("%s is replica group %s: name one of its copies (nex workload list --group %s)", arg, id, id)
	}
	return id, err
}

// byName is the workload (or the replica group) named name in list, or the group of that
// name among extra (groups without a copy in list).
func byName(name string, list []v1.WorkloadInfo, extra []v1.GroupStatus) (string, error) {
	var named []string
	groups := map[string]bool{}
	loose := 0 // named workloads that are not copies of a group
	for _, w := range list {
		if w.Name != name {
			continue
		}
		named = append(named, fmt.Sprintf("%s (%s, namespace %s)", w.ID, w.State, w.Namespace))
		if w.Group != "" {
			groups[w.Group] = true
		} else {
			loose++
		}
	}
	for _, g := range extra {
		if g.Name == name {
			named = append(named, fmt.Sprintf("%s (a replica group with no copy, namespace %s)", g.ID, g.Namespace))
			groups[g.ID] = true
		}
	}
	switch {
	case len(named) == 0:
		return name, nil
	case loose == 0 && len(groups) == 1:
		for gid := range groups {
			return gid, nil
		}
	case len(named) == 1:
		whole, _, _ := strings.Cut(named[0], " ")
		return whole, nil
	}
	return "", v1.BadRequest("name %q is shared by %d workloads: %s; give an ID (or a unique prefix of one)", name, len(named), some(named))
}

// ResolveNode turns a unique prefix of a node ID, or a node's name, into the whole ID.
func ResolveNode(ctx context.Context, cl *client.Client, id string) (string, error) {
	if v1.ValidateToken("node ID", id) != nil {
		return id, nil
	}
	nodes, err := cl.ListNodes(ctx)
	if err != nil {
		return "", err
	}
	var matches []string
	for _, n := range nodes {
		if n.NodeID == id {
			return id, nil
		}
		if strings.HasPrefix(n.NodeID, id) {
			matches = append(matches, fmt.Sprintf("%s (%s)", n.NodeID, n.Name))
		}
	}
	if len(matches) == 0 { // not an ID's prefix: a node's name
		for _, n := range nodes {
			if n.Name == id {
				matches = append(matches, fmt.Sprintf("%s (%s)", n.NodeID, n.Name))
			}
		}
		if len(matches) > 1 {
			return "", v1.BadRequest("node name %q is ambiguous: %d nodes have it (%s); give an ID", id, len(matches), strings.Join(matches, ", "))
		}
	}
	return pick(id, "node", matches)
}

// NodeKnown says whether a node with this ID answers.
func NodeKnown(ctx context.Context, cl *client.Client, id string) (bool, error) {
	nodes, err := cl.ListNodes(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(nodes, func(n v1.NodeInfo) bool { return n.NodeID == id }), nil
}

// pick is the one match's ID, id itself when nothing matches, or an error naming them all.
func pick(id, what string, matches []string) (string, error) {
	switch len(matches) {
	case 0:
		return id, nil
	case 1:
		whole, _, _ := strings.Cut(matches[0], " ")
		return whole, nil
	}
	return "", v1.BadRequest("%s ID prefix %q is ambiguous: it matches %s", what, id, some(matches))
}

// some lists at most ten of matches, and how many more there are (an ambiguous "g-" of a
// namespace with 1,204 groups printed 47 KB on one line).
func some(matches []string) string {
	if len(matches) <= 10 {
		return strings.Join(matches, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(matches[:10], ", "), len(matches)-10)
}

// ResolveKept is ResolveWorkload for what outlives a workload (its logs and events): when
// no node answers, the ID is used as given.
func ResolveKept(ctx context.Context, cl *client.Client, id string) (string, error) {
	whole, err := ResolveWorkload(ctx, cl, id)
	if v1.IsCode(err, v1.CodeUnavailable) {
		return id, nil
	}
	return whole, err
}

// Short is the first 12 characters of an ID, as lists show it (unique in practice).
func Short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
