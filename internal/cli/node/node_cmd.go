package node

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nexrun/nex/internal/cli"
	"github.com/nexrun/nex/internal/nodeflags"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// NodeCmd groups the node commands.
type NodeCmd struct {
	Up       NodeUpCmd       `cmd:"" help:"Run a node here (the same flags as nexd)."`
	List     NodeListCmd     `cmd:"" aliases:"ls" help:"List the nodes that answer."`
	Info     NodeInfoCmd     `cmd:"" help:"Describe one node."`
	Lameduck NodeLameduckCmd `cmd:"" help:"Drain nodes: stop bidding now, stop workloads after a delay, then exit."`
}

// NodeLameduckCmd puts nodes in lameduck mode and follows them until they exit.
type NodeLameduckCmd struct {
	NodeID string            `name:"node-id" help:"The node to drain: its ID, a unique prefix of it, or its name." xor:"target" required:""`
	Tag    map[string]string `name:"tag" mapsep:"," help:"Drain every node with tag k=v (repeatable or comma-separated: all must match)." xor:"target" required:""`
	Delay  time.Duration     `name:"delay" default:"30s" help:"Time before the node stops its workloads and exits."`
	NoWait bool              `name:"no-wait" help:"Return once the nodes accepted, without following them."`
}

// Run drains.
func (c *NodeLameduckCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Client()
	if err != nil {
		return err
	}
	if c.NodeID != "" {
		if c.NodeID, err = cli.ResolveNode(ctx, cl, c.NodeID); err != nil {
			return err
		}
	}
	targets := []string{c.NodeID}
	if len(c.Tag) > 0 {
		nodes, err := cl.ListNodes(ctx)
		if err != nil {
			return err
		}
		targets = nil
		for _, n := range nodes {
			if matches(n.Tags, c.Tag) {
				targets = append(targets, n.NodeID)
			}
		}
		if len(targets) == 0 {
			return fmt.Errorf("no node has tags %v", c.Tag)
		}
	}
	var replies []*v1.LameduckReply
	for _, id := range targets {
		r, err := cl.Lameduck(ctx, id, c.Delay)
		if err != nil {
			return fmt.Errorf("lameduck %s: %w", id, err)
		}
		replies = append(replies, r)
		if !g.JSON {
			fmt.Fprintf(g.Stdout(), "Node %s is in lameduck mode; it stops its workloads at %s\n", id, r.Deadline.Local().Format(time.TimeOnly))
		}
	}
	if c.NoWait {
		if g.JSON {
			return cli.WriteJSON(g.Stdout(), replies)
		}
		return nil
	}
	return c.follow(ctx, g, cl, targets, replies)
}

// follow prints each node's progress until every one has exited.
func (c *NodeLameduckCmd) follow(ctx context.Context, g *cli.Globals, cl *client.Client, targets []string, replies []*v1.LameduckReply) error {
	last := map[string]string{}
	countdown := cli.IsTerminal(g.Stdout()) // into a file or a CI log: a line per change, not per second
	bound := time.Now().Add(c.Delay + 2*time.Minute)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		nodes, err := cl.ListNodes(pctx)
		cancel()
		if v1.IsCode(err, v1.CodeUnavailable) {
			nodes, err = nil, nil // no node answers any more: every target has exited
		}
		if err != nil {
			if !cl.Connected() {
				// The NATS server went away with the node (an embedded one): it has exited.
				fmt.Fprintln(g.Stdout(), "The NATS connection closed with the node: it has exited.")
				return nil
			}
			return err
		}
		alive := map[string]v1.NodeInfo{}
		for _, n := range nodes {
			alive[n.NodeID] = n
		}
		remaining := 0
		for i, id := range targets {
			n, up := alive[id]
			line := "exited"
			if up {
				remaining++
				left := time.Until(replies[i].Deadline).Round(time.Second)
				switch {
				case left > 0 && countdown:
					line = fmt.Sprintf("%s, %s, stopping them in %s", strings.ToUpper(n.State), cli.Plural(n.Workloads, "workload"), left)
				case left > 0:
					line = fmt.Sprintf("%s, %s, stopping them at %s", strings.ToUpper(n.State), cli.Plural(n.Workloads, "workload"), replies[i].Deadline.Local().Format(time.TimeOnly))
				default:
					line = fmt.Sprintf("%s, stopping %s", strings.ToUpper(n.State), cli.Plural(n.Workloads, "workload"))
				}
			}
			if line != last[id] && !g.JSON {
				fmt.Fprintf(g.Stdout(), "  %s: %s\n", cli.Short(id), line)
			}
			last[id] = line
		}
		if remaining == 0 {
			if g.JSON {
				return cli.WriteJSON(g.Stdout(), replies)
			}
			fmt.Fprintln(g.Stdout(), "Every node drained and exited.")
			return nil
		}
		if time.Now().After(bound) {
			return fmt.Errorf("%d node(s) still running %s after the lameduck delay", remaining, 2*time.Minute)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// NodeUpCmd runs a node here: it runs nexd, with the same flags and config.
type NodeUpCmd struct {
	nodeflags.Options
}

// Run replaces this process with nexd (found beside nex, else on PATH), given the
// command line's flags and the nex flags nexd shares (config, NATS), so Ctrl+C and the
// exit code are nexd's. The nex CLI links neither the node nor the NATS server.
func (c *NodeUpCmd) Run(ctx context.Context, g *cli.Globals) error {
	if err := nodeflags.RefuseSeedArgs(os.Args[1:]); err != nil {
		return err
	}
	nexd, err := findNexd()
	if err != nil {
		return err
	}
	nex := "nex" // as this command was typed: bin/nex after make run, nex once installed
	if strings.Contains(os.Args[0], "/") {
		nex = os.Args[0]
	}
	args := append([]string{nexd}, nexdArgs(os.Args[1:])...)
	if g.ConfigUsed() != "" && !slices.ContainsFunc(args, func(a string) bool { return a == "--config" || strings.HasPrefix(a, "--config=") }) {
		args = append(args, "--config="+g.ConfigUsed()) // the file nex read, found by the same search
	}
	args = append(args, "--cli-hint="+nex)
	return syscall.Exec(nexd, args, os.Environ())
}

// findNexd is the nexd binary: beside this nex (as make build and the release lay them
// out), else the first on PATH.
func findNexd() (string, error) {
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "nexd"); executable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("nexd"); err == nil {
		return p, nil
	}
	return "", v1.Errorf(v1.CodeInternal, "nex node up runs nexd, and there is none beside %s or on PATH: build it (make build puts it in bin/) or install it", os.Args[0])
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// nexdArgs is nex's command line for nexd: the words "node" and "up" and the flags only
// nex has (--namespace, --json) left out; the node's flags, --config and the NATS flags
// are nexd's too.
func nexdArgs(args []string) []string {
	var out []string
	cmd := []string{"node", "up"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case len(cmd) > 0 && a == cmd[0]:
			cmd = cmd[1:]
		case a == "--namespace":
			i++ // and its value
		case strings.HasPrefix(a, "--namespace="), a == "--json", strings.HasPrefix(a, "--json="):
		default:
			out = append(out, a)
		}
	}
	return out
}

// NodeListCmd lists nodes.
type NodeListCmd struct {
	Filter         map[string]string `name:"filter" mapsep:"," help:"Only nodes with tag k=v (repeatable, or comma-separated)."`
	cli.ListOutput `embed:""`
}

// Run lists the nodes.
func (c *NodeListCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Client()
	if err != nil {
		return err
	}
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
	if done, err := cli.WriteList(g, c.ListOutput, out, func(n v1.NodeInfo) string { return n.NodeID }); done {
		return err
	}
	if len(out) == 0 {
		fmt.Fprintln(g.Stdout(), "No nodes found.")
		return nil
	}
	cols := []string{"NEXUS", "ID", "NAME", "VERSION", "UPTIME", "STATE", "NEXLETS"}
	if c.Wide() {
		cols = append(cols, "TAGS")
	}
	t := cli.NewTable(cols...)
	for _, n := range out {
		var nexlets []string
		for _, x := range n.Nexlets {
			nexlets = append(nexlets, fmt.Sprintf("%s(%s,%s)", x.NexletID, x.RegisterType, x.Health))
		}
		row := []string{n.Nexus, n.NodeID, n.Name, n.Version, time.Duration(n.Uptime).String(), strings.ToUpper(n.State), strings.Join(nexlets, " ")}
		if c.Wide() {
			row = append(row, tagList(n.Tags))
		}
		t.Row(row...)
	}
	return t.Write(g.Stdout())
}

// tagList is tags as k=v,k=v in key order.
func tagList(tags map[string]string) string {
	var kv []string
	for k, v := range tags {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
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
	NodeID string `arg:"" help:"Node ID (N...), a unique prefix of it, or the node's name."`
	Full   bool   `name:"full" help:"Include each nexlet's start-request schema."`
}

// Run prints the node.
func (c *NodeInfoCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Client()
	if err != nil {
		return err
	}
	if c.NodeID, err = cli.ResolveNode(ctx, cl, c.NodeID); err != nil {
		return err
	}
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
		return cli.WriteJSON(g.Stdout(), n)
	}
	w := g.Stdout()
	fmt.Fprintf(w, "Node:      %s\nName:      %s\nNexus:     %s\nVersion:   %s (%s)\nState:     %s\nUptime:    %s\nWorkloads: %d\n",
		n.NodeID, n.Name, n.Nexus, n.Version, n.Commit, strings.ToUpper(n.State), time.Duration(n.Uptime), n.Workloads)
	if c := n.Capacity; c != nil {
		fmt.Fprintf(w, "Capacity:  memory %s of %s requested, cpu %s of %s requested (%s kept for the node; placement %s)\n",
			c.RequestedMemory, c.Memory-c.ReservedMemory, v1.FormatCores(c.RequestedCPU), v1.FormatCores(c.CPU-c.ReservedCPU),
			kept(c), c.Placement)
	}
	fmt.Fprintln(w, "Tags:")
	for _, k := range slices.Sorted(maps.Keys(n.Tags)) {
		fmt.Fprintf(w, "  %s=%s\n", k, n.Tags[k])
	}
	fmt.Fprintln(w, "Nexlets:")
	t := cli.NewTable("  ID", "TYPE", "VERSION", "LIFECYCLES", "WORKLOADS", "HEALTH", "ISOLATION", "SANDBOX", "LIMITS", "LAST HEARTBEAT")
	for _, x := range n.Nexlets {
		limits := cmp.Or(x.Cgroups, v1.CgroupsNone)
		if len(x.Limits) > 0 {
			limits += ":" + strings.Join(x.Limits, ",")
		}
		t.Row("  "+x.NexletID, x.RegisterType, x.Version, strings.Join(x.Lifecycles, ","), fmt.Sprint(x.Workloads), x.Health,
			cmp.Or(x.Isolation, v1.IsolationNone), cmp.Or(x.Sandbox, v1.SandboxNone), limits, x.LastHeartbeat.Local().Format(time.TimeOnly))
	}
	if err := t.Write(w); err != nil {
		return err
	}
	if c.Full {
		for _, x := range n.Nexlets {
			var pretty bytes.Buffer
			if json.Indent(&pretty, x.StartRequestSchema, "  ", "  ") != nil {
				pretty.Reset()
				pretty.Write(x.StartRequestSchema)
			}
			fmt.Fprintf(w, "Start request schema of %s:\n  %s\n", x.NexletID, pretty.String())
		}
	}
	return nil
}

// kept says what a node keeps back for itself: "256 MiB, 0.5 cpu", or "nothing".
func kept(c *v1.NodeCapacity) string {
	var parts []string
	if c.ReservedMemory > 0 {
		parts = append(parts, c.ReservedMemory.String())
	}
	if c.ReservedCPU > 0 {
		parts = append(parts, v1.FormatCores(c.ReservedCPU)+" cpu")
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}
