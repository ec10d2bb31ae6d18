package workload

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nexrun/nex/internal/cli"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// feedFlags are shared by the logs and events commands.
type feedFlags struct {
	Follow bool          `name:"follow" short:"f" help:"Keep printing new messages: logs until the workload has ended (exiting with its exit code) or Ctrl+C; events from now on (with --since or --tail, from there) until Ctrl+C."`
	Since  time.Duration `name:"since" help:"Only messages from this long ago (e.g. 10m)."`
	Tail   int           `name:"tail" help:"Only the last N messages of the history."`
}

func (f feedFlags) options() client.FeedOptions {
	o := client.FeedOptions{Follow: f.Follow, Tail: f.Tail}
	if f.Since > 0 {
		o.Since = time.Now().Add(-f.Since)
	}
	return o
}

// eventOptions are options() for events: a follow shows new events only, unless --since
// or --tail asks for some of the history (as kubectl get -w, not docker logs -f).
func (f feedFlags) eventOptions() client.FeedOptions {
	o := f.options()
	o.NewOnly = o.Follow && o.Since.IsZero() && o.Tail == 0
	return o
}

// WorkloadLogsCmd prints a workload's output.
type WorkloadLogsCmd struct {
	ID         string `arg:"" name:"workload_id" help:"Workload ID, a unique prefix of one, or a name; or a replica group's ID or name (g-...): every copy's output, each line led by its copy's ID."`
	Stdout     bool   `name:"stdout" help:"Only standard output." xor:"stream"`
	Stderr     bool   `name:"stderr" help:"Only standard error." xor:"stream"`
	Timestamps bool   `name:"timestamps" short:"t" help:"Lead each line with the time the nexlet published it (RFC 3339, UTC; lines published together share it)."`
	feedFlags
}

// Run prints the lines: stdout lines on stdout, stderr lines on stderr.
func (c *WorkloadLogsCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Client()
	if err != nil {
		return err
	}
	if c.ID, err = cli.ResolveKept(ctx, cl, c.ID); err != nil {
		return err
	}
	if strings.HasPrefix(c.ID, v1.GroupIDPrefix) {
		return c.groupLogs(ctx, g, cl)
	}
	// The workload is looked up at most once: before following (following one that is
	// gone or finished would wait forever), or when nothing was printed (to say why).
	var info *v1.WorkloadInfo
	var infoErr error
	looked := false
	lookup := func() {
		if !looked {
			info, infoErr = cl.WorkloadInfo(ctx, c.ID)
			looked = true
		}
	}
	o := c.options()
	gone := ""
	if o.Follow {
		lookup()
		switch {
		case v1.IsNotFound(infoErr):
			o.Follow, gone = false, "is no longer running in namespace "+cl.Namespace()
		case infoErr == nil && info.Finished():
			o.Follow, gone = false, "has finished ("+info.State+")"
		}
	}
	lines := 0
	if o.Follow {
		return followOutput(ctx, g, cl, c.ID, o, logView{c.Stdout, c.Stderr, c.Timestamps, &lines})
	}
	err = printLogs(ctx, g, cl, c.ID, o, logView{c.Stdout, c.Stderr, c.Timestamps, &lines})
	if err != nil {
		return err
	}
	if lines > 0 {
		if gone != "" {
			fmt.Fprintf(g.Stderr(), "nex: workload %s %s: nothing more to follow\n", c.ID, gone)
		}
		if info != nil && info.ExitCode != nil && *info.ExitCode != 0 && c.Follow {
			return cli.ExitStatus(*info.ExitCode) // as when it ended while followed
		}
		return nil
	}
	lookup()
	switch {
	case v1.IsNotFound(infoErr):
		return fmt.Errorf("workload %s not found in namespace %s, and no output of it is kept", c.ID, cl.Namespace())
	case infoErr != nil:
		return infoErr
	case c.Since > 0:
		fmt.Fprintf(g.Stderr(), "workload %s has printed nothing in the last %s\n", c.ID, c.Since)
	case gone != "": // asked to follow one that ended: -f would not help
		fmt.Fprintf(g.Stderr(), "workload %s %s, and printed nothing%s\n", c.ID, gone, c.streamNamed())
	default:
		fmt.Fprintf(g.Stderr(), "workload %s has printed nothing yet (-f to follow)\n", c.ID)
	}
	return nil
}

// streamNamed is " on stdout" or " on stderr" when the command shows only one of them.
func (c *WorkloadLogsCmd) streamNamed() string {
	switch {
	case c.Stdout:
		return " on stdout"
	case c.Stderr:
		return " on stderr"
	}
	return ""
}

// endGrace is how long a follower waits for the end of a workload's output after the
// workload has ended: the end comes once its last line is out (a million lines under load
// take seconds), unless its nexlet died.
const endGrace = time.Minute

// followOutput prints workload id's output, every line in order, until the end of its last
// run (the nexlet publishes it after the run's last line, so nothing is cut off), or
// Ctrl+C. It then says on stderr how the workload ended, and returns the workload's exit
// code as the command's (as docker run does). A workload that ended without that end (its
// nexlet was killed) is let go endGrace after it ended, saying lines may be missing.
func followOutput(ctx context.Context, g *cli.Globals, cl *client.Client, id string, o client.FeedOptions, v logView) error {
	var last *v1.LogEnd
	o.Follow = true
	o.OnEnd = func(e v1.LogEnd) bool {
		if e.Final {
			last = &e
			return true
		}
		fmt.Fprintf(g.Stderr(), "nex: workload %s exited %d%s; it runs again\n", id, e.ExitCode, reasonSuffix(e.Reason))
		return false
	}
	ended := make(chan struct{})
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	go watchEnded(ectx, cl, id, ended)
	o.Until = ended
	if err := printLogs(ctx, g, cl, id, o, v); err != nil || ctx.Err() != nil {
		return err
	}
	if last == nil {
		info, err := cl.WorkloadInfo(ctx, id)
		if err != nil || info.ExitCode == nil {
			fmt.Fprintf(g.Stderr(), "nex: workload %s has ended, but the end of its output never came: lines may be missing (nex workload logs %s)\n", id, id)
			return nil
		}
		last = &v1.LogEnd{ExitCode: *info.ExitCode, Reason: info.ExitReason}
		fmt.Fprintf(g.Stderr(), "nex: the end of workload %s's output never came: lines may be missing (nex workload logs %s)\n", id, id)
	}
	fmt.Fprintf(g.Stderr(), "nex: workload %s exited %d%s\n", id, last.ExitCode, reasonSuffix(last.Reason))
	if last.ExitCode != 0 {
		return cli.ExitStatus(last.ExitCode)
	}
	return nil
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + cli.Printable(reason) + ")"
}

// watchEnded closes ended endGrace after workload id has ended for good (exited or
// failed, and no longer running: a job with retries exits more than once), or is gone.
func watchEnded(ctx context.Context, cl *client.Client, id string, ended chan<- struct{}) {
	finished := func() bool {
		info, err := cl.WorkloadInfo(ctx, id)
		return v1.IsNotFound(err) || (err == nil && info.Finished())
	}
	_ = cl.Events(ctx, id, client.FeedOptions{Follow: true}, func(ev v1.Event) error {
		if ev.Type != v1.EventExited && ev.Type != v1.EventFailed && ev.Type != v1.EventStopped || !finished() {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(endGrace):
			close(ended)
		}
		return errors.New("ended")
	})
}

// logView says which lines of a workload's output to print, and how.
type logView struct {
	onlyOut, onlyErr bool
	timestamps       bool // each line led by the time it was written
	count            *int // counts the lines printed, when set
}

func printLogs(ctx context.Context, g *cli.Globals, cl *client.Client, id string, o client.FeedOptions, v logView) error {
	return cl.Logs(ctx, id, o, func(l client.LogLine) error {
		if (v.onlyOut && l.Stream != "stdout") || (v.onlyErr && l.Stream != "stderr") {
			return nil
		}
		if v.count != nil {
			*v.count++
		}
		if g.JSON {
			return cli.WriteJSONLine(g.Stdout(), l)
		}
		return printLine(g, l, timestamp(l, v.timestamps))
	})
}

// printLine prints one output line, led by prefix: stdout lines on stdout, stderr lines
// on stderr, a line cut short (continued) without its newline.
func printLine(g *cli.Globals, l client.LogLine, prefix string) error {
	w := g.Stdout()
	if l.Stream == "stderr" {
		w = g.Stderr()
	}
	end := "\n"
	if l.Continued {
		end = ""
	}
	_, err := fmt.Fprint(w, prefix+l.Line+end)
	return err
}

// EventsCmd prints lifecycle events.
type EventsCmd struct {
	Workload string `name:"workload" short:"w" help:"Only this workload's events."`
	feedFlags
}

// Run prints events, one readable line each.
func (c *EventsCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Client()
	if err != nil {
		return err
	}
	if c.Workload != "" {
		if c.Workload, err = cli.ResolveKept(ctx, cl, c.Workload); err != nil {
			return err
		}
	}
	if strings.HasPrefix(c.Workload, v1.GroupIDPrefix) {
		return c.groupEvents(ctx, g, cl)
	}
	printed := 0
	err = cl.Events(ctx, c.Workload, c.eventOptions(), func(ev v1.Event) error {
		printed++
		if g.JSON {
			return cli.WriteJSONLine(g.Stdout(), ev)
		}
		_, err := fmt.Fprintln(g.Stdout(), formatEvent(g, ev))
		return err
	})
	if err != nil || printed > 0 || c.Workload == "" || c.Follow {
		return err
	}
	// nothing: say whether the workload is there at all, as logs does (a walk's events of
	// another namespace's workload printed nothing and exited 0)
	if _, err := cl.WorkloadInfo(ctx, c.Workload); v1.IsNotFound(err) {
		kept := "no events of it are kept"
		if c.Since > 0 {
			kept = "none of its events kept are in the window asked for"
		}
		return fmt.Errorf("workload %s not found in namespace %s, and %s", c.Workload, cl.Namespace(), kept)
	}
	return nil
}

// WorkloadEventsCmd is `nex workload events [id]`.
type WorkloadEventsCmd struct {
	ID string `arg:"" optional:"" name:"workload_id" help:"Only this workload's events."`
	feedFlags
}

// Run prints events.
func (c *WorkloadEventsCmd) Run(ctx context.Context, g *cli.Globals) error {
	return (&EventsCmd{Workload: c.ID, feedFlags: c.feedFlags}).Run(ctx, g)
}

func formatEvent(g *cli.Globals, ev v1.Event) string {
	who := ev.WorkloadID
	if who == "" {
		who = "node " + cli.Short(ev.NodeID)
	}
	var details []string
	if ev.ExitCode != nil {
		details = append(details, fmt.Sprintf("exit %d", *ev.ExitCode))
	}
	if ev.Message != "" {
		details = append(details, ev.Message)
	}
	for _, k := range sortedKeys(ev.Data) {
		details = append(details, fmt.Sprintf("%s=%v", k, ev.Data[k]))
	}
	typ := ev.Type
	if g.Color() {
		typ = colorFor(ev.Type) + typ + "\x1b[0m"
	}
	return fmt.Sprintf("%s  %-10s  %-22s  %s  %s", ev.Time.Local().Format("2006-01-02 15:04:05.000"), ev.Namespace, who, typ, cli.Printable(strings.Join(details, " ")))
}

func colorFor(typ string) string {
	switch typ {
	case v1.EventFailed, v1.EventLost, v1.EventLogsDropped, v1.EventNexletFailed, v1.EventUnhealthy:
		return "\x1b[31m"
	case v1.EventExited, v1.EventRestarted, v1.EventLameduck, v1.EventNexletRestarting:
		return "\x1b[33m"
	case v1.EventStarted, v1.EventRegistered, v1.EventHealthy:
		return "\x1b[32m"
	}
	return "\x1b[36m"
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// eachCopy runs fn for every copy of replica group gid at once (a copy's lines or events
// interleave with the others'), and returns when every fn has; with no copies it says so.
func eachCopy(ctx context.Context, g *cli.Globals, cl *client.Client, gid string, fn func(copyID string) error) error {
	st, err := cl.Group(ctx, gid, v1.GroupRequest{Op: v1.GroupInfo})
	if err != nil {
		return err
	}
	if len(st.Copies) == 0 {
		fmt.Fprintf(g.Stderr(), "replica group %s runs no copy\n", gid)
		return nil
	}
	errs := make(chan error, len(st.Copies))
	for _, cp := range st.Copies {
		go func() { errs <- fn(cp.ID) }()
	}
	var first error
	for range st.Copies {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// groupLogs prints the output of every copy of a replica group, each line led by its
// copy's ID (the copies it has when the command starts).
func (c *WorkloadLogsCmd) groupLogs(ctx context.Context, g *cli.Globals, cl *client.Client) error {
	var mu sync.Mutex
	return eachCopy(ctx, g, cl, c.ID, func(copyID string) error {
		return cl.Logs(ctx, copyID, c.options(), func(l client.LogLine) error {
			if (c.Stdout && l.Stream != "stdout") || (c.Stderr && l.Stream != "stderr") {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			if g.JSON {
				return cli.WriteJSONLine(g.Stdout(), struct {
					WorkloadID string `json:"workload_id"`
					client.LogLine
				}{copyID, l})
			}
			return printLine(g, l, timestamp(l, c.Timestamps)+copyID+": ")
		})
	})
}

// timestamp is l's time and a space, when asked for (RFC 3339 in UTC, nanoseconds always
// nine digits so that lines line up).
func timestamp(l client.LogLine, asked bool) string {
	if !asked {
		return ""
	}
	return l.Time.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") + " "
}

// groupEvents prints the events of every copy of a replica group.
func (c *EventsCmd) groupEvents(ctx context.Context, g *cli.Globals, cl *client.Client) error {
	var mu sync.Mutex
	return eachCopy(ctx, g, cl, c.Workload, func(copyID string) error {
		return cl.Events(ctx, copyID, c.eventOptions(), func(ev v1.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if g.JSON {
				return cli.WriteJSONLine(g.Stdout(), ev)
			}
			_, err := fmt.Fprintln(g.Stdout(), formatEvent(g, ev))
			return err
		})
	})
}
