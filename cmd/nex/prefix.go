package main

import (
	"context"
	"fmt"
	"strings"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// workloadIDLen is the length of a workload ID (v1.NewID); a shorter one is a prefix.
const workloadIDLen = v1.IDLen

// resolveWorkload turns a unique prefix of a workload ID of the namespace (lists show
// 12 characters) into the whole ID. A whole ID, or a prefix that matches nothing, is
// returned as it is (the request then says not found); an ambiguous one is an error
// listing the matches.
func resolveWorkload(ctx context.Context, cl *client.Client, id string) (string, error) {
	if len(id) >= workloadIDLen || v1.ValidateToken("workload ID", id) != nil {
		return id, nil
	}
	list, err := cl.List(ctx, v1.ListRequest{NoMetadata: true})
	if err != nil {
		return "", err
	}
	var matches []string
	for _, w := range list {
		if strings.HasPrefix(w.ID, id) {
			matches = append(matches, fmt.Sprintf("%s (%s, %s)", w.ID, w.Name, w.State))
		}
	}
	return pick(id, "workload", matches)
}

// resolveNode turns a unique prefix of a node ID, or a node's name, into the whole ID.
func resolveNode(ctx context.Context, cl *client.Client, id string) (string, error) {
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

// pick is the one match's ID, id itself when nothing matches, or an error naming them all.
func pick(id, what string, matches []string) (string, error) {
	switch len(matches) {
	case 0:
		return id, nil
	case 1:
		whole, _, _ := strings.Cut(matches[0], " ")
		return whole, nil
	}
	return "", v1.BadRequest("%s ID prefix %q is ambiguous: it matches %s", what, id, strings.Join(matches, ", "))
}

// resolveKept is resolveWorkload for what outlives a workload (its logs and events): when
// no node answers, the ID is used as given.
func resolveKept(ctx context.Context, cl *client.Client, id string) (string, error) {
	whole, err := resolveWorkload(ctx, cl, id)
	if v1.IsCode(err, v1.CodeUnavailable) {
		return id, nil
	}
	return whole, err
}
