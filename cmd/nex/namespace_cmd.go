package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nexrun/nex/internal/cli"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// NamespaceCmd reports on namespaces.
type NamespaceCmd struct {
	Usage NamespaceUsageCmd `cmd:"" help:"What the namespace's workloads ask for across the cluster, against its quota (nexd --namespace-quota); in system, every namespace's."`
}

// NamespaceUsageCmd prints usage against quota.
type NamespaceUsageCmd struct{}

// Run reports.
func (c *NamespaceUsageCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Client()
	if err != nil {
		return err
	}
	reports, missing, err := cl.Usage(ctx)
	if err != nil {
		return err
	}
	for _, id := range missing {
		fmt.Fprintf(g.Stderr(), "nex: warning: node %s did not answer in time; its workloads are not counted\n", id)
	}
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), reports)
	}
	t := cli.NewTable("NAMESPACE", "WORKLOADS", "MEMORY", "CPU", "NODES")
	for _, r := range reports {
		q := r.Quota
		if q == nil {
			q = &v1.Quota{}
		}
		of := func(used string, bound bool, quota string) string {
			if !bound {
				return used
			}
			return used + " of " + quota
		}
		ns := r.Namespace
		if ns == "*" {
			ns = "* (each namespace without a quota of its own)"
		}
		t.Row(ns, of(strconv.Itoa(r.Usage.Workloads), q.Workloads > 0, strconv.Itoa(q.Workloads)),
			of(r.Usage.Memory.String(), q.Memory > 0, q.Memory.String()),
			of(v1.FormatCores(r.Usage.CPU), q.CPU > 0, v1.FormatCores(q.CPU)), strconv.Itoa(r.Nodes))
		if r.Differ {
			fmt.Fprintf(g.Stderr(), "nex: warning: the nodes hold namespace %s to different quotas (give every node the same --namespace-quota); none is shown\n", r.Namespace)
		}
	}
	return t.Write(g.Stdout())
}
