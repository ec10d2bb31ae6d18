package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nexrun/nex/internal/version"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
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
// Reload, when not nil, delivers re-read options (nexd on SIGHUP); the node applies what
// can change live (its tags) and logs what needs a restart.
func Run(ctx context.Context, o Options, nopts natsconn.Options, log *zap.Logger, ready func(n *node.Node, url string), reload <-chan Options) error {
	// A terminal or pipe that goes away must not kill the node through its logging.
	signal.Ignore(syscall.SIGPIPE)
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
	nc, err := resolved.Connect("nexd "+o.NodeName, ConnLogging(log)...)
	if err != nil {
		if len(nopts.Servers) == 0 && nopts.Context == "" && resolved.Context == "" {
			return fmt.Errorf("%w (no NATS server given: use -s/--nats.servers or --nats.context, or --embedded to run one in this process)", err)
		}
		return err
	}
	defer nc.Close()

	store, err := openStore(ctx, o, nc, nodeID, log)
	if err != nil {
		return err
	}
	if o.LogsHistory {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := node.EnsureHistory(hctx, nc, node.HistoryConfig{LogsMaxAge: o.LogsMaxAge, LogsMaxBytes: o.LogsMaxBytes, EventsMaxAge: o.EventsMaxAge, Replicas: o.StateReplicas})
		cancel()
		if err != nil {
			log.Warn("no log and event history (needs JetStream): nex workload logs will only follow live lines", zap.Error(err))
		}
	}
	minter, err := newMinter(o)
	if err != nil {
		return err
	}
	if !minter.Isolated() {
		log.Warn("DEVELOPMENT MODE: no credential issuer configured (--issuer-signing-key or --issuer-nkey); workloads and nexlets share the node's NATS connection and are NOT isolated from each other or from other namespaces")
	}
	var secretsKey nkeys.KeyPair
	if o.SecretsKey != "" {
		seed, err := seedValue("--secrets-key", o.SecretsKey)
		if err != nil {
			return err
		}
		if secretsKey, err = nkeys.FromCurveSeed([]byte(seed)); err != nil {
			return fmt.Errorf("--secrets-key: want a curve seed (SX..., from `nk -gen curve`): %w", err)
		}
	}
	n, err := node.New(nc, node.Config{
		SecretsKey: secretsKey,
		NodeID:     nodeID, Name: o.NodeName, Nexus: o.Nexus, Tags: o.Tags,
		Version: version.Version, Commit: version.Commit, Logger: log,
		Store: store, AllowRemoteNexlets: o.AllowRemoteAgents,
		Minter: minter, CredsTTL: o.WorkloadCredsTTL,
	})
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	log.Info("node identity", zap.String("node_id", nodeID), zap.String("name", o.NodeName), zap.String("data_dir", o.DataDir))
	if o.MetricsListen != "" {
		stopMetrics, err := serveMetrics(o.MetricsListen, n, log)
		if err != nil {
			n.Stop()
			return err
		}
		defer stopMetrics()
	}

	agentCtx, stopAgents := context.WithCancel(context.Background())
	defer stopAgents()
	var agents sync.WaitGroup
	supervise := func(a node.Agent) {
		a.Output, a.StopTimeout, a.RestartLimit = os.Stderr, o.ShutdownTimeout, o.AgentRestartLimit
		a.OnEvent = func(typ, msg string) { n.NexletEvent(typ, a.Name, msg) }
		a.StopAdopted = func() { n.StopLocalNexlet(a.Name, o.ShutdownTimeout) }
		agents.Add(1)
		go func() {
			defer agents.Done()
			node.Supervise(agentCtx, a, log)
		}()
	}
	// Each local nexlet connects with its own scoped credentials when an issuer is set,
	// else with the node's connection settings.
	writeNexletCreds := func(id string) (string, error) {
		c, err := minter.Nexlet(nodeID, id, o.NexletCredsTTL)
		if err != nil || c == nil {
			return "", err
		}
		file, err := c.File()
		if err != nil {
			return "", err
		}
		path := filepath.Join(o.DataDir, id+".creds")
		// replaced whole: the nexlet reads it again when it reconnects
		if err := os.WriteFile(path+".new", file, 0o600); err != nil {
			return "", fmt.Errorf("write nexlet credentials: %w", err)
		}
		return path, os.Rename(path+".new", path)
	}
	var nexletIDs []string
	nexletConn := func(id string) (args, env []string, err error) {
		path, err := writeNexletCreds(id)
		if err != nil || path == "" {
			return resolved.Args(), resolved.Env(), err
		}
		nexletIDs = append(nexletIDs, id)
		only := natsconn.Options{Servers: resolved.Servers, CredsFile: path, TLSCA: resolved.TLSCA, TLSCert: resolved.TLSCert, TLSKey: resolved.TLSKey, TLSFirst: resolved.TLSFirst}
		return only.Args(), nil, nil
	}
	for _, spec := range o.Agents {
		path, _ := spec.Path()
		_, cenv, err := nexletConn(spec.Name)
		if err != nil {
			n.Stop()
			return err
		}
		env := append([]string{"NEX_NEXLET_ID=" + spec.Name, "NEX_NODE_ID=" + nodeID, "NATS_URL=" + resolved.URL()}, cenv...)
		for k, v := range spec.Env {
			env = append(env, k+"="+v)
		}
		supervise(node.Agent{Name: spec.Name, Path: path, Args: spec.Argv, Env: env, Alive: nexletAlive(nc, nodeID, spec.Name)})
	}
	if !o.DisableNativeStart {
		path, err := findNexletNative(o.NexletNativePath)
		if err != nil {
			n.Stop()
			return err
		}
		cargs, cenv, err := nexletConn("native")
		if err != nil {
			n.Stop()
			return err
		}
		args := append([]string{
			"--node-id=" + nodeID, "--nexlet-id=native",
			"--data-dir=" + filepath.Join(o.DataDir, "native"),
			"--log-level=" + o.LogLevel,
		}, cargs...)
		if o.ShowWorkloadLogs {
			args = append(args, "--show-workload-logs")
		}
		if o.LogJSON {
			args = append(args, "--log-json")
		}
		supervise(node.Agent{Name: "native", Path: path, Args: args, Env: cenv, Alive: nexletAlive(nc, nodeID, "native")})
		if len(nexletIDs) > 0 && o.NexletCredsTTL > 0 {
			agents.Add(1)
			go func() {
				defer agents.Done()
				t := time.NewTicker(max(o.NexletCredsTTL/3, time.Second))
				defer t.Stop()
				for {
					select {
					case <-agentCtx.Done():
						return
					case <-t.C:
						for _, id := range nexletIDs {
							if _, err := writeNexletCreds(id); err != nil {
								log.Warn("renew nexlet credentials", zap.String("nexlet_id", id), zap.Error(err))
							}
						}
					}
				}
			}()
		}
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
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-n.Drained():
			log.Info("lameduck finished: every workload is stopped")
			break wait
		case no := <-reload:
			if err := n.SetTags(no.Tags); err != nil {
				log.Error("reload: tags not applied", zap.Error(err))
				continue
			}
			log.Info("reload: tags applied", zap.Any("tags", no.Tags))
		}
	}

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

// newMinter picks the credential strategy: an account signing key, the account's own
// key, or development mode (no isolation) when neither is configured.
func newMinter(o Options) (creds.Minter, error) {
	switch {
	case o.IssuerSigningKey != "" && o.IssuerNKey != "":
		return nil, fmt.Errorf("%w: give --issuer-signing-key or --issuer-nkey, not both", creds.ErrConfig)
	case o.IssuerSigningKey != "":
		seed, err := seedValue("--issuer-signing-key", o.IssuerSigningKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", creds.ErrConfig, err)
		}
		return creds.NewSigningKeyMinter(seed, o.IssuerRootAccount)
	case o.IssuerNKey != "":
		if o.IssuerNKeySeed == "" {
			return nil, fmt.Errorf("%w: --issuer-nkey needs --issuer-nkey-seed (the account's seed, or a file holding it)", creds.ErrConfig)
		}
		seed, err := seedValue("--issuer-nkey-seed", o.IssuerNKeySeed)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", creds.ErrConfig, err)
		}
		return creds.NewAccountKeyMinter(o.IssuerNKey, seed)
	case o.IssuerRootAccount != "" || o.IssuerNKeySeed != "":
		return nil, fmt.Errorf("%w: --issuer-signing-key-root-account goes with --issuer-signing-key, --issuer-nkey-seed with --issuer-nkey", creds.ErrConfig)
	}
	return creds.Dev{}, nil
}

// seedValue accepts a seed or the path of a file holding one; flag names it in errors.
func seedValue(flag, v string) (string, error) {
	if strings.HasPrefix(v, "S") {
		return v, nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return "", fmt.Errorf("%s: neither a seed (S...) nor a readable file: %v", flag, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// serveMetrics serves /metrics (Prometheus text format) on addr.
func serveMetrics(addr string, n *node.Node, log *zap.Logger) (func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics.listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", n.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	log.Info("metrics", zap.String("url", "http://"+l.Addr().String()+"/metrics"))
	return func() { _ = srv.Close() }, nil
}

// openStore picks the desired-state store: kv (JetStream KV; an error without
// JetStream), memory, or auto (kv when JetStream answers, else memory with a warning).
func openStore(ctx context.Context, o Options, nc *nats.Conn, nodeID string, log *zap.Logger) (node.Store, error) {
	if o.State == "memory" {
		return node.NewMemoryStore(), nil
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := node.OpenKVStore(sctx, nc, nodeID, o.StateReplicas)
	if err == nil {
		log.Info("desired state in JetStream KV", zap.String("bucket", node.KVBucket), zap.Int("replicas", o.StateReplicas))
		return kv, nil
	}
	if o.State == "kv" {
		return nil, err
	}
	log.Warn("desired state kept in memory: a restarted nexd rebuilds it from its nexlets", zap.Error(err))
	return node.NewMemoryStore(), nil
}

// nexletAlive asks whether nexlet id of this node answers its PING: one that outlived a
// killed nexd keeps its workloads, and must be adopted rather than duplicated.
func nexletAlive(nc *nats.Conn, nodeID, id string) func(context.Context) bool {
	return func(ctx context.Context) bool {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := nc.RequestWithContext(ctx, v1.NexletSubject(nodeID, id, v1.NexletPing), nil)
		return err == nil
	}
}

func findNexletNative(explicit string) (string, error) {
	if explicit != "" {
		st, err := os.Stat(explicit)
		if err != nil {
			return "", fmt.Errorf("--nexlet-native-path: %w", err)
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("--nexlet-native-path %s: not an executable file", explicit)
		}
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

// ConnLogging logs a daemon's NATS connection losing and finding its server, so an
// operator sees a gap in service for what it is.
func ConnLogging(log *zap.Logger) []nats.Option {
	return []nats.Option{
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil && !nc.IsClosed() {
				log.Warn("NATS connection lost; reconnecting", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connection restored", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
	}
}

// ReconnectOnRenewal reconnects nc as soon as its credentials file is replaced (nexd
// renews a nexlet's at a third of their lifetime), so the connection moves to the new
// credentials at a moment of its choosing, in about a millisecond, instead of being cut
// off by the server when the old ones expire. It returns when ctx ends.
func ReconnectOnRenewal(ctx context.Context, nc *nats.Conn, path string, every time.Duration, log *zap.Logger) {
	last := modTime(path)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m := modTime(path); !m.IsZero() && !m.Equal(last) {
			last = m
			log.Debug("reconnecting with renewed credentials", zap.String("creds", path))
			if err := nc.ForceReconnect(); err != nil {
				log.Warn("reconnect with renewed credentials", zap.Error(err))
			}
		}
	}
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}
