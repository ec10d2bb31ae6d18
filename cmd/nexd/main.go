// Command nexd is the nex node daemon.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/daemon"
	"github.com/nexrun/nex/internal/version"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node"
)

type cli struct {
	daemon.Options
	NATS    natsconn.Options `embed:"" prefix:"nats."`
	Version kong.VersionFlag `help:"Print the version and exit."`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("nexd"), kong.Description("The nex node daemon: runs nexlets and places workloads."),
		kong.Vars{"version": "nexd " + version.String()}, kong.UsageOnError())
	log, err := daemon.NewLogger(c.LogLevel, c.LogJSON)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nexd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = daemon.Run(ctx, c.Options, c.NATS, log, func(n *node.Node, url string) {
		log.Info("node ready", zap.String("node_id", n.ID()), zap.String("nats", url))
	})
	if err != nil {
		log.Error("nexd stopped", zap.Error(err))
		_ = log.Sync()
		os.Exit(1)
	}
}
