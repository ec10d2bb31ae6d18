package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/daemon"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node"
)

// NodeCmd groups the node commands.
type NodeCmd struct {
	Up   NodeUpCmd   `cmd:"" help:"Run a node here (the same flags as nexd)."`
	List NodeListCmd `cmd:"" aliases:"ls" help:"List the nodes that answer."`
	Info NodeInfoCmd `cmd:"" help:"Describe one node."`
}

// NodeUpCmd runs nexd in this process.
type NodeUpCmd struct {
	daemon.Options
}

// Run starts the node and blocks until Ctrl+C.
func (c *NodeUpCmd) Run(ctx context.Context, g *Globals) error {
	log, err := daemon.NewLogger(c.LogLevel, c.LogJSON)
	if err != nil {
		return err
	}
	return daemon.Run(ctx, c.Options, g.NATS, log, func(n *node.Node, url string) {
		log.Info("node ready", zap.String("node_id", n.ID()), zap.String("nats", url))
		fmt.Fprintf(os.Stderr, `
Node %s is up (NATS at %s).
Try, in another terminal:
  nex node list -s %s
  nex --namespace default workload start -s %s --type native --lifecycle job --name hello \
      --start-request '{"uri":"file:///bin/echo","argv":["hello from nex"]}'
  nex --namespace default workload list -s %s
Press Ctrl+C to stop the node.
`, n.ID(), url, url, url, url)
	})
}

// NodeListCmd lists nodes.
type NodeListCmd struct {
	Filter map[string]string `name:"filter" help:"Only nodes with tag k=v (repeatable)."`
}

// Run lists the nodes.
func (c *NodeListCmd) Run(ctx context.Context, g *Globals) error {
	cl, nc, err := g.client()
	if err != nil {
		return err
	}
	defer nc.Close()
	nodes, err := cl.ListNodes(ctx)
	if err != nil {
		return err
	}
	var out []v1.NodeInfo
	for _, n := range nodes {
		if matches(n.Tags, c.Filter) {
			out = append(out, n)
		}
	}
	if out == nil {
		out = []v1.NodeInfo{}
	}
	if g.JSON {
		return writeJSON(g.stdout, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(g.stdout, "No nodes found.")
		return nil
	}
	t := newTable("NEXUS", "ID", "NAME", "VERSION", "UPTIME", "STATE", "NEXLETS")
	for _, n := range out {
		var nexlets []string
		for _, x := range n.Nexlets {
			nexlets = append(nexlets, fmt.Sprintf("%s(%s,%s)", x.NexletID, x.RegisterType, x.Health))
		}
		t.row(n.Nexus, n.NodeID, n.Name, n.Version, time.Duration(n.Uptime).String(), strings.ToUpper(n.State), strings.Join(nexlets, " "))
	}
	return t.write(g.stdout)
}

func matches(tags, filter map[string]string) bool {
	for k, v := range filter {
		if tags[k] != v {
			return false
		}
	}
	return true
}

// NodeInfoCmd describes one node.
type NodeInfoCmd struct {
	NodeID string `arg:"" help:"Node ID (N...)."`
	Full   bool   `name:"full" help:"Include each nexlet's start-request schema."`
}

// Run prints the node.
func (c *NodeInfoCmd) Run(ctx context.Context, g *Globals) error {
	cl, nc, err := g.client()
	if err != nil {
		return err
	}
	defer nc.Close()
	n, err := cl.NodeInfo(ctx, c.NodeID)
	if err != nil {
		return err
	}
	if !c.Full {
		for i := range n.Nexlets {
			n.Nexlets[i].StartRequestSchema = nil
		}
	}
	if g.JSON {
		return writeJSON(g.stdout, n)
	}
	w := g.stdout
	fmt.Fprintf(w, "Node:      %s\nName:      %s\nNexus:     %s\nVersion:   %s (%s)\nState:     %s\nUptime:    %s\nWorkloads: %d\n",
		n.NodeID, n.Name, n.Nexus, n.Version, n.Commit, strings.ToUpper(n.State), time.Duration(n.Uptime), n.Workloads)
	keys := make([]string, 0, len(n.Tags))
	for k := range n.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(w, "Tags:")
	for _, k := range keys {
		fmt.Fprintf(w, "  %s=%s\n", k, n.Tags[k])
	}
	fmt.Fprintln(w, "Nexlets:")
	t := newTable("  ID", "TYPE", "VERSION", "LIFECYCLES", "WORKLOADS", "HEALTH", "LAST HEARTBEAT")
	for _, x := range n.Nexlets {
		t.row("  "+x.NexletID, x.RegisterType, x.Version, strings.Join(x.Lifecycles, ","), fmt.Sprint(x.Workloads), x.Health, x.LastHeartbeat.Local().Format(time.TimeOnly))
	}
	if err := t.write(w); err != nil {
		return err
	}
	if c.Full {
		for _, x := range n.Nexlets {
			fmt.Fprintf(w, "Start request schema of %s:\n%s\n", x.NexletID, x.StartRequestSchema)
		}
	}
	return nil
}
