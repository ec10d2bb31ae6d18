// Command nex is the nex CLI: a thin kong tree over pkg/client.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/cli"
	"github.com/nexrun/nex/internal/cli/node"
	"github.com/nexrun/nex/internal/cli/security"
	"github.com/nexrun/nex/internal/cli/workload"
	"github.com/nexrun/nex/internal/config"
	"github.com/nexrun/nex/internal/version"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// CLI is the kong command tree; each noun lives in its own file, or package of
// internal/cli.
type CLI struct {
	cli.Globals

	Node       node.NodeCmd         `cmd:"" help:"Run and inspect nodes."`
	Workload   workload.WorkloadCmd `cmd:"" aliases:"w" help:"Start, list, stop and clone workloads."`
	Events     workload.EventsCmd   `cmd:"" help:"Lifecycle events of the namespace (node events in system)."`
	Secret     SecretCmd            `cmd:"" help:"Manage the namespace's secrets (secret://NAME in environment values)."`
	Namespaces NamespaceCmd         `cmd:"" name:"namespace" help:"Report on the namespace: its usage against its quota."`
	Security   security.SecurityCmd `cmd:"" help:"Set up an operator-mode NATS system for nex and mint its users."`
	UI         UICmd                `cmd:"" name:"ui" help:"Serve the web console: the cluster live, and actions on it, with your NATS credentials."`
	Completion CompletionCmd        `cmd:"" help:"Print a shell completion script (bash, zsh, fish)."`
	Complete   CompleteCmd          `cmd:"" name:"__complete" hidden:""`
	Docs       DocsCmd              `cmd:"" name:"__docs" hidden:""`
	Show       showCmd              `cmd:"" hidden:"" default:"1"`
}

// showCmd runs when no command is given: the help of the whole tree (as --help prints
// it: "Usage: nex show" with the global flags alone said nothing of the commands), or the
// configuration with --check.
type showCmd struct{}

func (showCmd) Run(ctx *kong.Context) error {
	_, err := ctx.Kong.Parse([]string{"--help"}) // prints, then exits 0 through kong.Exit
	return err
}

func main() {
	// A command lives for milliseconds and its heap is what one reply decodes to: collect
	// at five times the live heap, not twice (a list of 1,000 workloads collected three
	// times). $GOGC, when set, still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if v, ok := os.LookupEnv(v1.EnvNamespace); ok && v == "" {
		os.Unsetenv(v1.EnvNamespace) // set but empty is unset (a walk read "namespace is empty")
	}
	// NEX_CPUPROFILE=file writes a CPU profile of this invocation (for performance work).
	if p := os.Getenv("NEX_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			_ = pprof.StartCPUProfile(f)
			code := run(os.Args[1:], os.Stdout, os.Stderr)
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(code)
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// configResolver reads the config file at path for kong, and sets *nsGiven when it
// holds a namespace.
func configResolver(path string, nsGiven *bool) (kong.Resolver, error) {
	r, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return kong.ResolverFunc(func(kctx *kong.Context, parent *kong.Path, flag *kong.Flag) (any, error) {
		v, err := r.Resolve(kctx, parent, flag)
		if flag.Name == "namespace" && v != nil {
			*nsGiven = true
		}
		return v, err
	}), nil
}

// run is main without the exit, so tests can drive the CLI in-process.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "--version" && !wholeTreeOnly {
		// what kong's version flag prints, without building the command tree for it
		// (the tree's reflection was an eighth of this command's time)
		versionParses.Add(1)
		fmt.Fprintln(stdout, "nex "+version.String())
		return 0
	}
	var root CLI
	root.SetOutput(stdout, stderr)
	config.Warn = func(msg string) { fmt.Fprintln(stderr, "nex: warning:", msg) }
	asJSON := slices.Contains(args, "--json") // known before anything is parsed
	failEarly := func(err error) int {
		if asJSON {
			printJSONError(stderr, err)
		} else {
			fmt.Fprintln(stderr, "nex:", err)
		}
		return 1
	}
	cfgPath, err := config.Path(args)
	if err != nil {
		return failEarly(err)
	}
	opts := []kong.Option{
		kong.Name("nex"), kong.Description("Run workloads on nex nodes over NATS."),
		kong.Vars{"version": "nex " + version.String()},
		kong.UsageOnError(), kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitCode(code)) }),
	}
	// whether a namespace was chosen anywhere (flag, environment, config file)
	nsGiven := os.Getenv(v1.EnvNamespace) != "" || slices.ContainsFunc(args, func(a string) bool { return a == "--namespace" || strings.HasPrefix(a, "--namespace=") })
	if cfgPath != "" {
		r, err := configResolver(cfgPath, &nsGiven)
		if err != nil {
			return failEarly(err)
		}
		opts = append(opts, kong.Resolvers(r))
		root.SetConfigUsed(cfgPath)
	}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				c, ok := r.(exitCode)
				if !ok {
					panic(r)
				}
				code = int(c)
			}
		}()
		parser, kctx, err := parseArgs(&root, args, opts, cfgPath)
		if parser == nil {
			code = failEarly(err)
			return
		}
		if err != nil && (root.JSON || asJSON) { // a script asked for JSON: errors too
			printJSONError(stderr, v1.BadRequest("%s", err.Error()))
			code = 2
			return
		}
		if err != nil {
			fmt.Fprintln(stderr, "nex:", err)
			var pe *kong.ParseError
			if errors.As(err, &pe) {
				printUsage(stderr, pe.Context)
			}
			code = 2
			return
		}
		if root.Check {
			if err := printCheck(stdout, &root, kctx); err != nil {
				fmt.Fprintln(stderr, "nex:", err)
				code = 1
			}
			return
		}
		if !nsGiven && strings.HasPrefix(kctx.Command(), "workload ") && cli.IsTerminal(stderr) {
			fmt.Fprintf(stderr, "nex: no namespace given: working in %q, the admin namespace (choose one with --namespace, $NEX_NAMESPACE or \"namespace\" in %s)\n", root.Namespace, cmp.Or(root.ConfigUsed(), "the config file"))
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		kctx.BindTo(ctx, (*context.Context)(nil))
		defer root.CloseAll()
		if err := kctx.Run(&root.Globals); err != nil {
			var es cli.ExitStatus
			if errors.As(err, &es) { // a followed workload's exit code: said already
				code = min(max(int(es), 1), 255)
				return
			}
			if root.JSON {
				printJSONError(stderr, err)
			} else {
				printError(stderr, err)
			}
			code = 1
		}
	}()
	return code
}

type exitCode int

// printJSONError writes err to stderr as one JSON object {code, error_code, message,
// details}, so a script run with --json can branch on error_code. Errors of the CLI's own
// (a bad flag value, a file it cannot read) are bad_request; a NATS server it cannot reach
// is unavailable.
func printJSONError(w io.Writer, err error) {
	var e *v1.Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, v1.ErrInvalidToken):
		e = v1.AsError(err)
	case errors.Is(err, nats.ErrNoServers):
		e = v1.Errorf(v1.CodeUnavailable, "%s", err.Error())
	default:
		e = v1.Errorf(v1.CodeBadRequest, "%s", err.Error())
	}
	_ = cli.WriteJSONLine(w, e)
}

// printError writes err to stderr; a no_placement error gets one line per declining node.
func printError(w io.Writer, err error) {
	fmt.Fprintln(w, "nex:", cli.Printable(err.Error())) // its text may be a tenant's
	var e *v1.Error
	if errors.As(err, &e) {
		if d, ok := e.Details.(client.Declines); ok {
			for _, r := range d {
				name := r.NodeName
				if name == "" {
					name = r.NodeID
				}
				fmt.Fprintf(w, "  node %s (%s): %s\n", name, r.NodeID, cli.Printable(r.Decline))
			}
			if len(d) == 0 {
				fmt.Fprintln(w, "  no node answered the auction: is a node running and reachable? try `nex node list`")
			}
		}
	}
}

// printCheck prints the resolved configuration: config file, globals, the NATS
// connection with secrets masked, and the selected command's flags.
func printCheck(w io.Writer, root *CLI, kctx *kong.Context) error {
	resolved, rerr := root.NATS.Resolve()
	if resolved.Password != "" {
		resolved.Password = "*****"
	}
	if resolved.Token != "" {
		resolved.Token = "*****"
	}
	flags := map[string]any{}
	for _, f := range kctx.Flags() {
		if f.Hidden || f.Name == "help" || f.Name == "version" {
			continue
		}
		switch v := f.Target.Interface().(type) {
		case time.Duration: // "1m30s", not nanoseconds
			flags[f.Name] = v.String()
		case v1.Duration:
			flags[f.Name] = time.Duration(v).String()
		default:
			flags[f.Name] = v
		}
	}
	for _, k := range []string{"nats.password", "nats.token", "node-seed", "issuer-signing-key", "issuer-nkey-seed", "secrets-key"} {
		if s, ok := flags[k].(string); ok && s != "" {
			flags[k] = "*****"
		}
	}
	var natsOut map[string]any // as resolved, its timeout written as people write it
	b, _ := json.Marshal(resolved)
	_ = json.Unmarshal(b, &natsOut)
	if _, ok := natsOut["timeout"]; ok {
		natsOut["timeout"] = resolved.Timeout.String()
	}
	out := map[string]any{
		"config_file": root.ConfigUsed(),
		"namespace":   root.Namespace,
		"command":     kctx.Command(),
		"nats":        natsOut,
		"nats_url":    resolved.URL(),
		"flags":       flags,
	}
	if rerr != nil {
		out["nats_error"] = rerr.Error()
	}
	var invalid error
	if strings.HasPrefix(kctx.Command(), "node up") {
		if u, ok := root.Node.Up.EmbeddedURL(); ok { // the node's own server, not --server's
			out["nats_url"] = u
		}
		// what `node up` would refuse before it starts anything
		if invalid = root.Node.Up.Check(); invalid != nil {
			out["error"] = invalid.Error()
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	return invalid
}

// printUsage prints the usage of the command a parse error was about, with its aliases
// left out so the hint can be pasted ("nex workload stop --help", not "nex workload (w)
// stop --help").
func printUsage(w io.Writer, kctx *kong.Context) {
	if kctx.Selected() == nil { // no command yet: the whole tree would be a page long
		fmt.Fprintln(w, `Run "nex --help" for the commands and flags.`)
		return
	}
	var b bytes.Buffer
	out := kctx.Stdout
	kctx.Stdout = &b
	_ = kctx.PrintUsage(true)
	kctx.Stdout = out
	alias := regexp.MustCompile(` \([a-z]+(, [a-z]+)*\)`)
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if strings.HasPrefix(line, "Usage: ") || strings.HasPrefix(line, "Run \"") {
			line = alias.ReplaceAllString(line, "")
		}
		_, _ = io.WriteString(w, line)
	}
}
