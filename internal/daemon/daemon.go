package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/proc"
	"github.com/nexrun/nex/internal/retry"
	"github.com/nexrun/nex/internal/version"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/natsconn/embedded"
	"github.com/nexrun/nex/pkg/node"
	"github.com/nexrun/nex/pkg/node/history"
	"github.com/nexrun/nex/pkg/node/secrets"
)

// daemon is one run of nexd: what Run's steps set up, for the steps after them.
type daemon struct {
	o        Options
	log      *zap.Logger
	nodeID   string
	ns       *server.Server // embedded server, or nil
	resolved natsconn.Options
	nxc      *nats.Conn // the node's connection to its nexlets (see connect)
	nc       *nats.Conn
	snc      *nats.Conn     // the state account's connection (--state.creds-file), or nil
	checked  []proc.Checked // nc, nxc and snc, for proc.CheckConns
	minter   creds.Minter
	node     *node.Node
	nexlets  *nexlets
	lock     *proc.DirLock
	// startupDeadline ends the start-up wait for NATS and JetStream (--startup-wait).
	startupDeadline time.Time
	// leaveOpen keeps the connection and embedded server open when Run returns: a
	// shutdown that ran out of time may still have goroutines using them.
	leaveOpen bool
}

// Run starts the node and blocks until ctx ends, then shuts down gracefully. ready, when
// not nil, is called once the node serves and its native nexlet (if any) is registered.
// Reload, when not nil, delivers re-read options (nexd on SIGHUP); the node applies what
// can change live (its tags) and logs what needs a restart.
func Run(ctx context.Context, o Options, nopts natsconn.Options, log *zap.Logger, ready func(n *node.Node, url string), reload <-chan Options) error {
	// A terminal or pipe that goes away must not kill the node through its logging.
	proc.SurviveSIGPIPE()
	if err := o.Check(); err != nil {
		return err
	}
	d := &daemon{o: o, log: log, startupDeadline: time.Now().Add(o.StartupWait)}
	defer d.close()
	if err := d.identity(); err != nil {
		return err
	}
	if err := d.connect(ctx, nopts); err != nil {
		return err
	}
	// the connections are checked until Run returns, the shutdown included
	defer proc.StartChecks(d.nodeID, d.log, d.checked...)()
	d.warnSharedKeyFiles()
	if err := d.buildNode(ctx); err != nil {
		return err
	}
	log.Info("node identity", zap.String("node_id", d.nodeID), zap.String("name", d.o.NodeName), zap.String("data_dir", d.o.DataDir))
	if d.o.MetricsListen != "" {
		stopMetrics, err := serveMetrics(d.o.MetricsListen, d.node, log)
		if err != nil {
			d.node.Stop()
			return err
		}
		defer stopMetrics()
	}
	if err := d.startNexlets(ctx); err != nil {
		d.nexlets.stop()
		d.node.Stop()
		return err
	}
	if ready != nil && ctx.Err() == nil {
		ready(d.node, d.resolved.URL())
	}
	d.serve(ctx, reload)
	return d.shutdown()
}

// warnSharedKeyFiles warns about each key or credentials file of the node that other
// users of the machine can read: a workload that runs as a user of its own could.
func (d *daemon) warnSharedKeyFiles() {
	files := map[string]string{"--nats.creds-file": d.resolved.CredsFile}
	for flag, v := range map[string]string{"--node-seed": d.o.NodeSeed, "--issuer-signing-key": d.o.IssuerSigningKey,
		"--issuer-nkey-seed": d.o.IssuerNKeySeed, "--secrets-key": d.o.SecretsKey} {
		if !strings.HasPrefix(v, "S") { // a file, not the seed from the environment
			files[flag] = v
		}
	}
	for _, flag := range slices.Sorted(maps.Keys(files)) {
		path := files[flag]
		if st, err := os.Stat(path); path != "" && err == nil && st.Mode().Perm()&0o044 != 0 {
			d.log.Warn(fmt.Sprintf("%s %s is readable by other users of this machine (mode %04o), workloads included: chmod 600 %s", flag, path, st.Mode().Perm(), path))
		}
	}
}

// openDataDir lets workloads that run as users of their own (or as a user and group they
// name, the data dir's group included) pass through the data dir to their workdirs under
// native/ (g+x, o+x: enter, not list; every file in it is 0600 or in a 0700 directory).
func (d *daemon) openDataDir() {
	st, err := os.Stat(d.o.DataDir)
	if err != nil || st.Mode().Perm()&0o011 == 0o011 {
		return
	}
	if err := os.Chmod(d.o.DataDir, st.Mode().Perm()|0o011); err != nil {
		d.log.Warn("cannot let workloads pass through the data dir to their workdirs", zap.Error(err))
	}
}

// identity makes the data dir and loads (or creates) the node's key.
func (d *daemon) identity() error {
	if d.o.DataDir == "" {
		d.o.DataDir = proc.DefaultDataDir()
	}
	if abs, err := filepath.Abs(d.o.DataDir); err == nil {
		d.o.DataDir = abs // the nexlets and their workloads get paths below it
	}
	// one node per data dir: a second one stops here, before it touches anything
	lock, err := proc.LockDir(d.o.DataDir, "nexd")
	if err != nil {
		return err
	}
	d.lock = lock
	if os.Geteuid() == 0 && d.o.WorkloadUIDs != "none" {
		d.openDataDir()
	}
	kp, err := LoadIdentity(d.o.NodeSeed, d.o.DataDir)
	if err != nil {
		return err
	}
	d.nodeID, _ = kp.PublicKey()
	if d.o.NodeName == "" {
		d.o.NodeName = defaultNodeName()
	}
	return nil
}

// connect starts the embedded server when asked, and connects to NATS.
func (d *daemon) connect(ctx context.Context, nopts natsconn.Options) error {
	if d.o.Embedded || d.o.InatsConfig != "" {
		ns, err := embedded.Start(embedded.Options{Listen: d.o.EmbeddedListen, ConfigFile: d.o.InatsConfig, StoreDir: filepath.Join(d.o.DataDir, "jetstream")})
		if err != nil {
			return err
		}
		d.ns = ns
		nopts.Servers = []string{ns.ClientURL()}
		nopts.Context = ""
		d.log.Info("embedded nats-server started", zap.String("url", ns.ClientURL()), zap.Bool("jetstream", true))
	}
	resolved, err := nopts.Resolve()
	if err != nil {
		return err
	}
	d.resolved = resolved
	// The node asks its nexlets through a connection of their own, whose replies come under
	// a prefix they may publish to (creds.NodeInboxPrefix): an answer by response
	// permission alone is lost when the nexlet reconnects meanwhile (it does at every
	// renewal of its credentials). Only these replies: a nexlet cannot answer for
	// JetStream or another node on the node's main connection.
	forNexlets := resolved
	forNexlets.InboxPrefix = creds.NodeInboxPrefix(d.nodeID)
	connect := func(context.Context) error {
		opts := proc.ConnLogging(d.log)
		// each connection dialled through a socket of its own, for CheckConns to close
		socks := [3]*natsconn.Socket{natsconn.NewSocket(resolved.Timeout), natsconn.NewSocket(resolved.Timeout), natsconn.NewSocket(resolved.Timeout)}
		nc, err := resolved.Connect("nexd "+d.o.NodeName, append(opts, socks[0].Option())...)
		if err != nil {
			return err
		}
		if err := checkNodeRights(nc, resolved.CredsFile); err != nil {
			nc.Close()
			return err
		}
		nxc, err := forNexlets.Connect("nexd "+d.o.NodeName+" (nexlets)", append(opts, socks[1].Option())...)
		if err != nil {
			nc.Close()
			return err
		}
		var snc *nats.Conn
		if d.o.StateCreds != "" {
			if snc, err = stateOptions(resolved, d.o.StateCreds).Connect("nexd "+d.o.NodeName+" (state)", append(opts, socks[2].Option())...); err != nil {
				nc.Close()
				nxc.Close()
				return fmt.Errorf("--state.creds-file: %w", err)
			}
		}
		d.nc, d.nxc, d.snc = nc, nxc, snc
		d.checked = []proc.Checked{{Conn: nc, Socket: socks[0]}, {Conn: nxc, Socket: socks[1]}, {Conn: snc, Socket: socks[2]}}
		return nil
	}
	if d.ns != nil || (len(nopts.Servers) == 0 && nopts.Context == "" && resolved.Context == "") {
		// an embedded server is up already; with no server given, say what to do at once
		if err := connect(ctx); err != nil {
			if d.ns == nil {
				return fmt.Errorf("%w (no NATS server given: use -s/--nats.servers or --nats.context, or --embedded to run one in this process)", err)
			}
			return err
		}
		return nil
	}
	// servers given: at boot they may come up after this node
	return d.waitFor(ctx, "NATS server "+resolved.URL(), retry.PermanentConn, connect)
}

// close closes the connection and stops the embedded server, unless a shutdown that ran
// out of time left goroutines that may still use them.
func (d *daemon) close() {
	if d.leaveOpen {
		return // the lock goes with the process
	}
	defer d.lock.Release()
	if d.nc != nil {
		d.nc.Close()
		d.nxc.Close()
	}
	if d.snc != nil {
		d.snc.Close()
	}
	if d.ns != nil {
		d.ns.Shutdown()
		d.ns.WaitForShutdown()
	}
}

// buildNode opens the state store and history, sets up credentials and secrets, and
// starts the node.
func (d *daemon) buildNode(ctx context.Context) error {
	o := d.o
	var err error
	if d.minter, err = newMinter(o); err != nil {
		return err
	}
	if err := mintsForOwnAccount(o, d.resolved.CredsFile); err != nil {
		return err
	}
	if !d.minter.Isolated() {
		d.log.Warn("DEVELOPMENT MODE: no credential issuer configured (--issuer-signing-key or --issuer-nkey); workloads and nexlets share the node's NATS connection and are NOT isolated from each other or from other namespaces")
	}
	secretsKey, err := loadSecretsKey(o.SecretsKey)
	if err != nil {
		return err
	}
	if err := d.checkStateAccount(); err != nil {
		return err
	}
	// A node waiting for its state is not ready: it serves nothing until it is open.
	store, err := d.openStore(ctx)
	if err != nil {
		return err
	}
	if err := d.moveState(ctx); err != nil { // into the state account, once
		return err
	}
	var hist *history.History
	if o.LogsHistory {
		if hist, err = d.openHistory(ctx); err != nil {
			return err
		}
	}
	secretsKV, err := d.openSecrets(ctx)
	if err != nil {
		return err
	}
	quotas, _ := v1.ParseQuotas(o.NamespaceQuota) // checked at start
	defaults, _ := v1.ParseResources(o.DefaultLimits)
	ceiling, _ := v1.ParseResources(o.MaxLimits)
	memory, reserveMemory, err := o.MemoryOffered() // checked at start
	if err != nil {
		return err
	}
	if d.minter.Isolated() && len(quotas) == 0 && defaults.Empty() {
		// a newcomer's walk of the operator walkthrough: one tenant's workloads, with no
		// limits, could take the node's memory, CPU and processes from every other's
		d.log.Warn("tenants share this node with no --namespace-quota and no --default-limits: one namespace's workloads can take all of its memory, CPU and processes; see docs/security.md (A node shared by tenants)")
	}
	n, err := node.New(d.nc, node.Config{
		NexletConn: d.nxc,
		SecretsKey: secretsKey, SecretsBucket: secretsKV, History: hist, Quotas: quotas,
		BundleMaxBytes: o.BundlesMaxBytes, BundleReplicas: o.StateReplicas,
		NodeID: d.nodeID, Name: o.NodeName, Nexus: o.Nexus, Tags: o.Tags,
		Version: version.Version, Commit: version.Commit, Logger: d.log,
		Store: store, AllowRemoteNexlets: o.AllowRemoteNexlets,
		Minter: d.minter, CredsTTL: o.WorkloadCredsTTL, FinishedRetention: o.FinishedRetention,
		RequireIsolation: o.RequireIsolation, NodeLossWindow: o.NodeLossWindow,
		Memory: memory, CPUs: o.CPUs, ReserveMemory: reserveMemory, ReserveCPU: o.ReserveCPU, Placement: o.Placement,
		DefaultLimits: defaults, MaxLimits: ceiling,
	})
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	d.node = n
	return nil
}

// loadSecretsKey reads --secrets-key (nil when it is not set).
func loadSecretsKey(v string) (nkeys.KeyPair, error) {
	if v == "" {
		return nil, nil
	}
	seed, err := seedValue("--secrets-key", v)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromCurveSeed([]byte(seed))
	if err != nil {
		return nil, fmt.Errorf("--secrets-key: want a curve seed (SX..., from `nk -gen curve`): %w", err)
	}
	return kp, nil
}

// serve runs until ctx ends or lameduck has stopped everything, applying reloads.
func (d *daemon) serve(ctx context.Context, reload <-chan Options) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.node.Drained():
			d.log.Info("lameduck finished: every workload is stopped")
			return
		case no := <-reload:
			if err := d.node.SetTags(no.Tags); err != nil {
				d.log.Error("reload: tags not applied", zap.Error(err))
				continue
			}
			d.log.Info("reload: tags applied", zap.Any("tags", no.Tags))
		}
	}
}

// shutdown stops the nexlets (they stop their workloads), then the node, within
// --shutdown-timeout. Past it, Run returns and leaves what still runs to the process's
// exit: the connection those goroutines use is not closed under them.
func (d *daemon) shutdown() error {
	d.log.Info("shutting down", zap.String("bound", d.o.ShutdownTimeout.String()))
	done := make(chan struct{})
	go func() {
		d.nexlets.stop()
		d.node.Stop()
		close(done)
	}()
	select {
	case <-done:
		d.log.Info("node stopped")
		return nil
	case <-time.After(d.o.ShutdownTimeout):
		d.leaveOpen = true
		d.log.Warn("graceful shutdown exceeded its bound; exiting with what still runs")
		return nil
	}
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

// checkNodeRights asks the server, once, for what a node's connection does first: its
// replies under _INBOX (JetStream's answers), JetStream's API, and the control subjects it
// serves. A user without them (a newcomer's walk gave nexd a tenant's credentials) had the
// node wait out --startup-wait on "context deadline exceeded", never saying why: the
// server reports a denied subscribe or publish only asynchronously, before its answer to
// the flush that follows.
func checkNodeRights(nc *nats.Conn, credsFile string) error {
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	// subjects no one sends to: a subscription to PING itself was an interest with no
	// answer, and a `node list` in the node's first moments waited its whole timeout (a CI
	// dry run: ten tests' waits for their node ran out)
	for _, subject := range []string{nats.NewInbox(), v1.ControlSubject(v1.SystemNamespace, v1.VerbPing, nuid.Next())} {
		s, err := nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		subs = append(subs, s)
	}
	if err := nc.Publish("$JS.API.INFO", nil); err != nil { // no reply subject: no answer
		return err
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return nil // the server is slow: what follows says what it makes of this user
	}
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) {
		who := "the node's NATS user"
		if credsFile != "" {
			who = "the user of " + credsFile
		}
		return fmt.Errorf("%s lacks a node's rights (%v): a node needs the account's full rights (node.creds of nex security init), not a tenant's", who, err)
	}
	return nil
}

// mintsForOwnAccount refuses an issuer that mints for another account than the one of
// the node's own credentials (credsFile): the nexlets' and workloads' credentials would be
// refused ("Authorization Violation"), and the node would come up running nothing (a
// newcomer's walk, given another account's public key).
func mintsForOwnAccount(o Options, credsFile string) error {
	flag, account := "--issuer-signing-key-root-account", o.IssuerRootAccount
	if o.IssuerNKey != "" {
		flag, account = "--issuer-nkey", o.IssuerNKey
	}
	if account == "" || credsFile == "" {
		return nil
	}
	b, err := os.ReadFile(credsFile)
	if err != nil {
		return nil // the connection has said what is wrong with it
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return nil
	}
	own := cmp.Or(uc.IssuerAccount, uc.Issuer)
	if own != account {
		return fmt.Errorf("%w: %s %s is not the account of the node's own credentials (%s: account %s): the credentials it mints for nexlets and workloads would be refused", creds.ErrConfig, flag, account, credsFile, own)
	}
	return nil
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

// openStore picks the record store: kv (JetStream KV; an error without JetStream), local
// (files in the data dir), memory, or auto (kv when JetStream answers, else local with a
// warning).
// While JetStream is there but not ready (a cluster booting), it waits (--startup-wait).
func (d *daemon) openStore(ctx context.Context) (node.Store, error) {
	o := d.o
	local := func() (node.Store, error) { return node.NewFileStore(filepath.Join(o.DataDir, "state")) }
	switch o.State {
	case "memory":
		return node.NewMemoryStore(), nil
	case "local":
		return local()
	}
	var kv *node.KVStore
	what := fmt.Sprintf("JetStream KV bucket %s (replicas %d)", node.KVBucket, max(o.StateReplicas, 1))
	err := d.waitFor(ctx, what, node.JetStreamPermanent, func(actx context.Context) (err error) {
		kv, err = node.OpenKVStore(actx, d.stateConn(), d.nodeID, o.StateReplicas)
		return err
	})
	if err == nil {
		d.log.Info("desired state in JetStream KV", zap.String("bucket", node.KVBucket), zap.Int("replicas", o.StateReplicas), zap.Bool("state_account", d.snc != nil))
		if d.snc == nil && d.minter.Isolated() {
			d.log.Warn("the state is in the account tenants' credentials are minted in: a tenant can have JetStream write its answers over any workload's record, a lease or a secret; give every node --state.creds-file of another account (nex security init makes state.creds)")
		}
		return kv, nil
	}
	if o.State == "kv" || d.snc != nil || !errors.Is(err, node.ErrNoJetStream) {
		return nil, err // with --state.creds-file, the state account must have JetStream
	}
	d.log.Warn("workload records kept in the data dir (no JetStream): they survive a restart of this nexd, not the loss of this machine", zap.Error(err))
	return local()
}

// openHistory removes the legacy shared history streams and makes the system
// namespace's, waiting while JetStream is not ready; without JetStream the node runs
// without history (nil). Each namespace's streams are made when its first workload starts.
func (d *daemon) openHistory(ctx context.Context) (*history.History, error) {
	o := d.o
	cfg := history.Config{LogsMaxAge: o.LogsMaxAge, LogsMaxBytes: o.LogsMaxBytes, EventsMaxAge: o.EventsMaxAge, EventsMaxByte: o.EventsMaxBytes, Replicas: o.StateReplicas,
		Changed: func(stream, what string) {
			d.log.Info("history stream changed to this node's flags (give every node the same)", zap.String("stream", stream), zap.String("changed", what))
		}}
	var h *history.History
	err := d.waitFor(ctx, "JetStream streams "+v1.LogsStream(v1.SystemNamespace)+" and "+v1.EventsStream(v1.SystemNamespace), node.JetStreamPermanent, func(actx context.Context) (err error) {
		h, err = history.Open(actx, d.nc, cfg)
		return err
	})
	if errors.Is(err, node.ErrNoJetStream) {
		d.log.Warn("no log and event history (it needs JetStream): nex workload logs follows live lines only; --no-logs.history says this is meant", zap.Error(err))
		return nil, nil
	}
	return h, err
}

// openSecrets opens the secrets bucket when the node has a secrets key, waiting while
// JetStream is not ready.
func (d *daemon) openSecrets(ctx context.Context) (jetstream.KeyValue, error) {
	if d.o.SecretsKey == "" {
		return nil, nil
	}
	var kv jetstream.KeyValue
	what := fmt.Sprintf("JetStream KV bucket %s (replicas %d)", node.SecretsBucket, max(d.o.StateReplicas, 1))
	err := d.waitFor(ctx, what, node.JetStreamPermanent, func(actx context.Context) (err error) {
		kv, err = secrets.OpenBucket(actx, d.stateConn(), d.o.StateReplicas)
		return err
	})
	return kv, err
}

// adoptedGrace is how long an adopted nexlet that holds its data dir may go without
// answering (its own connection reconnecting after an outage) before it is taken for hung.
const adoptedGrace = 30 * time.Second

// nexletAlive tells whether an instance of nexlet id from before (one that outlived a
// previous nexd) still serves, so the supervisor adopts it rather than start a second one
// (which would fail on its data dir, give up, and take the first one's workloads with it).
// It does when it answers PING, or when it holds its data dir (a live process: dataDir;
// without one, when nexd itself is cut off from NATS) and nexd is cut off from NATS (its
// silence says nothing then) or it has been silent for less than adoptedGrace; past that
// it is taken for hung and killed, so that a new one can start.
func nexletAlive(nc *nats.Conn, nodeID, id, dataDir string, log *zap.Logger) func(context.Context) bool {
	var silentSince time.Time // only the supervisor's goroutine calls it
	return func(ctx context.Context) bool {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := nc.RequestWithContext(pctx, v1.NexletSubject(nodeID, id, v1.NexletPing), nil)
		cancel()
		if err == nil {
			silentSince = time.Time{}
			return true
		}
		if dataDir == "" {
			return !nc.IsConnected()
		}
		pid, held := proc.LockHolder(dataDir)
		if !held {
			return false // gone: its lock went with it
		}
		if !nc.IsConnected() {
			silentSince = time.Time{} // its silence says nothing while nexd hears nothing
			return true
		}
		if silentSince.IsZero() {
			silentSince = time.Now()
		}
		if time.Since(silentSince) < adoptedGrace {
			return true
		}
		log.Warn("the nexlet holds its data dir but has not answered for too long; killing it", zap.String("nexlet_id", id), zap.Int("pid", pid), zap.Duration("silent", time.Since(silentSince)))
		silentSince = time.Time{}
		if pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, held := proc.LockHolder(dataDir); !held {
				break
			}
		}
		return false
	}
}

func findNexletNative(explicit string) (string, error) {
	if explicit != "" {
		st, err := os.Stat(explicit)
		if err != nil {
			return "", fmt.Errorf("--nexlet-native-path: %w", err)
		}
		if !proc.Executable(st) {
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
