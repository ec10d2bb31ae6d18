// Package natsconn turns the NATS connection flags, NATS CLI contexts and the embedded
// server option into a *nats.Conn.
package natsconn

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Options are the NATS connection flags shared by nex, nexd and nexlet-native.
type Options struct {
	Servers   []string `name:"servers" short:"s" help:"NATS server URLs (comma separated)." env:"NATS_URL" json:"servers,omitempty"`
	Context   string   `name:"context" help:"NATS CLI context to connect with." env:"NATS_CONTEXT" json:"context,omitempty"`
	CredsFile string   `name:"creds-file" help:"User credentials file (JWT + seed)." type:"path" json:"creds_file,omitempty"`
	NKey      string   `name:"nkey" help:"File holding an nkey user seed." type:"path" json:"nkey,omitempty"`
	User      string   `name:"user" help:"User name." json:"user,omitempty"`
	Password  string   `name:"password" help:"Password." env:"NATS_PASSWORD" json:"password,omitempty"`
	Token     string   `name:"token" help:"Authentication token." env:"NATS_TOKEN" json:"token,omitempty"`
	TLSCert   string   `name:"tls-cert" help:"Client TLS certificate." type:"path" json:"tls_cert,omitempty"`
	TLSKey    string   `name:"tls-key" help:"Client TLS private key." type:"path" json:"tls_key,omitempty"`
	TLSCA     string   `name:"tls-ca" help:"CA certificate to verify the server." type:"path" json:"tls_ca,omitempty"`
	TLSFirst  bool     `name:"tls-first" help:"Do the TLS handshake before the NATS INFO." json:"tls_first,omitempty"`
	ConnName  string   `name:"conn-name" help:"Connection name shown by the server." json:"conn_name,omitempty"`
	// InboxPrefix replaces _INBOX for replies: with a per-user prefix (and permission to
	// subscribe to it alone), no other user can read this user's replies.
	InboxPrefix string        `name:"inbox-prefix" help:"Prefix of this connection's reply subjects instead of _INBOX (a per-user prefix keeps replies private; a NATS context's inbox_prefix is used when set)." json:"inbox_prefix,omitempty"`
	Timeout     time.Duration `name:"timeout" help:"Connect timeout." default:"5s" json:"timeout,omitempty"`
}

// cliContext is the subset of a NATS CLI context file nex understands.
type cliContext struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	Token    string `json:"token"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
	TLSFirst bool   `json:"tls_first"`
	InboxPfx string `json:"inbox_prefix"`
}

// contextDir is where the NATS CLI keeps contexts ($XDG_CONFIG_HOME/nats or ~/.config/nats).
func contextDir() string {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "nats")
}

// SelectedContext returns the context the NATS CLI has selected with `nats context use`, or "".
func SelectedContext() string {
	b, err := os.ReadFile(filepath.Join(contextDir(), "context.txt"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func loadContext(name string) (*cliContext, error) {
	if err := validContextName(name); err != nil {
		return nil, err
	}
	path := filepath.Join(contextDir(), "context", name+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %q (looked for %s; create it with `nats context add %s --server URL`)", ErrContextNotFound, name, path, name)
		}
		return nil, fmt.Errorf("read NATS context %s: %w", path, err)
	}
	var c cliContext
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse NATS context %s: %w", path, err)
	}
	return &c, nil
}

func validContextName(name string) error {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return fmt.Errorf("%w: invalid context name %q", ErrContextNotFound, name)
	}
	return nil
}

// Resolve merges the named (or selected) NATS CLI context under the explicit flags:
// a flag given on the command line always wins over the context.
func (o Options) Resolve() (Options, error) {
	name := o.Context
	if name == "" && len(o.Servers) == 0 {
		name = SelectedContext()
	}
	if name == "" {
		return o, nil
	}
	c, err := loadContext(name)
	if err != nil {
		return o, err
	}
	r := o
	r.Context = name
	if len(r.Servers) == 0 && c.URL != "" {
		r.Servers = []string{c.URL}
	}
	setIfEmpty(&r.User, c.User)
	setIfEmpty(&r.Password, c.Password)
	setIfEmpty(&r.Token, c.Token)
	setIfEmpty(&r.CredsFile, expandHome(c.Creds))
	setIfEmpty(&r.NKey, expandHome(c.NKey))
	setIfEmpty(&r.TLSCert, expandHome(c.Cert))
	setIfEmpty(&r.TLSKey, expandHome(c.Key))
	setIfEmpty(&r.TLSCA, expandHome(c.CA))
	setIfEmpty(&r.InboxPrefix, c.InboxPfx)
	r.TLSFirst = r.TLSFirst || c.TLSFirst
	return r, nil
}

func setIfEmpty(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func expandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	return p
}

// URL is the comma-joined server list, defaulting to nats://127.0.0.1:4222.
func (o Options) URL() string {
	if len(o.Servers) == 0 {
		return nats.DefaultURL
	}
	return strings.Join(o.Servers, ",")
}

// Connect resolves the context and dials NATS, with the caller's extra options. The
// connection reconnects forever, since a node must outlive the loss of a server, and
// prints no asynchronous error (nats.go's default handler writes them to stderr): nex
// reports them by the request they concern, with Watch.
func (o Options) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	r, err := o.Resolve()
	if err != nil {
		return nil, err
	}
	opts, err := r.natsOptions(name)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(r.URL(), append(opts, extra...)...)
	if errors.Is(err, nats.ErrAuthorization) && r.CredsFile == "" && r.NKey == "" && r.User == "" && r.Token == "" && r.TLSCert == "" && !strings.Contains(r.URL(), "@") {
		return nil, fmt.Errorf("connect to NATS at %s: %w: the server wants credentials and none were given (--nats.creds-file, or a NATS context with them)", r.URL(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", r.URL(), err)
	}
	return nc, nil
}

// checkCredsFile says what is wrong with a credentials file before the server does: an
// empty or unreadable one was refused as "Authorization Violation".
func checkCredsFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil || strings.Count(tok, ".") != 2 {
		return fmt.Errorf("credentials file %s holds no NATS user JWT (a .creds file as nsc or nex security init writes it: a JWT, then its user's seed)", path)
	}
	kp, err := jwt.ParseDecoratedNKey(b)
	if err != nil {
		return fmt.Errorf("credentials file %s holds no user seed after its JWT: %v", path, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return nil // not ours to judge: the server says what it makes of it
	}
	if pub, _ := kp.PublicKey(); pub != uc.Subject {
		return fmt.Errorf("credentials file %s: its seed is user %s's, its JWT user %s's: they are not one user's", path, pub, uc.Subject)
	}
	if uc.Expires > 0 && time.Unix(uc.Expires, 0).Before(time.Now()) {
		return fmt.Errorf("credentials file %s: its JWT (user %s) expired at %s: mint it again (nex security user)", path, uc.Name, time.Unix(uc.Expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

func (o Options) natsOptions(name string) ([]nats.Option, error) {
	if o.ConnName != "" {
		name = o.ConnName
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	}
	if o.CredsFile != "" {
		if err := checkCredsFile(o.CredsFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.InboxPrefix != "" {
		// nex's endpoints answer inboxes alone (internal/svc's InboxReply): a reply subject
		// of another shape could name any subject for a node to publish to
		if !strings.HasPrefix(o.InboxPrefix, "_INBOX") && !strings.HasPrefix(o.InboxPrefix, v1.NodeInboxPrefix("")) {
			return nil, fmt.Errorf("inbox prefix %q (--nats.inbox-prefix, or a NATS context's inbox_prefix): nex answers only reply subjects that start with _INBOX; use one such as _INBOX_<user>", o.InboxPrefix)
		}
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.NKey != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKey)
		if err != nil {
			return nil, fmt.Errorf("load nkey seed %s: %w", o.NKey, err)
		}
		opts = append(opts, opt)
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, ErrTLSIncomplete
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSFirst {
		opts = append(opts, nats.TLSHandshakeFirst())
	}
	return opts, nil
}

// Env carries the secrets of the options as environment variables for a child process,
// so they do not show in its command line.
func (o Options) Env() []string {
	var e []string
	if o.Password != "" {
		e = append(e, "NATS_PASSWORD="+o.Password)
	}
	if o.Token != "" {
		e = append(e, "NATS_TOKEN="+o.Token)
	}
	return e
}

// Args renders the options as command-line flags, to hand a connection to a child
// process; secrets travel in Env instead.
func (o Options) Args() []string {
	var a []string
	add := func(flag, v string) {
		if v != "" {
			a = append(a, "--nats."+flag+"="+v)
		}
	}
	if len(o.Servers) > 0 {
		add("servers", strings.Join(o.Servers, ","))
	}
	add("creds-file", o.CredsFile)
	add("nkey", o.NKey)
	add("user", o.User)
	add("tls-cert", o.TLSCert)
	add("tls-key", o.TLSKey)
	add("tls-ca", o.TLSCA)
	add("inbox-prefix", o.InboxPrefix)
	if o.TLSFirst {
		a = append(a, "--nats.tls-first")
	}
	return a
}
