// Command nexlet-native is the bundled nexlet that runs OS executables for a nex node.
//
// GOMAXPROCS is set at start from the machine's CPUs and the process's cgroup limit, and
// not checked again every second after (Go 1.25's updatemaxprocs): a daemon that idles
// should not wake for it.
//
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/proc"
	"github.com/nexrun/nex/internal/version"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/runtime/native"
	"github.com/nexrun/nex/pkg/runtime/native/spawn"
	"github.com/nexrun/nex/pkg/runtime/native/uids"
	"github.com/nexrun/nex/pkg/runtime/native/workdir"
	"github.com/nexrun/nex/schemas"
)

func main() {
	native.SandboxMain() // started as a workload's sandbox helper: becomes the workload
	proc.NoInheritedFiles()
	c, err := parseFlags(os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, errHelp) || errors.Is(err, errVersion):
		return
	case err != nil:
		fmt.Fprintf(os.Stderr, "nexlet-native: %v (nexlet-native --help lists the flags)\n", err)
		os.Exit(2)
	}
	log, sink, err := proc.NewMovableLogger(c.LogLevel, c.LogJSON)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nexlet-native:", err)
		os.Exit(2)
	}
	log = log.Named("nexlet-native").With(zap.String("nexlet_id", c.NexletID))
	if err := run(c, log, sink); err != nil {
		log.Error("nexlet-native stopped", zap.Error(err))
		_ = log.Sync()
		os.Exit(1)
	}
}

func run(c cli, log *zap.Logger, sink *proc.LogSink) error {
	// Our stderr may be a pipe from a nexd that died; losing log lines beats dying.
	proc.SurviveSIGPIPE()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if c.DataDir == "" {
		c.DataDir = proc.DefaultDataDir() + "/native"
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs // workloads (and their sandboxes) are given absolute paths
	}
	// one nexlet per data dir: a second one would take the first one's workloads for
	// leftovers of a dead predecessor and kill them
	lock, err := proc.LockDir(c.DataDir, "nexlet-native")
	if err != nil {
		return err
	}
	defer lock.Release()
	// a nexlet that outlives its nexd (kill -9) is adopted by the next one, but its stderr
	// is still the dead nexd's terminal or pipe: from then on it logs to a file
	go proc.OnParentGone(ctx, 2*time.Second, c.NodeID, func() { // with the heartbeats
		path := filepath.Join(c.DataDir, "nexlet.log")
		log.Warn("nexd, which started this nexlet, is gone; logging to " + path + " from now on")
		if err := sink.MoveTo(path); err != nil {
			log.Warn("log to a file", zap.Error(err))
			return
		}
		log.Info("logging here: nexd, which started this nexlet, is gone; the next one adopts it")
	})
	// what a workload forks and leaves behind is reparented here and reaped at once
	stopReaping, err := spawn.BecomeSubreaper(log)
	if err != nil {
		log.Warn("cannot become the subreaper of workload processes: orphans are left to PID 1", zap.Error(err))
	}
	defer stopReaping()
	schema, err := schemas.StartRequest("native")
	if err != nil {
		return err
	}
	resolved, err := c.NATS.Resolve()
	if err != nil {
		return err
	}
	sock := natsconn.NewSocket(resolved.Timeout)
	nc, err := resolved.Connect("nexlet-native "+c.NexletID, append(proc.ConnLogging(log), sock.Option())...)
	if err != nil {
		return err
	}
	defer nc.Close()
	// checked until the nexlet is done (past a SIGTERM, while it stops its workloads)
	defer proc.StartChecks(c.NodeID, log, proc.Checked{Conn: nc, Socket: sock})() // with the heartbeats
	if resolved.CredsFile != "" {
		go reconnectOnRenewal(ctx, nc, resolved.CredsFile, 250*time.Millisecond, log)
	}
	opts, err := c.driverOptions(nc, log)
	if err != nil {
		return err
	}
	perWorkload := 2 // its output pipes (the reaper needs no pidfd)
	if opts.UIDs != nil {
		perWorkload++ // and the lock of its UID
	}
	raiseFileLimit(perWorkload, log)
	if c.ShowWorkloadLogs {
		opts.Tee = func(wid, stream string, line []byte) {
			log.Info(string(line), zap.String("workload_id", wid), zap.String("stream", stream))
		}
	}
	d, err := native.New(opts)
	if err != nil {
		return err
	}
	cgroups, limits := d.Cgroups()
	log.Info("resource limits", zap.String("cgroups", cgroups), zap.Strings("limits", limits))
	// the same key across restarts: environment values sealed for it stay readable
	xkey, err := nexlet.LoadXKey(filepath.Join(c.DataDir, "xkey.seed"))
	if err != nil {
		return err
	}
	err = nexlet.Serve(ctx, nc, nexlet.Config{
		NodeID: c.NodeID, NexletID: c.NexletID, RegisterType: "native", Version: version.Version,
		Lifecycles: native.Lifecycles, StartRequestSchema: schema, MaxWorkloads: c.MaxWorkloads, Logger: log, XKey: xkey,
		Isolation: d.Isolation(), Sandbox: d.Sandbox(), Cgroups: cgroups, Limits: limits,
	}, d)
	// Whatever ended Serve, workloads are stopped the way `workload stop` stops them.
	log.Info("stopping workloads")
	d.Shutdown(context.Background())
	_ = nc.Drain()
	return err
}

// workloadUIDs reads --workload-uids. "auto" isolates when this process can (root, and a
// data dir other users can pass through) and says why not when it cannot; an explicit
// range that cannot be used is an error, never a quiet fall-back.
func workloadUIDs(flag, dataDir string, log *zap.Logger) (*native.UIDRange, error) {
	switch flag {
	case "none":
		log.Warn("workloads run as this nexlet's own user (nex.isolation=none): --workload-uids none")
		return nil, nil
	case "auto", "":
		if err := uids.CanSwitchUsers(); err != nil {
			log.Warn("workloads run as this nexlet's own user (nex.isolation=none): " + err.Error())
			return nil, nil
		}
		if err := workdir.CanReach(dataDir); err != nil {
			log.Warn("workloads run as this nexlet's own user (nex.isolation=none): " + err.Error())
			return nil, nil
		}
		r, err := native.ParseUIDRange(native.DefaultUIDs)
		return &r, err
	}
	r, err := native.ParseUIDRange(flag)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// raiseFileLimit lifts this process's open-file limit as far as it may: each running
// workload holds per descriptors here (its two output pipes, and its UID's lock when it
// is a user of its own), so 10,000 workloads need 20,000 or 30,000. Root raises the hard
// limit too.
func raiseFileLimit(per int, log *zap.Logger) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			want = n
		}
	}
	if l.Max < want && syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil {
		return
	}
	if l.Cur < l.Max {
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: l.Max, Max: l.Max})
	}
	if need := uint64(10000*per + 100); l.Max < need {
		log.Info("open files are limited: each workload holds "+strconv.Itoa(per), zap.Uint64("limit", l.Max), zap.Int("workloads_about", int(l.Max-100)/per))
	}
}

// driverOptions are the runtime's options from the flags.
func (c *cli) driverOptions(nc *nats.Conn, log *zap.Logger) (native.Options, error) {
	opts := native.Options{
		NodeID: c.NodeID, NexletID: c.NexletID, DataDir: c.DataDir, NATSURL: nc.ConnectedUrlRedacted(),
		Conn: nc, Logger: log, DefaultGrace: c.StopGrace, MaxWorkloads: c.MaxWorkloads,
		UIDLockDir: c.UIDLockDir, NoCgroups: c.Cgroups == "none", WorkdirRoots: c.WorkdirRoots,
	}
	var err error
	if opts.UIDs, err = workloadUIDs(c.WorkloadUIDs, c.DataDir, log); err != nil {
		return opts, err
	}
	if opts.RunAs, err = native.ParseRunAs(c.RunAs); err != nil {
		return opts, err
	}
	if exe, err := os.Executable(); err == nil {
		opts.SandboxExe, opts.SandboxFallback = native.SandboxHelper(exe), exe
	}
	opts.DefaultLimits, _ = v1.ParseResources(c.DefaultLimits) // checked with the flags
	opts.MaxLimits, _ = v1.ParseResources(c.MaxLimits)
	cache, _ := v1.ParseByteSize(c.CacheMaxBytes)
	opts.CacheMaxBytes = int64(cache)
	rate, _ := v1.ParseByteSize(c.OutputRate)
	opts.Feed = nexlet.NewFeed(nc, c.NodeID)
	opts.Feed.OutputRate = int64(rate)
	return opts, nil
}

// reconnectOnRenewal reconnects nc as soon as its credentials file is replaced (nexd
// renews a nexlet's at a third of their lifetime), so the connection moves to the new
// credentials at a moment of its choosing, in about a millisecond, instead of being cut
// off by the server when the old ones expire. It returns when ctx ends.
func reconnectOnRenewal(ctx context.Context, nc *nats.Conn, path string, every time.Duration, log *zap.Logger) {
	natsconn.WatchFileNotify(ctx, path, every, func() {
		// not at once: nexd renews the nexlet's credentials and hands its workloads theirs
		// on tickers of the same period, and a reconnect at the moment of each file write
		// met every round of the workloads' (a function's connection ran out of credentials
		// in a CI run); a pause of up to every, as a check every interval had, spreads them
		select {
		case <-ctx.Done():
			return
		case <-time.After(rand.N(every)):
		}
		log.Debug("reconnecting with renewed credentials", zap.String("creds", path))
		if err := nc.ForceReconnect(); err != nil {
			log.Warn("reconnect with renewed credentials", zap.Error(err))
		}
	})
}
