// Command nexd is the nex node daemon.
//
// GOMAXPROCS is set at start from the machine's CPUs and the process's cgroup limit, and
// not checked again every second after (Go 1.25's updatemaxprocs): a daemon that idles
// should not wake for it.
//
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/config"
	"github.com/nexrun/nex/internal/daemon"
	"github.com/nexrun/nex/internal/proc"
	"github.com/nexrun/nex/internal/version"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node"
)

type cli struct {
	daemon.Options
	Config  string           `name:"config" type:"path" help:"Config file (default: first of /etc/nex/config.json, ~/.config/nex/config.json, ./config.json); node flags may sit at the top or under node.up."`
	NATS    natsconn.Options `embed:"" prefix:"nats."`
	Version kong.VersionFlag `help:"Print the version and exit."`
	CLIHint string           `name:"cli-hint" hidden:"" help:"The nex command to suggest once the node is up (nex node up passes its own)."`
}

// parse reads the flags and the config file; flags win.
func parse(args []string) (*cli, error) {
	return parseWith(args, func(msg string) { fmt.Fprintln(os.Stderr, "nexd: warning:", msg) })
}

// parseWith is parse, with warn told what the config file has that nexd ignores.
func parseWith(args []string, warn func(string)) (*cli, error) {
	var c cli
	opts := []kong.Option{kong.Name("nexd"), kong.Description("The nex node daemon: runs nexlets and places workloads. SIGHUP re-reads the config file's tags."),
		kong.Vars{"version": "nexd " + version.String()}, kong.UsageOnError()}
	if err := daemon.RefuseSeedArgs(args); err != nil {
		return nil, err
	}
	config.Warn = warn
	path, err := config.Path(args)
	if err != nil {
		return nil, err
	}
	if path != "" {
		r, err := config.Load(path, []string{"node", "up"})
		if err != nil {
			return nil, err
		}
		opts = append(opts, kong.Resolvers(r))
	}
	p, err := kong.New(&c, opts...)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := config.CheckDaemon(path, p.Model); err != nil {
			return nil, err
		}
	}
	if _, err := p.Parse(args); err != nil {
		return nil, err
	}
	return &c, nil
}

func main() {
	proc.NoInheritedFiles()
	c, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "nexd:", err)
		os.Exit(2)
	}
	log, err := proc.NewLogger(c.LogLevel, c.LogJSON)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nexd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reload := make(chan daemon.Options, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			nc, err := parse(os.Args[1:])
			if err != nil {
				log.Error("reload: config not read", zap.Error(err))
				continue
			}
			reload <- nc.Options
		}
	}()
	err = daemon.Run(ctx, c.Options, c.NATS, log, func(n *node.Node, url string) {
		log.Info("node ready", zap.String("node_id", n.ID()), zap.String("nats", url))
		if c.CLIHint != "" {
			nex := c.CLIHint
			fmt.Fprintf(os.Stderr, `
Node %s is up (NATS at %s).
Try, in another terminal:
  %s node list -s %s
  %s --namespace default workload start -s %s --type native --lifecycle job --name hello \
      --start-request '{"uri":"file:///bin/echo","argv":["hello from nex"]}'
  %s --namespace default workload list -s %s
Press Ctrl+C to stop the node.
`, n.ID(), url, nex, url, nex, url, nex, url)
		}
	}, reload)
	if err != nil {
		log.Error("nexd stopped", zap.Error(err))
		_ = log.Sync()
		os.Exit(1)
	}
}
