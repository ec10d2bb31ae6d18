package security

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/cli"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
)

// SecurityCmd sets up an operator-mode NATS system for nex and mints its users, so an
// operator needs no other tool (docs/security.md, "Operator mode from scratch").
type SecurityCmd struct {
	Init SecurityInitCmd `cmd:"" help:"Make an operator, a system account, an application account with JetStream, an account for the nodes' state (NEXSTATE), the node's credentials for both, the account signing key nexd mints with, a secrets key, and a nats-server config that trusts them."`
	User SecurityUserCmd `cmd:"" help:"Mint a CLI user of one namespace with exactly the rights every documented command needs."`
}

// SecurityInitCmd writes a new operator-mode setup into a directory.
type SecurityInitCmd struct {
	Dir    string `arg:"" type:"path" help:"Directory to write into (made, 0700; it must not hold a setup already)."`
	Listen string `name:"listen" default:"127.0.0.1:4222" help:"Where the nats-server of the config listens."`
}

// Security setup file names, in the directory of nex security init.
const (
	secServerConf = "server.conf"
	secNodeCreds  = "node.creds"
	secStateCreds = "state.creds"
	secSigning    = "signing.seed"
	secAccountPub = "account.pub"
	secSecrets    = "secrets.seed"
	secOperator   = "operator.seed"
)

// Run writes the setup.
func (c *SecurityInitCmd) Run(g *cli.Globals) error {
	if _, err := os.Stat(filepath.Join(c.Dir, secServerConf)); err == nil {
		return fmt.Errorf("%s holds a setup already (%s): pick another directory", c.Dir, secServerConf)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	sys, _ := nkeys.CreateAccount()
	sysPub, _ := sys.PublicKey()
	sk, _ := nkeys.CreateAccount()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "nex"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		return err
	}
	sysJWT, err := accountJWT(op, sys, nil, "SYS")
	if err != nil {
		return err
	}
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	accJWT, err := accountJWT(op, acc, sk, "NEX")
	if err != nil {
		return err
	}
	// the node's state in an account of its own: JetStream answers a tenant's request on
	// any subject of the tenant's account the tenant names, buckets' subjects included
	state, _ := nkeys.CreateAccount()
	statePub, _ := state.PublicKey()
	stateJWT, err := accountJWT(op, state, nil, "NEXSTATE")
	if err != nil {
		return err
	}
	// the node's own users: the accounts' full rights (it mints everyone else's)
	nodeCreds, err := userCreds("nex node", accPub, sk)
	if err != nil {
		return err
	}
	stateCreds, err := userCreds("nex node state", statePub, state)
	if err != nil {
		return err
	}
	xk, _ := nkeys.CreateCurveKeys()
	xSeed, _ := xk.Seed()
	skSeed, _ := sk.Seed()
	opSeed, _ := op.Seed()
	abs, _ := filepath.Abs(c.Dir)
	conf := fmt.Sprintf(`# nats-server in operator mode for nex (nex security init). Trusts one operator; its
# application account NEX (JetStream on) is where nodes, nexlets, workloads and users live,
# and NEXSTATE (JetStream on) holds the nodes' state, where no tenant is.
listen: %q
jetstream: { store_dir: %q }
# a peer that drops off without closing its connection (power loss, a cut cable) is
# noticed in 4-6 s, not the 2-minute defaults (docs/clusters.md)
ping_interval: "2s"
ping_max: 2
operator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %q
  %s: %q
  %s: %q
}
`, c.Listen, filepath.Join(abs, "jetstream"), opJWT, sysPub, sysPub, sysJWT, accPub, accJWT, statePub, stateJWT)
	files := []struct {
		name string
		data []byte
	}{
		{secServerConf, []byte(conf)}, {secNodeCreds, nodeCreds}, {secStateCreds, stateCreds}, {secSigning, skSeed},
		{secAccountPub, []byte(accPub + "\n")}, {secSecrets, xSeed}, {secOperator, opSeed},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(g.Stdout(), "Wrote an operator-mode setup to %s (every file 0600: keep the seeds to root):\n", c.Dir)
	fmt.Fprintf(g.Stdout(), "  %-14s nats-server config (operator, SYS, NEX and NEXSTATE accounts, JetStream)\n", secServerConf)
	fmt.Fprintf(g.Stdout(), "  %-14s the node's credentials (nexd --nats.creds-file)\n", secNodeCreds)
	fmt.Fprintf(g.Stdout(), "  %-14s the node's credentials for its state (nexd --state.creds-file)\n", secStateCreds)
	fmt.Fprintf(g.Stdout(), "  %-14s the NEX account's signing key (nexd --issuer-signing-key)\n", secSigning)
	fmt.Fprintf(g.Stdout(), "  %-14s the NEX account (nexd --issuer-signing-key-root-account %s)\n", secAccountPub, accPub)
	fmt.Fprintf(g.Stdout(), "  %-14s the secrets key (nexd --secrets-key), the same on every node\n", secSecrets)
	fmt.Fprintf(g.Stdout(), "  %-14s the operator's key: only to sign accounts again; keep it offline\n", secOperator)
	return nil
}

// accountJWT is the JWT of account acc, signed by op: with JetStream (no limits) unless it
// is the system account, and with signing key sk when there is one.
func accountJWT(op, acc, sk nkeys.KeyPair, name string) (string, error) {
	pub, _ := acc.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	if sk != nil {
		skPub, _ := sk.PublicKey()
		ac.SigningKeys.Add(skPub)
	}
	if name != "SYS" {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	return ac.Encode(op)
}

// userCreds is a creds file of a new user of account accPub with the account's full
// rights, signed by signer (the account's key or a signing key of it).
func userCreds(name, accPub string, signer nkeys.KeyPair) ([]byte, error) {
	u, _ := nkeys.CreateUser()
	pub, _ := u.PublicKey()
	seed, _ := u.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	if signerPub, _ := signer.PublicKey(); signerPub != accPub {
		uc.IssuerAccount = accPub
	}
	token, err := uc.Encode(signer)
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(token, seed)
}

// SecurityUserCmd mints a CLI user.
type SecurityUserCmd struct {
	Dir  string        `arg:"" type:"existingdir" help:"The directory of nex security init."`
	Name string        `arg:"" help:"The user's name: its reply prefix is _INBOX_<name>."`
	Out  string        `name:"out" short:"o" type:"path" help:"Where to write the credentials (default <dir>/<name>.creds)."`
	TTL  time.Duration `name:"ttl" default:"0s" help:"How long the credentials are valid (0: until the signing key changes)."`
}

// Run mints.
func (c *SecurityUserCmd) Run(g *cli.Globals) error {
	if err := v1.ValidateNamespace(g.Namespace); err != nil {
		return err
	}
	if c.TTL < 0 {
		return fmt.Errorf("--ttl %s: a negative lifetime; give how long the credentials are valid (e.g. 720h), or 0 for until the signing key changes", c.TTL)
	}
	out := c.Out
	if out == "" {
		out = filepath.Join(c.Dir, c.Name+".creds")
	}
	if other := credsNamespace(out); other != "" && other != g.Namespace {
		return fmt.Errorf("%s holds user %s of namespace %s: a user's replies come through %s, so one name cannot serve two namespaces; pick another name", out, c.Name, other, creds.UserInboxPrefix(c.Name))
	}
	unlock, err := lockUsers(c.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	minted, err := mintedUsers(c.Dir)
	if err != nil {
		return err
	}
	if other, ok := minted[c.Name]; ok && other != g.Namespace {
		return fmt.Errorf("user %s was minted for namespace %s (%s): a user's replies come through %s, so one name cannot serve two namespaces; pick another name", c.Name, other, filepath.Join(c.Dir, secUsers), creds.UserInboxPrefix(c.Name))
	}
	seed, err := os.ReadFile(filepath.Join(c.Dir, secSigning))
	if err != nil {
		return fmt.Errorf("the signing key of %s: %w (made by nex security init)", c.Dir, err)
	}
	acc, err := os.ReadFile(filepath.Join(c.Dir, secAccountPub))
	if err != nil {
		return err
	}
	cr, err := creds.MintTenant(string(seed), strings.TrimSpace(string(acc)), g.Namespace, c.Name, c.TTL)
	if err != nil {
		return err
	}
	file, err := cr.File()
	if err != nil {
		return err
	}
	minted[c.Name] = g.Namespace
	if err := writeMinted(c.Dir, minted); err != nil {
		return err
	}
	if err := os.WriteFile(out, file, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(g.Stdout(), "Wrote %s: user %s of namespace %s. Use it as\n  nex --nats.creds-file %s --nats.inbox-prefix %s --namespace %s ...\n",
		out, c.Name, g.Namespace, out, creds.UserInboxPrefix(c.Name), g.Namespace)
	return nil
}

// secUsers, in the directory of nex security init, names the namespace of every user
// minted from it: a name is one namespace's wherever its credentials were written (a
// newcomer's walk minted bob of namespace a with -o elsewhere, past the check of
// <dir>/bob.creds, and read the replies to b's bob).
const secUsers = "users.json"

// lockUsers holds users.json of dir for one mint, from its reading to its writing: two
// mints at once each wrote what they had read with their own user added, and one user
// was forgotten (a review), its name free again for another namespace.
func lockUsers(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, secUsers+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// mintedUsers is the namespace of each user minted from dir: users.json, and the tenant
// credentials in dir itself (users minted before users.json was kept).
func mintedUsers(dir string) (map[string]string, error) {
	minted := map[string]string{}
	b, err := os.ReadFile(filepath.Join(dir, secUsers))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &minted); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, secUsers), err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.creds"))
	for _, f := range files {
		if name, ns := credsUser(f); name != "" && ns != "" && minted[name] == "" {
			minted[name] = ns
		}
	}
	return minted, nil
}

func writeMinted(dir string, minted map[string]string) error {
	b, err := json.MarshalIndent(minted, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, secUsers)
	if err := os.WriteFile(path+".new", append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(path+".new", path)
}

// credsNamespace is the namespace of the tenant credentials in file path ("" when there
// are none, or they are not a tenant's): the one whose control subjects they may publish.
func credsNamespace(path string) string {
	_, ns := credsUser(path)
	return ns
}

// credsUser is the user name (its reply prefix's: the one given to nex security user) and
// namespace of the tenant credentials in file path (ns "" when there are none).
func credsUser(path string) (name, ns string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", ""
	}
	token, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return "", ""
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return "", ""
	}
	for _, s := range uc.Permissions.Sub.Allow {
		if n, ok := strings.CutPrefix(s, creds.UserInboxPrefix("")); ok && strings.HasSuffix(n, ".>") && !strings.HasPrefix(n, "NEXW_") {
			name = strings.TrimSuffix(n, ".>")
		}
	}
	for _, s := range uc.Permissions.Pub.Allow {
		if ns, ok := v1.NamespaceOfWildcard(s); ok {
			return name, ns
		}
	}
	return "", ""
}
