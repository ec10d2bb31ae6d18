package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nexrun/nex/internal/version"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node"
)

// ErrNexletNotFound means nexlet-native is neither beside nexd nor on PATH.
var ErrNexletNotFound = errors.New("nexlet-native not found")

// NewLogger builds the daemon's zap logger on stderr.
func NewLogger(level string, asJSON bool) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if asJSON {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(os.Stderr), lvl)), nil
}

// Run starts the node and blocks until ctx ends, then shuts down gracefully. ready, when
// not nil, is called once the node serves and its native nexlet (if any) is registered.
func Run(ctx context.Context, o Options, nopts natsconn.Options, log *zap.Logger, ready func(n *node.Node, url string)) error {
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir()
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", o.DataDir, err)
	}
	kp, err := LoadIdentity(o.NodeSeed, o.DataDir)
	if err != nil {
		return err
	}
	nodeID, _ := kp.PublicKey()
	if o.NodeName == "" {
		o.NodeName = defaultNodeName()
	}

	var ns *server.Server
	if o.Embedded || o.InatsConfig != "" {
		ns, err = natsconn.StartEmbedded(natsconn.EmbeddedOptions{Listen: o.EmbeddedListen, ConfigFile: o.InatsConfig, StoreDir: filepath.Join(o.DataDir, "jetstream")})
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		nopts.Servers = []string{ns.ClientURL()}
		nopts.Context = ""
		log.Info("embedded nats-server started", zap.String("url", ns.ClientURL()), zap.Bool("jetstream", true))
	}
	resolved, err := nopts.Resolve()
	if err != nil {
		return err
	}
	nc, err := resolved.Connect("nexd " + o.NodeName)
	if err != nil {
		return err
	}
	defer nc.Close()

	n, err := node.New(nc, node.Config{
		NodeID: nodeID, Name: o.NodeName, Nexus: o.Nexus, Tags: o.Tags,
		Version: version.Version, Commit: version.Commit, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	log.Info("node identity", zap.String("node_id", nodeID), zap.String("name", o.NodeName), zap.String("data_dir", o.DataDir))

	agentCtx, stopAgents := context.WithCancel(context.Background())
	defer stopAgents()
	var agents sync.WaitGroup
	if !o.DisableNativeStart {
		path, err := findNexletNative(o.NexletNativePath)
		if err != nil {
			n.Stop()
			return err
		}
		args := append([]string{
			"--node-id=" + nodeID, "--nexlet-id=native",
			"--data-dir=" + filepath.Join(o.DataDir, "native"),
			"--log-level=" + o.LogLevel,
		}, resolved.Args()...)
		if o.ShowWorkloadLogs {
			args = append(args, "--show-workload-logs")
		}
		if o.LogJSON {
			args = append(args, "--log-json")
		}
		agents.Add(1)
		go func() {
			defer agents.Done()
			node.Supervise(agentCtx, node.Agent{Name: "nexlet-native", Path: path, Args: args, Env: resolved.Env(), Output: os.Stderr, StopTimeout: o.ShutdownTimeout}, log)
		}()
		wctx, cancel := context.WithTimeout(ctx, o.NexletWait)
		err = n.WaitForNexlet(wctx, "native")
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Warn("nexlet-native has not registered yet; the node runs and will accept it when it does", zap.Error(err))
		}
	}
	if ready != nil && ctx.Err() == nil {
		ready(n, resolved.URL())
	}
	<-ctx.Done()

	log.Info("shutting down", zap.Duration("bound", o.ShutdownTimeout))
	done := make(chan struct{})
	go func() {
		stopAgents()
		agents.Wait()
		n.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(o.ShutdownTimeout):
		log.Warn("graceful shutdown exceeded its bound")
	}
	log.Info("node stopped")
	return nil
}

func findNexletNative(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "nexlet-native")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("nexlet-native"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w beside this binary or on PATH (build it with `make build`, or pass --disable-native-start)", ErrNexletNotFound)
}

func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	h = strings.NewReplacer(".", "-", " ", "-", "*", "-", ">", "-").Replace(h)
	return h
}
