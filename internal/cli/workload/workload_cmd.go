package workload

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/nexrun/nex/internal/cli"
	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/nexfile"
	"github.com/nexrun/nex/pkg/schema"
	"github.com/nexrun/nex/schemas"
)

// WorkloadCmd groups the workload commands.
type WorkloadCmd struct {
	Start   WorkloadStartCmd   `cmd:"" help:"Auction a workload and start it on the winning node."`
	List    WorkloadListCmd    `cmd:"" aliases:"ls" help:"List workloads on every node."`
	Stop    WorkloadStopCmd    `cmd:"" help:"Stop a workload; returns when its processes are gone."`
	Restart WorkloadRestartCmd `cmd:"" help:"Replace a workload with a new copy of it (a replica group: copy by copy, as an update)."`
	Stats   WorkloadStatsCmd   `cmd:"" help:"What a workload uses now: CPU, memory, processes and disk, against its limits."`
	Exec    WorkloadExecCmd    `cmd:"" help:"Run a command beside a running workload: as its user, in its workdir, environment, cgroup and sandbox."`
	Rm      WorkloadRmCmd      `cmd:"" help:"Remove workloads that ended for good (a job that ran, a service that gave up), with their records and workdirs."`
	Info    WorkloadInfoCmd    `cmd:"" help:"Describe one workload."`
	Clone   WorkloadCloneCmd   `cmd:"" help:"Start a copy of a workload on fresh capacity."`
	Scale   WorkloadScaleCmd   `cmd:"" help:"Change how many copies a replica group runs."`
	Update  WorkloadUpdateCmd  `cmd:"" help:"Roll a replica group's copies over to a new definition, one at a time."`
	Logs    WorkloadLogsCmd    `cmd:"" help:"Print a workload's output (history, then -f to follow)."`
	Events  WorkloadEventsCmd  `cmd:"" help:"Print lifecycle events (of one workload, or the namespace)."`
	Trigger WorkloadTriggerCmd `cmd:"" help:"Send a request to a function's trigger subject and print the reply."`
	Bundle  WorkloadBundleCmd  `cmd:"" help:"Put executables into the NATS object store, content-addressed, and write a Nexfile that starts them on any node."`
}

// WorkloadTriggerCmd requests a function through one of its triggers.
type WorkloadTriggerCmd struct {
	Subject string        `arg:"" help:"Trigger subject."`
	Data    string        `arg:"" optional:"" help:"Payload (the function's stdin)."`
	Timeout time.Duration `name:"timeout" default:"10s" help:"How long to wait for the reply."`
}

// Run sends the request and prints the reply; a non-zero exit code of the function is an error.
func (c *WorkloadTriggerCmd) Run(ctx context.Context, g *cli.Globals) error {
	if err := v1.ValidateTriggerSubject(c.Subject); err != nil {
		return err
	}
	nc, err := g.Connect()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	m, err := triggerRequest(ctx, nc.Conn, c.Subject, []byte(c.Data))
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("trigger %s: no function is listening on it (is a function workload with this trigger running? `nex workload list`)", c.Subject)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("trigger %s: no reply within %s (--timeout)", c.Subject, c.Timeout)
	case err != nil:
		return fmt.Errorf("trigger %s: %w", c.Subject, err)
	}
	if !g.JSON && len(m.Data) > 0 && m.Data[len(m.Data)-1] != '\n' && cli.IsTerminal(g.Stdout()) {
		defer fmt.Fprintln(g.Stdout())
	}
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), map[string]any{"subject": c.Subject, "exit_code": m.Header.Get(v1.HeaderExitCode), "error": m.Header.Get(v1.HeaderError), "reply": string(m.Data)})
	}
	fmt.Fprint(g.Stdout(), string(m.Data))
	if e := m.Header.Get(v1.HeaderError); e != "" {
		return fmt.Errorf("function: %s", e)
	}
	if code := m.Header.Get(v1.HeaderExitCode); code != "" && code != "0" {
		return fmt.Errorf("function exited with code %s", code)
	}
	return nil
}

// triggerRequest asks subject with data and waits for the answer on an inbox under the
// workload inbox prefix of the namespace the subject names (its first token): with
// scoped credentials a function answers there and nowhere else (creds.WorkloadPermissions),
// and a tenant's users may read it.
func triggerRequest(ctx context.Context, nc *nats.Conn, subject string, data []byte) (*nats.Msg, error) {
	ns, _, _ := strings.Cut(subject, ".")
	inbox := creds.InboxPrefix(ns) + "." + nuid.Next()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, inbox, data); err != nil {
		return nil, err
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return nil, err
	}
	if err := nc.LastError(); err != nil && strings.Contains(err.Error(), inbox) {
		return nil, fmt.Errorf("this NATS user may not read the answers of namespace %s's functions on %s.> (credentials minted before nex asked for it: mint them again with nex security): %w", ns, creds.InboxPrefix(ns), err)
	} else if err != nil {
		// the server's refusal came before the flush's answer: no reply could come (it
		// waited out --timeout, and said "no reply": a walk)
		if derr := svc.PublishDenied(subject, err.Error()); derr != nil {
			return nil, derr
		}
	}
	m, err := sub.NextMsgWithContext(ctx)
	if err == nil && m.Header.Get("Status") == "503" {
		return nil, nats.ErrNoResponders
	}
	return m, err
}

// WorkloadStartCmd starts a workload from a Nexfile and/or flags.
type WorkloadStartCmd struct {
	Nexfile      string            `name:"nexfile" short:"f" type:"path" help:"Nexfile (YAML or JSON); default ./Nexfile when neither --type nor --start-request is given."`
	Type         string            `name:"type" help:"Workload type (the nexlet register_type, e.g. native)."`
	Lifecycle    string            `name:"lifecycle" help:"service, job or function."`
	Name         string            `name:"name" help:"Workload name."`
	Description  string            `name:"description" help:"Workload description."`
	Tags         map[string]string `name:"tags" mapsep:"," help:"Placement tags k=v (repeatable, or comma-separated); a node must have them all."`
	Isolation    string            `name:"isolation" help:"'required': run only on a node that runs the workload as a user of its own (the tag nex.isolation=uid)."`
	Disconnect   string            `name:"disconnect" help:"'stop': on a node cut off from NATS, stop the workload before the cluster starts it on another node (at most one copy at any moment, at the price of downtime on a NATS outage); default: keep it running."`
	StartRequest string            `name:"start-request" help:"Start request as JSON; must match the nexlet's schema."`
	Replicas     *int              `name:"replicas" help:"Run this many copies (1 or more) as a replica group (needs nodes with --state kv); the group's ID is the one to scale and stop it by."`
	MaxPerNode   int               `name:"max-per-node" help:"With --replicas: the most copies on one node (default 1)."`
	Spread       string            `name:"spread" help:"With --replicas: spread the copies evenly over the values of this node tag (e.g. zone)."`
	WaitHealthy  time.Duration     `name:"wait-healthy" help:"After starting a service with a health check, wait up to this long (e.g. 2m) for it to pass; exit 1 with the check's last failure when it does not." placeholder:"DURATION"`
	Follow       bool              `name:"follow" help:"After starting, print the workload's output until it ends (then exit with its exit code) or Ctrl+C."`
	RequestID    string            `name:"request-id" help:"Makes the start idempotent: started again with the same key in the same namespace, it returns the workload the first start made (default: a key of this invocation, reused when it retries)."`
}

// definition is the workload to start: the Nexfile given with -f, changed by the flags;
// else, when the flags do not say what to run (no --type and no --start-request), the
// ./Nexfile of the current directory, saying so; else the flags alone (an inline start
// takes nothing from a Nexfile that happens to lie there).
func (c *WorkloadStartCmd) definition(g *cli.Globals) (v1.WorkloadDefinition, error) {
	path := c.Nexfile
	if path == "" && c.StartRequest == "" && c.Type == "" {
		var err error
		if path, err = nexfile.Discover(""); err != nil {
			return v1.WorkloadDefinition{}, err
		}
		if path != "" && !g.JSON {
			fmt.Fprintf(g.Stderr(), "nex: starting the workload of ./%s (-f FILE for another; --type and --start-request for none)\n", path)
		}
	} else if path != "" {
		if _, err := nexfile.Discover(path); err != nil {
			return v1.WorkloadDefinition{}, err
		}
	}
	var nf *nexfile.Nexfile
	if path != "" {
		var err error
		if nf, err = nexfile.Load(path); err != nil {
			return v1.WorkloadDefinition{}, err
		}
		if c.Replicas == nil {
			c.Replicas = nf.Replicas // replicas: 0 is refused, as --replicas 0 is
		}
		if c.MaxPerNode == 0 {
			c.MaxPerNode = nf.MaxPerNode
		}
		if c.Spread == "" {
			c.Spread = nf.Spread
		}
	}
	return nexfile.Definition(nf, nexfile.Overrides{
		Name: c.Name, Description: c.Description, Type: c.Type, Lifecycle: c.Lifecycle, Tags: c.Tags, Isolation: c.Isolation, Disconnect: c.Disconnect, StartRequest: c.StartRequest,
	})
}

// checkShipped checks def's start request against the schema that ships with nex for its
// type, when one does (the winning nexlet's own schema is checked again before deploy, by
// the client and by the node).
func checkShipped(def v1.WorkloadDefinition) error {
	if s, err := schemas.StartRequest(def.Type); err == nil {
		if err := schema.Validate(s, def.StartRequest); err != nil {
			return v1.Errorf(v1.CodeSchemaInvalid, "%s", err.Error())
		}
	}
	return nil
}

// clientAfterCheck connects while it checks def (checkShipped), the check on the CPU
// while the connect waits on the network: a start spends no time waiting for either. A
// start request that does not match is the error, whatever the connect did, and nothing
// is sent to a node before the check has passed.
func clientAfterCheck(g *cli.Globals, def v1.WorkloadDefinition) (*client.Client, error) {
	checked := make(chan error, 1)
	go func() { checked <- checkShipped(def) }()
	cl, err := g.Client()
	if cerr := <-checked; cerr != nil {
		return nil, cerr
	}
	return cl, err
}

// startRetrying starts def with requestID (a new key when empty) and, when the answer
// does not come in time, asks once more with the same key: the start may have happened,
// and the key makes sure it is not done twice.
func startRetrying(ctx context.Context, cl *client.Client, def v1.WorkloadDefinition, requestID string) (*v1.WorkloadInfo, bool, error) {
	if requestID == "" {
		requestID = nuid.Next()
	}
	w, before, err := cl.StartOnce(ctx, def, requestID)
	if v1.IsCode(err, v1.CodeTimeout) || v1.IsCode(err, v1.CodeStorageUnavailable) {
		w, _, err = cl.StartOnce(ctx, def, requestID) // a workload found now is the one this command started
	}
	return w, before, err
}

// Run validates, auctions and deploys.
func (c *WorkloadStartCmd) Run(ctx context.Context, g *cli.Globals) error {
	def, err := c.definition(g)
	if err != nil {
		return err
	}
	def.Namespace = g.Namespace
	if err := def.Validate(); err != nil {
		return err
	}
	switch {
	case c.Replicas != nil && (*c.Replicas <= 0 || *c.Replicas > v1.MaxReplicas):
		return v1.BadRequest("replicas %d (--replicas, or replicas: in a Nexfile): a replica group starts with 1 to %d copies (scale it to 0 later with nex workload scale; without replicas one plain workload starts); nothing was started", *c.Replicas, v1.MaxReplicas)
	case c.MaxPerNode < 0 || c.MaxPerNode > v1.MaxReplicas:
		return v1.BadRequest("max_per_node %d (--max-per-node, or max_per_node: in a Nexfile) is 1 to %d; nothing was started", c.MaxPerNode, v1.MaxReplicas)
	case c.Replicas == nil && (c.MaxPerNode != 0 || c.Spread != ""):
		return v1.BadRequest("max_per_node and spread (--max-per-node, --spread, or in a Nexfile) go with replicas (--replicas)")
	}
	cl, err := clientAfterCheck(g, def)
	if err != nil {
		return err
	}
	if c.Replicas != nil {
		return c.startGroup(ctx, g, cl, def)
	}
	if c.WaitHealthy > 0 {
		var sr struct {
			Health json.RawMessage `json:"health"`
		}
		if json.Unmarshal(def.StartRequest, &sr) != nil || len(sr.Health) == 0 || string(sr.Health) == "null" || def.Lifecycle != v1.LifecycleService {
			return v1.BadRequest("--wait-healthy waits for a service's health check, and this start has none (start_request.health); nothing was started")
		}
	}
	w, before, err := startRetrying(ctx, cl, def, c.RequestID)
	if err != nil {
		return err
	}
	had := w.Definition // of the workload a used request ID names
	w.Definition = nil
	said := g.Stdout()
	if c.Follow { // stdout is the workload's output, as docker run's
		said = g.Stderr()
	}
	switch {
	case g.JSON:
		if err := cli.WriteJSON(g.Stdout(), w); err != nil {
			return err
		}
	case before:
		fmt.Fprintf(said, "Workload %s [%s] was started before with request ID %s; not started again (state %s)\n", w.Name, w.ID, c.RequestID, w.State)
		if diff := client.Differs(def, had); diff != "" {
			fmt.Fprintf(g.Stderr(), "nex: warning: request ID %s was used for a workload with another definition (%s): that one is returned, and nothing was started\n", c.RequestID, diff)
		}
	default:
		fmt.Fprintf(said, "Workload %s [%s] successfully started\n", w.Name, w.ID)
	}
	if c.WaitHealthy > 0 {
		if err := waitHealthy(ctx, g, cl, w.ID, c.WaitHealthy); err != nil {
			return err
		}
	}
	if c.Follow {
		return follow(ctx, g, cl, w)
	}
	return nil
}

// waitHealthy polls workload id until its health check has passed, it is unhealthy or
// no longer running, or within has passed.
func waitHealthy(ctx context.Context, g *cli.Globals, cl *client.Client, id string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		w, err := cl.WorkloadInfo(ctx, id)
		switch {
		case err != nil && ctx.Err() == nil:
			return err
		case err != nil:
			return v1.Errorf(v1.CodeTimeout, "workload %s did not pass its health check within %s (it runs on; nex workload info %s)", id, within, id)
		case w.Health == "":
			return v1.BadRequest("workload %s has no health check to wait for (start_request.health)", id)
		case w.Health == v1.WorkloadHealthHealthy:
			if !g.JSON {
				fmt.Fprintf(g.Stderr(), "Workload %s [%s] is healthy\n", w.Name, id)
			}
			return nil
		case w.Health == v1.WorkloadHealthUnhealthy, w.Finished():
			return v1.Errorf(v1.CodeStartFailed, "workload %s is %s (%s): %s", id, w.Health, stateText(*w), cmp.Or(w.Metadata["error"], "no message"))
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// startGroup starts the copies of a replica group and prints the group's ID.
func (c *WorkloadStartCmd) startGroup(ctx context.Context, g *cli.Globals, cl *client.Client, def v1.WorkloadDefinition) error {
	if c.Follow {
		return v1.BadRequest("--follow takes one workload: follow a copy with nex workload logs <copy id> -f")
	}
	st, err := cl.StartGroup(ctx, def, *c.Replicas, c.MaxPerNode, c.Spread)
	if err != nil {
		return err
	}
	verb := "successfully started"
	if running(st.Copies) == 0 && st.Replicas > 0 { // kept, and placed as soon as a node can take a copy
		verb = "created, no copy placed yet"
	}
	return printGroup(g, st, fmt.Sprintf("Workload %s [%s] %s: %d of %s running", st.Name, st.ID, verb, running(st.Copies), cli.PluralOf(st.Replicas, "copy", "copies")))
}

func running(ws []v1.WorkloadInfo) int {
	n := 0
	for _, w := range ws {
		if w.State == v1.StateRunning || w.State == v1.StateStarting {
			n++
		}
	}
	return n
}

// printGroup prints a group: a headline, its copies and why any are missing.
func printGroup(g *cli.Globals, st *v1.GroupStatus, headline string) error {
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), st)
	}
	fmt.Fprintln(g.Stdout(), headline)
	for _, w := range st.Copies {
		fmt.Fprintf(g.Stdout(), "  copy %s on node %s: %s, version %d\n", w.ID, cli.Short(w.NodeID), w.State, w.GroupVersion)
	}
	if st.Pending != "" {
		fmt.Fprintf(g.Stderr(), "pending: %s\n", st.Pending)
	}
	return nil
}

// WorkloadScaleCmd changes a replica group's count.
type WorkloadScaleCmd struct {
	ID       string `arg:"" name:"group_id" help:"The replica group's ID (g-...), a unique prefix of it, or its name."`
	Replicas int    `arg:"" name:"replicas" help:"How many copies to run (0 keeps the group with none)."`
}

// Run scales.
func (c *WorkloadScaleCmd) Run(ctx context.Context, g *cli.Globals) error {
	if c.Replicas < 0 {
		return v1.BadRequest("replicas may not be negative")
	}
	cl, err := g.Resolved(ctx, &c.ID, cli.ResolveWorkload)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(c.ID, v1.GroupIDPrefix) {
		return v1.BadRequest("%s is not a replica group's ID (they start with %s) nor its name: start one with --replicas", c.ID, v1.GroupIDPrefix)
	}
	st, err := cl.Group(ctx, c.ID, v1.GroupRequest{Op: v1.GroupScale, Replicas: c.Replicas})
	if err != nil {
		return err
	}
	return printGroup(g, st, fmt.Sprintf("Workload %s [%s] scaled to %d: %d running", st.Name, st.ID, st.Replicas, running(st.Copies)))
}

// follow prints a new workload's output until it ends (see followOutput).
func follow(ctx context.Context, g *cli.Globals, cl *client.Client, w *v1.WorkloadInfo) error {
	if w.Lifecycle != v1.LifecycleJob && !g.JSON {
		fmt.Fprintf(g.Stderr(), "Following its output; Ctrl+C stops following (the workload keeps running).\n")
	}
	return followOutput(ctx, g, cl, w.ID, client.FeedOptions{}, logView{})
}

// WorkloadListCmd lists workloads.
type WorkloadListCmd struct {
	ShowMetadata   bool              `name:"show-metadata" help:"Include nexlet metadata (pid, restarts, ...)."`
	Type           string            `name:"type" help:"Only workloads of this type."`
	Name           string            `name:"name" help:"Only workloads of this name."`
	State          []string          `name:"state" help:"Only workloads in these states (running, stopped, failed, backoff, ...; repeatable or comma-separated)."`
	Tag            map[string]string `name:"tag" mapsep:"," help:"Only workloads placed with these tags k=v (repeatable, or comma-separated)."`
	Node           string            `name:"node" help:"Only workloads on this node: its name, ID or a unique prefix of it."`
	Group          string            `name:"group" help:"Only copies of this replica group: its ID, a unique prefix of it, or its name."`
	cli.ListOutput `embed:""`
}

// Run lists.
func (c *WorkloadListCmd) Run(ctx context.Context, g *cli.Globals) (err error) {
	if _, err := c.Template(); err != nil {
		return err
	}
	cl, err := g.Client()
	if err != nil {
		return err
	}
	tabular := c.Output == "table" && c.Format == "" && !c.Quiet && !g.JSON
	list, missing, err := cl.ListReport(ctx, v1.ListRequest{Type: c.Type, NoMetadata: !c.ShowMetadata && tabular})
	if err != nil {
		return err
	}
	copies := map[string]int{} // namespace/group ID -> its copies listed that run, before the filters
	for _, w := range list {
		if w.Group != "" && w.State == v1.StateRunning { // as info and scale count them: not starting, backing off, stopping
			copies[w.Namespace+"/"+w.Group]++
		}
	}
	if (tabular || (c.Wide() && c.Format == "" && !c.Quiet && !g.JSON)) && len(c.State) == 0 && len(c.Tag) == 0 && c.Node == "" && c.Type == "" {
		// asked once the list is in: a connection knows only the last request it was
		// refused, and a refused list said "no reply in time" when both were under way
		defer func() {
			if err == nil {
				c.shortGroups(ctx, g, cl, copies)
			}
		}()
	}
	for _, id := range missing { // the list is short of theirs: say so, whatever the format
		fmt.Fprintf(g.Stderr(), "nex: warning: node %s did not answer in time, or failed to list; its workloads are not in this list\n", id)
	}
	if list, err = c.filter(ctx, cl, list); err != nil {
		return err
	}
	if done, err := cli.WriteList(g, c.ListOutput, list, func(w v1.WorkloadInfo) string { return w.ID }); done {
		return err
	}
	if len(list) == 0 && len(missing) == 0 {
		fmt.Fprintf(g.Stdout(), "No workloads in namespace %s%s.\n", g.Namespace, c.filtered())
		return nil
	}
	// the nodes' names after the list, not beside it: a tenant may not ask the nodes, and
	// a connection knows only the last request it was refused (the list's refusal, for
	// another namespace, went unseen: "no reply in time", not "permission denied")
	return c.table(g, nodeNames(ctx, cl), list, c.Wide())
}

// shortGroups says, after a table, which replica groups have fewer copies running than
// their count, and why when the coordinator knows: a group none of whose copies could be
// placed has no row, and "No workloads" said nothing of it (a tenant's attack: 300 such
// groups, unseen). A group scaled to 0 has a line too: it holds a place of its
// namespace's quota (a walk: only an ambiguous prefix's error named it). Nodes without
// groups say nothing.
func (c *WorkloadListCmd) shortGroups(ctx context.Context, g *cli.Globals, cl *client.Client, copies map[string]int) {
	ctx, cancel := context.WithTimeout(ctx, cli.GroupsWait)
	defer cancel()
	groups, err := cl.Groups(ctx)
	switch {
	case v1.IsCode(err, v1.CodeNotImplemented):
		return
	case err != nil:
		fmt.Fprintf(g.Stderr(), "nex: warning: the replica groups could not be listed, so groups short of copies are not shown: %v\n", err)
		return
	}
	for _, gr := range groups {
		n := copies[gr.Namespace+"/"+gr.ID]
		if (n >= gr.Replicas && gr.Replicas > 0) || (c.Name != "" && gr.Name != c.Name) ||
			(c.Group != "" && gr.Name != c.Group && !strings.HasPrefix(gr.ID, c.Group)) {
			continue
		}
		state := fmt.Sprintf("%d of %d copies run", n, gr.Replicas)
		switch {
		case gr.Replicas == 0: // it holds a place of a quota all the same: seen, it is not forgotten
			state = "scaled to 0 (nex workload stop " + gr.ID + " removes it)"
		case gr.Pending != "": // the coordinator's "N of M copies placed: why"
			state = gr.Pending
		}
		fmt.Fprintf(g.Stdout(), "Replica group %s (%s, namespace %s): %s\n", gr.ID, gr.Name, gr.Namespace, state)
	}
}

// nodeNames are the nodes' names by ID (none when the nodes cannot be listed: the table
// shows IDs).
func nodeNames(ctx context.Context, cl *client.Client) map[string]string {
	names := map[string]string{}
	if nodes, err := cl.ListNodes(ctx); err == nil {
		for _, n := range nodes {
			names[n.NodeID] = n.Name
		}
	}
	return names
}

// filtered says, for an empty list, that filters were given.
func (c *WorkloadListCmd) filtered() string {
	if c.Name == "" && len(c.State) == 0 && len(c.Tag) == 0 && c.Node == "" && c.Group == "" {
		return ""
	}
	return " that match the filters"
}

// filter keeps the workloads that pass every filter given.
func (c *WorkloadListCmd) filter(ctx context.Context, cl *client.Client, list []v1.WorkloadInfo) ([]v1.WorkloadInfo, error) {
	node, group := c.Node, c.Group
	var err error
	for _, st := range c.State {
		if !slices.Contains(v1.WorkloadStates, st) {
			return nil, v1.BadRequest("--state %s: not a state (%s)", st, strings.Join(v1.WorkloadStates, ", "))
		}
	}
	if node != "" {
		if node, err = cli.ResolveNode(ctx, cl, node); err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(list, func(w v1.WorkloadInfo) bool { return w.NodeID == node }) {
			if known, err := cli.NodeKnown(ctx, cl, node); err == nil && !known {
				return nil, v1.BadRequest("--node %s: no node that answers has this name, ID or ID prefix (nex node list)", c.Node)
			}
		}
	}
	if group != "" {
		if group, err = cli.ResolveWorkload(ctx, cl, group); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(group, v1.GroupIDPrefix) {
			return nil, v1.BadRequest("--group %s: no replica group has this ID or name", c.Group)
		}
	}
	return slices.DeleteFunc(list, func(w v1.WorkloadInfo) bool {
		if (c.Name != "" && w.Name != c.Name) || (node != "" && w.NodeID != node) || (group != "" && w.Group != group) {
			return true
		}
		if len(c.State) > 0 && !slices.Contains(c.State, w.State) {
			return true
		}
		for k, v := range c.Tag {
			if w.Tags[k] != v {
				return true
			}
		}
		return false
	}), nil
}

// table prints the list: node names, not IDs, and 12 characters of workload IDs (unique
// in practice); wide prints them whole, with node IDs and metadata.
func (c *WorkloadListCmd) table(g *cli.Globals, names map[string]string, list []v1.WorkloadInfo, wide bool) error {
	header := []string{"ID", "NAME", "NAMESPACE", "TYPE", "LIFECYCLE", "STATE", "AGE", "NODE"}
	if wide {
		header = append(header, "NODE ID")
	}
	grouped := slices.ContainsFunc(list, func(w v1.WorkloadInfo) bool { return w.Group != "" })
	if grouped { // copies of replica groups: the ID to scale and stop them by
		header = append(header, "GROUP")
	}
	checked := slices.ContainsFunc(list, func(w v1.WorkloadInfo) bool { return w.Health != "" })
	if checked { // services with health checks
		header = append(header, "HEALTH")
	}
	if c.ShowMetadata || wide {
		header = append(header, "METADATA")
	}
	t := cli.NewTable(header...)
	for _, w := range list {
		id, node := cli.Short(w.ID), cmp.Or(names[w.NodeID], cli.Short(w.NodeID))
		if wide {
			id = w.ID
		}
		row := []string{id, w.Name, w.Namespace, w.Type, w.Lifecycle, stateText(w), time.Since(w.StartedAt).Round(time.Second).String(), node}
		if wide {
			row = append(row, w.NodeID)
		}
		if grouped {
			row = append(row, w.Group)
		}
		if checked {
			row = append(row, orDash(w.Health))
		}
		if c.ShowMetadata || wide {
			row = append(row, formatMetadata(w.Metadata))
		}
		t.Row(row...)
	}
	return t.Write(g.Stdout())
}

// stateText is a workload's state with how its last process ended, where that matters:
// "stopped (exit 3)", "backoff (oom_killed)", "failed (exit 137, oom_killed)".
func stateText(w v1.WorkloadInfo) string {
	var why []string
	if w.ExitCode != nil && (w.State == v1.StateStopped || w.State == v1.StateFailed) {
		why = append(why, fmt.Sprintf("exit %d", *w.ExitCode))
	}
	if w.ExitReason != "" && w.State != v1.StateRunning && w.State != v1.StateStarting {
		why = append(why, w.ExitReason)
	}
	if len(why) == 0 {
		return w.State
	}
	return w.State + " (" + strings.Join(why, ", ") + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatMetadata(md map[string]string) string {
	keys := slices.Sorted(maps.Keys(md))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, cli.Printable(k+"="+md[k]))
	}
	return strings.Join(parts, " ")
}

// WorkloadStopCmd stops a workload.
type WorkloadStopCmd struct {
	ID    string        `arg:"" name:"workload_id" help:"Workload ID, a unique prefix of one, or a name; a replica group's (g-...) stops every copy."`
	Grace time.Duration `name:"grace" help:"Time between SIGTERM and SIGKILL, at most 1h (default: the workload's, 10s)."`
}

// Run stops.
func (c *WorkloadStopCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Client()
	if err != nil {
		return err
	}
	if cli.IsTerminal(g.Stderr()) && !g.JSON {
		done := make(chan struct{})
		defer close(done)
		cl.OnAck = func(a client.Ack) { go stopProgress(g.Stderr(), c.ID, a, done) }
	}
	if c.ID, err = cli.ResolveWorkload(ctx, cl, c.ID); err != nil {
		return err
	}
	if strings.HasPrefix(c.ID, v1.GroupIDPrefix) {
		st, err := cl.Group(ctx, c.ID, v1.GroupRequest{Op: v1.GroupStop})
		if v1.IsNotFound(err) {
			return v1.NotFound("replica group %s not found in namespace %s: stopped already, or never started", c.ID, cl.Namespace())
		}
		if err != nil {
			return err
		}
		return printGroup(g, st, fmt.Sprintf("Workload %s [%s] stopped: its %s", st.Name, st.ID, cli.PluralOf(len(st.Copies), "copy", "copies")))
	}
	w, err := cl.StopWorkload(ctx, c.ID, v1.StopRequest{GracePeriod: v1.Duration(c.Grace)})
	if err != nil {
		return err
	}
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), w)
	}
	if w.State == v1.StateStopping {
		fmt.Fprintf(g.Stdout(), "Workload %s [%s] stopping: %s\n", w.Name, w.ID, cli.Printable(w.Metadata["note"]))
		return nil
	}
	fmt.Fprintf(g.Stdout(), "Workload %s [%s] stopped\n", w.Name, w.ID)
	return nil
}

// stopProgress tells a person at a terminal that a long stop is under way: which node
// stops the workload, and, every few seconds, how long it has taken so far.
func stopProgress(w io.Writer, id string, a client.Ack, done <-chan struct{}) {
	began := time.Now()
	select {
	case <-done:
		return
	case <-time.After(time.Second): // a quick stop prints nothing extra
	}
	fmt.Fprintf(w, "Stopping %s on node %s (it answers by %s)...\n", id, cli.Short(a.NodeID), a.Deadline.Local().Format(time.TimeOnly))
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fmt.Fprintf(w, "  still stopping after %s\n", time.Since(began).Round(time.Second))
		}
	}
}

// WorkloadRmCmd removes finished workloads.
type WorkloadRmCmd struct {
	IDs      []string `arg:"" optional:"" name:"workload_id" help:"Workload IDs, unique prefixes of them, or names."`
	Finished bool     `name:"finished" help:"Remove every workload of the namespace that ended for good (in namespace system: of every namespace)."`
}

// Run removes each workload that has ended; one still running is refused (stop it).
func (c *WorkloadRmCmd) Run(ctx context.Context, g *cli.Globals) error {
	if (len(c.IDs) == 0) == !c.Finished {
		return fmt.Errorf("name the workloads to remove, or give --finished for every one that ended (not both)")
	}
	cl, err := g.Client()
	if err != nil {
		return err
	}
	ids := c.IDs
	if c.Finished {
		list, err := cl.List(ctx, v1.ListRequest{NoMetadata: true})
		if err != nil {
			return err
		}
		for _, w := range list {
			if w.Finished() {
				ids = append(ids, w.ID)
			}
		}
	}
	var removed []*v1.WorkloadInfo
	var failed []string
	for _, id := range ids {
		if id, err = cli.ResolveWorkload(ctx, cl, id); err != nil {
			failed = append(failed, err.Error())
			continue
		}
		w, err := cl.RemoveWorkload(ctx, id)
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		removed = append(removed, w)
		if !g.JSON {
			fmt.Fprintf(g.Stdout(), "Workload %s [%s] removed\n", w.Name, w.ID)
		}
	}
	if g.JSON {
		if err := cli.WriteJSON(g.Stdout(), removed); err != nil {
			return err
		}
	} else if len(ids) == 0 {
		fmt.Fprintf(g.Stdout(), "No finished workloads in namespace %s.\n", g.Namespace)
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// WorkloadInfoCmd describes a workload.
type WorkloadInfoCmd struct {
	ID string `arg:"" name:"workload_id" help:"Workload ID, a unique prefix of one, or a name; or a replica group's ID or name."`
}

// Run describes: state, metadata, the definition (secret-looking values masked) and the
// latest events.
func (c *WorkloadInfoCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Resolved(ctx, &c.ID, cli.ResolveWorkload)
	if err != nil {
		return err
	}
	if strings.HasPrefix(c.ID, v1.GroupIDPrefix) {
		st, err := cl.Group(ctx, c.ID, v1.GroupRequest{Op: v1.GroupInfo})
		if err != nil {
			return err
		}
		return printGroup(g, st, fmt.Sprintf("Workload %s [%s]: replica group of %d, version %d (max %d per node%s), %d running", st.Name, st.ID, st.Replicas, st.Version, st.MaxPerNode, spreadNote(st.Spread), running(st.Copies)))
	}
	w, err := cl.WorkloadInfo(ctx, c.ID)
	if err != nil {
		return err
	}
	if w.Definition != nil {
		w.Definition.StartRequest = maskSecrets(w.Definition.StartRequest)
	}
	var events []v1.Event
	ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_ = cl.Events(ectx, c.ID, client.FeedOptions{Tail: 10}, func(ev v1.Event) error {
		events = append(events, ev)
		return nil
	})
	cancel()
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), struct {
			*v1.WorkloadInfo
			Events []v1.Event `json:"recent_events"`
		}{w, events})
	}
	out := g.Stdout()
	node := w.NodeID
	if nodes, err := cl.ListNodes(ctx); err == nil {
		for _, n := range nodes {
			if n.NodeID == w.NodeID && n.Name != "" {
				node = n.Name + " (" + w.NodeID + ")"
			}
		}
	}
	fmt.Fprintf(out, "ID:          %s\nName:        %s\nNamespace:   %s\nType:        %s\nLifecycle:   %s\nState:       %s\nNode:        %s\nNexlet:      %s\nStarted:     %s\n",
		w.ID, w.Name, w.Namespace, w.Type, w.Lifecycle, w.State, node, w.NexletID, w.StartedAt.Local().Format(time.RFC3339))
	if w.Group != "" {
		fmt.Fprintf(out, "Group:       %s (a copy, running version %d of its definition)\n", w.Group, w.GroupVersion)
	}
	if w.Description != "" {
		fmt.Fprintf(out, "Description: %s\n", cli.Printable(w.Description))
	}
	if w.ExitCode != nil {
		fmt.Fprintf(out, "Exit code:   %d\n", *w.ExitCode)
	}
	if w.ExitReason != "" {
		fmt.Fprintf(out, "Exit reason: %s\n", cli.Printable(w.ExitReason))
	}
	if w.Health != "" {
		fmt.Fprintf(out, "Health:      %s\n", cli.Printable(w.Health))
	}
	if len(w.Tags) > 0 {
		fmt.Fprintf(out, "Tags:        %s\n", formatMetadata(w.Tags))
	}
	if len(w.Metadata) > 0 {
		fmt.Fprintf(out, "Metadata:    %s\n", formatMetadata(w.Metadata))
	}
	if w.Definition != nil {
		fmt.Fprintf(out, "Start request:\n  %s\n", cli.Printable(readableJSON(w.Definition.StartRequest, "  ")))
	}
	if len(events) > 0 {
		fmt.Fprintln(out, "Recent events:")
		for _, ev := range events {
			fmt.Fprintln(out, "  "+formatEvent(g, ev))
		}
	}
	return nil
}

// secretKey matches environment variable names whose values are not shown; compiled at
// its first use, not at every command's start.
var secretKey = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)(pass|secret|token|key|credential|auth)`)
})

// readableJSON indents raw for people, with "<", ">" and "&" written as they are even
// where an encoder escaped them (`echo oops >&2`, not `echo oops \u003e\u00262`).
func readableJSON(raw json.RawMessage, prefix string) string {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return string(raw)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent(prefix, "  ")
	if enc.Encode(v) != nil {
		return string(raw)
	}
	return strings.TrimRight(b.String(), "\n")
}

// maskSecrets replaces the values of secret-looking environment variables (and values
// sealed for a nexlet) with "*****".
func maskSecrets(sr json.RawMessage) json.RawMessage {
	var m map[string]any
	if json.Unmarshal(sr, &m) != nil {
		return sr
	}
	env, ok := m["environment"].(map[string]any)
	if !ok {
		return sr
	}
	for k, v := range env {
		if s, _ := v.(string); secretKey().MatchString(k) || strings.HasPrefix(s, "nexenc:") {
			env[k] = "*****"
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(m) != nil {
		return sr
	}
	return bytes.TrimSpace(b.Bytes())
}

// WorkloadRestartCmd restarts a workload or a replica group.
type WorkloadRestartCmd struct {
	ID          string `arg:"" name:"workload_id" help:"Workload ID, a unique prefix of one, or a name; or a replica group's ID or name."`
	MaxParallel int    `name:"max-parallel" default:"1" help:"A replica group: how many copies are replaced at a time."`
}

// Run restarts: a workload is replaced by a new copy of its definition (a new ID, placed
// by auction), which starts before the old one is stopped; a group's copies are replaced
// one batch at a time, each new copy running for a moment before an old one stops.
func (c *WorkloadRestartCmd) Run(ctx context.Context, g *cli.Globals) error {
	if c.MaxParallel < 1 {
		return v1.BadRequest("--max-parallel must be at least 1")
	}
	cl, err := g.Resolved(ctx, &c.ID, cli.ResolveWorkload)
	if err != nil {
		return err
	}
	if strings.HasPrefix(c.ID, v1.GroupIDPrefix) {
		st, err := cl.RestartGroup(ctx, c.ID, c.MaxParallel)
		if err != nil {
			return err
		}
		return printGroup(g, st, fmt.Sprintf("Workload %s [%s] restarted: %s of version %d running", st.Name, st.ID, cli.PluralOf(running(st.Copies), "copy", "copies"), st.Version))
	}
	w, err := cl.CloneWorkload(ctx, c.ID, client.CloneOptions{StopOriginal: true})
	if err != nil {
		return err
	}
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), w)
	}
	fmt.Fprintf(g.Stdout(), "Workload %s [%s] restarted: a new copy replaces %s, which is stopped\n", w.Name, w.ID, c.ID)
	return nil
}

// WorkloadExecCmd runs a command beside a workload.
type WorkloadExecCmd struct {
	ID      string        `arg:"" name:"workload_id" help:"Workload ID, a unique prefix of one, or a name."`
	Argv    []string      `arg:"" name:"command" passthrough:"" help:"The command and its arguments (after --)."`
	Timeout time.Duration `name:"timeout" default:"1m" help:"Kill the command after this long (at most 10m)."`
	TTY     bool          `name:"tty" short:"t" help:"Run the command on a terminal of its own (the default when nex runs on one): its stdout and stderr come back as one stream."`
	NoTTY   bool          `name:"no-tty" short:"T" help:"No terminal, even when nex runs on one: stdout and stderr apart."`
}

// Run runs the command and prints its output: its stdout on stdout, its stderr on
// stderr (one stream on a terminal), and exits with its exit code. No input: a command
// that reads stdin reads nothing (on a terminal, it waits until its timeout).
func (c *WorkloadExecCmd) Run(ctx context.Context, g *cli.Globals) error {
	if len(c.Argv) > 0 && c.Argv[0] == "--" {
		c.Argv = c.Argv[1:]
	}
	cl, err := g.Resolved(ctx, &c.ID, cli.OneWorkload)
	if err != nil {
		return err
	}
	if c.TTY && c.NoTTY {
		return v1.BadRequest("--tty and --no-tty: give one")
	}
	tty := c.TTY || (!c.NoTTY && !g.JSON && cli.IsTerminal(os.Stdin) && cli.IsTerminal(g.Stdout()))
	r, err := cl.Exec(ctx, c.ID, v1.ExecRequest{Argv: c.Argv, Timeout: v1.Duration(c.Timeout), TTY: tty})
	if err != nil {
		return err
	}
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), r)
	}
	_, _ = g.Stdout().Write(r.Stdout)
	_, _ = g.Stderr().Write(r.Stderr)
	switch {
	case r.TimedOut:
		fmt.Fprintf(g.Stderr(), "nex: %s was killed after %s\n", c.Argv[0], c.Timeout)
	case r.Truncated:
		fmt.Fprintf(g.Stderr(), "nex: output cut at %d KiB per stream\n", v1.MaxExecOutput>>10)
	}
	if r.ExitCode != 0 {
		return cli.ExitStatus(r.ExitCode)
	}
	return nil
}

// WorkloadStatsCmd shows what a workload uses.
type WorkloadStatsCmd struct {
	ID string `arg:"" name:"workload_id" help:"Workload ID, a unique prefix of one, or a name."`
}

// workloadStats is one workload's use, as stats prints it.
type workloadStats struct {
	ID         string        `json:"id"`
	Name       string        `json:"name"`
	CPUPercent float64       `json:"cpu_percent"`
	Memory     int64         `json:"memory_bytes"`
	PIDs       int           `json:"pids"`
	DiskUsed   string        `json:"disk_used,omitempty"`
	Limits     *v1.Resources `json:"limits,omitempty"`
}

// Run reads the workload's use twice, a second apart (CPU is a rate), and prints it.
func (c *WorkloadStatsCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Resolved(ctx, &c.ID, cli.OneWorkload)
	if err != nil {
		return err
	}
	first, err := cl.WorkloadInfo(ctx, c.ID)
	if err != nil {
		return err
	}
	if first.Metadata["cpu_seconds"] == "" {
		return v1.BadRequest("workload %s (%s) runs no process now, or its nexlet does not report what it uses", c.ID, first.State)
	}
	began := time.Now()
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(time.Second):
	}
	w, err := cl.WorkloadInfo(ctx, c.ID)
	if err != nil {
		return err
	}
	cpu0, _ := strconv.ParseFloat(first.Metadata["cpu_seconds"], 64)
	cpu1, _ := strconv.ParseFloat(w.Metadata["cpu_seconds"], 64)
	st := workloadStats{ID: w.ID, Name: w.Name, DiskUsed: w.Metadata["disk_used"], CPUPercent: max(0, (cpu1-cpu0)/time.Since(began).Seconds()*100)}
	st.Memory, _ = strconv.ParseInt(w.Metadata["memory_rss"], 10, 64)
	st.PIDs, _ = strconv.Atoi(w.Metadata["pids"])
	if w.Definition != nil {
		st.Limits, _ = w.Definition.WantedResources()
	}
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), st)
	}
	lim := v1.Resources{}
	if st.Limits != nil {
		lim = *st.Limits
	}
	of := func(s string, limit bool, l string) string {
		if limit {
			return s + " / " + l
		}
		return s
	}
	t := cli.NewTable("ID", "NAME", "CPU %", "MEMORY", "PIDS", "DISK")
	t.Row(cli.Short(st.ID), st.Name, of(strconv.FormatFloat(st.CPUPercent, 'f', 1, 64), lim.CPU > 0, v1.FormatCores(lim.CPU)+" cpu"),
		of(v1.ByteSize(st.Memory).String(), lim.Memory > 0, lim.Memory.String()), of(strconv.Itoa(st.PIDs), lim.PIDs > 0, strconv.Itoa(lim.PIDs)),
		of(orDash(st.DiskUsed), lim.Disk > 0, lim.Disk.String()))
	return t.Write(g.Stdout())
}

// WorkloadCloneCmd clones a workload.
type WorkloadCloneCmd struct {
	ID   string            `arg:"" name:"workload_id" help:"Workload to clone: its ID, a unique prefix of it, or its name."`
	Tags map[string]string `name:"tags" mapsep:"," help:"Placement tags for the clone k=v (repeatable, or comma-separated); replace the original's."`
	Stop bool              `name:"stop" help:"Stop the original once the clone has started."`
	Name string            `name:"name" help:"A name for the clone (else the original's: the two then share it, and a name lookup asks for an ID)."`
}

// Run clones.
func (c *WorkloadCloneCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Resolved(ctx, &c.ID, cli.OneWorkload)
	if err != nil {
		return err
	}
	w, err := cl.CloneWorkload(ctx, c.ID, client.CloneOptions{Tags: c.Tags, StopOriginal: c.Stop, Name: c.Name})
	if err != nil {
		return err
	}
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), w)
	}
	fmt.Fprintf(g.Stdout(), "Workload %s [%s] successfully started (clone of %s)\n", w.Name, w.ID, c.ID)
	switch {
	case c.Stop && c.Name != "":
		fmt.Fprintf(g.Stdout(), "The original [%s] stopped\n", c.ID)
	case c.Stop:
		fmt.Fprintf(g.Stdout(), "Workload %s [%s] stopped\n", w.Name, c.ID)
	}
	return nil
}

func spreadNote(key string) string {
	if key == "" {
		return ""
	}
	return ", spread over " + key
}

// WorkloadUpdateCmd rolls a replica group over to a new definition.
type WorkloadUpdateCmd struct {
	ID           string            `arg:"" name:"group_id" help:"The replica group's ID (g-...), a unique prefix of it, or its name."`
	Nexfile      string            `name:"nexfile" short:"f" type:"path" help:"The new definition's Nexfile (else the group's, changed by the flags)."`
	Description  string            `name:"description" help:"New description."`
	Tags         map[string]string `name:"tags" mapsep:"," help:"New placement tags k=v (replace the group's)."`
	StartRequest string            `name:"start-request" help:"New start request as JSON."`
	Isolation    string            `name:"isolation" help:"'required': copies only on nodes that run each workload as a user of its own."`
	Disconnect   string            `name:"disconnect" help:"'stop': a node cut off from NATS stops its copy before the cluster starts it elsewhere."`
	MaxParallel  int               `name:"max-parallel" default:"1" help:"How many copies are replaced at a time."`
}

// Run updates: each new copy starts and must run for a moment without a restart before
// an old one stops; a new copy that fails stops the update, the old copies running on.
func (c *WorkloadUpdateCmd) Run(ctx context.Context, g *cli.Globals) error {
	if c.MaxParallel < 1 {
		return v1.BadRequest("--max-parallel must be at least 1")
	}
	cl, err := g.Resolved(ctx, &c.ID, cli.ResolveWorkload)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(c.ID, v1.GroupIDPrefix) {
		return v1.BadRequest("%s is not a replica group's ID (they start with %s) nor its name: updates replace copies of a group started with --replicas", c.ID, v1.GroupIDPrefix)
	}
	var def v1.WorkloadDefinition
	if c.Nexfile != "" {
		nf, err := nexfile.Load(c.Nexfile)
		if err != nil {
			return err
		}
		if def, err = nexfile.Definition(nf, nexfile.Overrides{Description: c.Description, Tags: c.Tags, StartRequest: c.StartRequest,
			Isolation: c.Isolation, Disconnect: c.Disconnect}); err != nil {
			return err
		}
	} else {
		cur, err := cl.Group(ctx, c.ID, v1.GroupRequest{Op: v1.GroupInfo})
		if err != nil {
			return err
		}
		if cur.Definition == nil || (c.StartRequest == "" && c.Description == "" && c.Tags == nil && c.Isolation == "" && c.Disconnect == "") {
			return v1.BadRequest("nothing to update: give --nexfile, --start-request, --description, --tags, --isolation or --disconnect")
		}
		def = *cur.Definition
		if c.StartRequest != "" {
			if !json.Valid([]byte(c.StartRequest)) {
				return v1.BadRequest("--start-request is not valid JSON")
			}
			def.StartRequest = json.RawMessage(c.StartRequest)
		}
		if c.Description != "" {
			def.Description = c.Description
		}
		if c.Tags != nil {
			def.Tags = c.Tags
		}
		if err := nexfile.RequireIsolation(&def, c.Isolation); err != nil {
			return err
		}
		if c.Disconnect != "" {
			def.Disconnect = c.Disconnect
		}
	}
	if err := checkShipped(def); err != nil {
		return err
	}
	st, err := cl.UpdateGroup(ctx, c.ID, def, c.MaxParallel)
	if err != nil {
		return err
	}
	return printGroup(g, st, fmt.Sprintf("Workload %s [%s] updated to version %d: %d running", st.Name, st.ID, st.Version, running(st.Copies)))
}
