// Package creds mints scoped NATS credentials (user JWTs signed by an account key or an
// account signing key) for workloads and nexlets.
package creds

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Minter issues credentials. A nil *Creds from a Minter means development mode: no
// separate credentials, the node's own connection is used.
type Minter interface {
	// Workload returns credentials for one workload of a namespace.
	Workload(ns, workloadID string, ttl time.Duration) (*Creds, error)
	// Nexlet returns credentials for one nexlet of a node.
	Nexlet(nodeID, nexletID string, ttl time.Duration) (*Creds, error)
	// Isolated is false in development mode.
	Isolated() bool
}

// Creds is a user JWT and its seed, as a NATS .creds file holds them.
type Creds struct {
	JWT     string
	Seed    []byte
	Expires time.Time
}

// File renders the creds in the .creds file format. (jwt.FormatUserConfig would decode
// and verify the JWT it was just handed and derive the key again: a third of a start's
// minting cost.)
func (c *Creds) File() ([]byte, error) {
	seed, err := jwt.DecorateSeed(c.Seed)
	if err != nil {
		return nil, err
	}
	return append([]byte("-----BEGIN NATS USER JWT-----\n"+c.JWT+"\n------END NATS USER JWT------\n\n"), seed...), nil
}

// WorkloadInboxPrefix starts every workload's inbox prefix. It is reserved: give CLI
// users prefixes of another shape (_INBOX_<user>, never starting _INBOX_NEXW_), or a user
// and a namespace of the same name would read each other's replies.
const WorkloadInboxPrefix = "_INBOX_NEXW_"

// InboxPrefix is the inbox prefix a workload of namespace ns must use for its requests:
// it may subscribe to replies only there, so one namespace cannot read another's (nor a
// CLI user's: see WorkloadInboxPrefix).
func InboxPrefix(ns string) string { return WorkloadInboxPrefix + ns }

// Neither tenants' users nor workloads may make a direct get ($JS.API.DIRECT.GET): its
// answer is the stored message, headers and all or none (no_hdr), published on the reply
// subject the asker chose. A tenant stored a node's announcement in its bucket and had
// JetStream publish it on the announcement subject (a killed node was kept for alive, its
// workloads never moved; a clone's reseal_for took the tenant's key), or its bytes on
// another namespace's trigger (a review's walk). Bundle buckets do without direct gets
// (AllowDirect off: node.handleBundleBucket), so object store reads use STREAM.MSG.GET,
// whose answer is a JSON envelope.
//
// WorkloadPermissions scope a workload to its namespace: publish and subscribe in
// <ns>.>, requests and their answers through the namespace's workload inbox prefix
// (InboxPrefix), and reads of its namespace's object store (v1.BundleBucket: nats://
// artifacts are fetched with these credentials); nothing under $NEX, no other namespace,
// no other bucket.
//
// No allow_responses: NATS lets a client answer a message it received on the message's
// reply subject, whatever that subject is, past any deny, and the sender chooses it
// unchecked. A tenant sent its own service requests whose reply subjects were other
// namespaces' control subjects, the system namespace's, a nexlet's: the service's answers
// (any body, with a reply subject of the tenant's) were requests there, and the tenant
// listed every namespace's workloads, ran commands in them and had their sealed values
// opened for itself (a review's walk). A workload answers on inboxes alone: the
// namespace's workload inbox prefix, where its namespace asks (the CLI's triggers
// included), and the default _INBOX (an operator's nats req): no endpoint listens there,
// only requesters waiting for an answer under a random name.
func WorkloadPermissions(ns string) jwt.Permissions {
	st := "OBJ_" + v1.BundleBucket(ns)
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{ns + ".>", InboxPrefix(ns) + ".>", "_INBOX.>",
			"$JS.API.INFO", "$JS.API.STREAM.INFO." + st, "$JS.API.CONSUMER.CREATE." + st, "$JS.API.CONSUMER.CREATE." + st + ".>",
			"$JS.API.CONSUMER.DELETE." + st + ".*", "$JS.API.STREAM.MSG.GET." + st, "$JS.FC.>",
		}},
		Sub: jwt.Permission{Allow: jwt.StringList{ns + ".>", InboxPrefix(ns) + ".>"}},
	}
}

// NodeInboxPrefix is the inbox prefix of the connection node nodeID asks its nexlets
// through, and of nothing else: its nexlets may publish there (NexletPermissions), so a
// nexlet's answer reaches the node also when the nexlet reconnected while it worked on the
// request (a reply by allow_responses is bound to the connection the request came in on;
// nexlet-native reconnects whenever nexd renews its credentials). No user's prefix takes
// this shape (UserInboxPrefix is "_INBOX_" + name), and no nexlet may subscribe to it.
func NodeInboxPrefix(nodeID string) string { return v1.NodeInboxPrefix(nodeID) }

// NexletPermissions give a nexlet its node's internal subjects, the feeds it publishes
// (and the history stores' acks), its micro-service discovery, its inbox and answers into
// its node's inbox. It reads no JetStream stream: nats:// artifacts are fetched with the
// workload's own credentials. It cannot speak for another node.
func NexletPermissions(nodeID string) jwt.Permissions {
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{
			v1.NodeWildcard(nodeID), NodeInboxPrefix(nodeID) + ".>",
			v1.LogSubject("*", "*"), v1.EventSubject("*", "*"), v1.LogHistorySubject("*", "*"),
		}},
		Sub:  jwt.Permission{Allow: jwt.StringList{v1.NodeWildcard(nodeID), "$SRV.>", "_INBOX.>"}},
		Resp: &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
	}
}

// signer mints user JWTs with one key.
type signer struct {
	key      nkeys.KeyPair
	account  string // issuer_account when key is a signing key; "" when it is the account key
	isolated bool
	// the key in usable form, derived once: nkeys derives it from the seed at every
	// PublicKey and Sign call, which dominates the cost of minting
	pub  string
	priv ed25519.PrivateKey
}

// cachedKey is key with its public key computed once.
type cachedKey struct {
	nkeys.KeyPair
	pub string
}

func (c cachedKey) PublicKey() (string, error) { return c.pub, nil }

func newSigner(kp nkeys.KeyPair, account string) (*signer, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	raw, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	_, seed, err := nkeys.DecodeSeed(raw)
	if err != nil {
		return nil, err
	}
	return &signer{key: cachedKey{kp, pub}, account: account, isolated: true, pub: pub, priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// NewSigningKeyMinter signs with an account signing key (seed SA...) on behalf of
// rootAccount (A...), the --issuer-signing-key strategy.
func NewSigningKeyMinter(signingKeySeed, rootAccount string) (Minter, error) {
	kp, err := accountKey(signingKeySeed, "--issuer-signing-key")
	if err != nil {
		return nil, err
	}
	if rootAccount == "" {
		return nil, fmt.Errorf("%w: --issuer-signing-key needs --issuer-signing-key-root-account, the public key of the account it signs for (account.pub of nex security init)", ErrConfig)
	}
	if !nkeys.IsValidPublicAccountKey(rootAccount) {
		return nil, fmt.Errorf("%w: --issuer-signing-key-root-account %q is not an account public key (A...)", ErrConfig, rootAccount)
	}
	pub, _ := kp.PublicKey()
	if pub == rootAccount {
		return nil, fmt.Errorf("%w: --issuer-signing-key is the account's own key; use --issuer-nkey/--issuer-nkey-seed for that", ErrConfig)
	}
	return newSigner(kp, rootAccount)
}

// NewAccountKeyMinter signs with the account's own key, the --issuer-nkey strategy; the
// seed must belong to the public key given.
func NewAccountKeyMinter(accountPub, seed string) (Minter, error) {
	kp, err := accountKey(seed, "--issuer-nkey-seed")
	if err != nil {
		return nil, err
	}
	pub, _ := kp.PublicKey()
	if pub != accountPub {
		return nil, fmt.Errorf("%w: --issuer-nkey-seed belongs to %s, not to --issuer-nkey %s", ErrConfig, pub, accountPub)
	}
	return newSigner(kp, "")
}

func accountKey(seed, flag string) (nkeys.KeyPair, error) {
	seed = strings.TrimSpace(seed)
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		// a walk gave a .creds file: "illegal base32 data at input byte 0"
		return nil, fmt.Errorf("%w: %s: want an account seed (SA..., signing.seed of nex security init): %v", ErrConfig, flag, err)
	}
	pub, _ := kp.PublicKey()
	if !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("%w: %s must be an account seed (SA...)", ErrConfig, flag)
	}
	return kp, nil
}

func (s *signer) Isolated() bool { return s.isolated }

func (s *signer) Workload(ns, wid string, ttl time.Duration) (*Creds, error) {
	if err := v1.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	return s.mint("nex workload "+ns+"/"+wid, WorkloadPermissions(ns), ttl, map[string]string{"nex-namespace": ns, "nex-workload": wid})
}

func (s *signer) Nexlet(nodeID, nexletID string, ttl time.Duration) (*Creds, error) {
	if err := v1.ValidateToken("node ID", nodeID); err != nil {
		return nil, err
	}
	return s.mint("nex nexlet "+nexletID+"@"+nodeID, NexletPermissions(nodeID), ttl, nil)
}

func (s *signer) mint(name string, perms jwt.Permissions, ttl time.Duration, tags map[string]string) (*Creds, error) {
	user, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.Permissions = perms
	uc.IssuerAccount = s.account
	now := time.Now()
	var expires time.Time
	if ttl > 0 {
		expires = now.Add(ttl)
		uc.Expires = expires.Unix()
	}
	for k, v := range tags {
		uc.Tags.Add(k + ":" + v)
	}
	token, err := uc.EncodeWithSigner(s.key, func(_ string, data []byte) ([]byte, error) { return ed25519.Sign(s.priv, data), nil })
	if err != nil {
		return nil, fmt.Errorf("sign credentials for %s: %w", name, err)
	}
	return &Creds{JWT: token, Seed: seed, Expires: expires}, nil
}

// Dev is the development mode: no credentials are minted and workloads share the node's
// connection, so nothing is isolated.
type Dev struct{}

// Workload returns nil: use the node's connection.
func (Dev) Workload(string, string, time.Duration) (*Creds, error) { return nil, nil }

// Nexlet returns nil: use the node's connection.
func (Dev) Nexlet(string, string, time.Duration) (*Creds, error) { return nil, nil }

// Isolated is false.
func (Dev) Isolated() bool { return false }

// TenantPermissions are what a CLI user of namespace ns needs for every documented
// command (workload start, list, info, stop, rm, clone, logs, events, trigger, secret,
// bundle) and no more: the namespace's control subjects, its feeds, replies through its
// own inbox prefix (_INBOX_<user>), reads of the namespace's own history streams, and its
// own object store. NATS wildcards are whole tokens; user must not start with NEXW_ (the
// workloads' prefixes).
func TenantPermissions(ns, user string) jwt.Permissions {
	obj := "OBJ_" + v1.BundleBucket(ns)
	pub := jwt.StringList{
		v1.NamespaceWildcard(ns),
		"$JS.API.INFO",
	}
	for _, st := range []string{v1.LogsStream(ns), v1.EventsStream(ns)} {
		pub.Add("$JS.API.STREAM.INFO."+st, "$JS.API.CONSUMER.CREATE."+st+".>", "$JS.API.CONSUMER.MSG.NEXT."+st+".*",
			"$JS.API.CONSUMER.DELETE."+st+".*", "$JS.API.CONSUMER.INFO."+st+".*")
	}
	pub.Add(
		// the namespace's bundle bucket: put, list, get, remove. Never STREAM.CREATE or
		// STREAM.UPDATE: a stream's configuration (subjects, sources, republish) reaches
		// anything in the account; the node makes the bucket (BUNDLE_BUCKET)
		"$JS.API.STREAM.INFO."+obj,
		"$JS.API.STREAM.PURGE."+obj, "$JS.API.STREAM.MSG.GET."+obj,
		// no MSG.NEXT: a pull consumer hands a stored message, its headers and all, to
		// whatever reply subject its asker names, and a stream that hears it there takes
		// its headers as a publisher's: a chunk stored with Nats-Rollup: all, handed to
		// another namespace's bucket (or, in one account, the node's KV state), purged
		// it whole (a review's walk). nats.go's object store reads with push consumers,
		// whose deliveries reach only a subscription to their deliver subject itself.
		"$JS.API.CONSUMER.CREATE."+obj, "$JS.API.CONSUMER.CREATE."+obj+".>",
		"$JS.API.CONSUMER.DELETE."+obj+".*", "$JS.API.CONSUMER.INFO."+obj+".*",
		"$O."+v1.BundleBucket(ns)+".>",
		"$JS.FC.>",
		// function triggers of the namespace (nex workload trigger)
		ns+".>",
	)
	// no allow_responses (see WorkloadPermissions): a tenant's user answers nothing; it
	// reads its namespace's workload inbox, where its functions answer its triggers
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: pub},
		Sub: jwt.Permission{Allow: jwt.StringList{UserInboxPrefix(user) + ".>", v1.FeedWildcard(ns), InboxPrefix(ns) + ".>"}},
	}
}

// UserInboxPrefix is the inbox prefix of CLI user user (nex --nats.inbox-prefix).
func UserInboxPrefix(user string) string { return "_INBOX_" + user }

// ValidateUserName checks a CLI user's name: a namespace-like token that cannot take a
// workload's reply prefix.
func ValidateUserName(user string) error {
	if err := v1.ValidateNamespace(user); err != nil { // its rules, in a user name's words
		if _, rest, ok := strings.Cut(err.Error(), "namespace"); ok {
			return fmt.Errorf("%w: user name%s", v1.ErrInvalidToken, rest)
		}
		return err
	}
	if strings.HasPrefix(UserInboxPrefix(user), WorkloadInboxPrefix) {
		return fmt.Errorf("user name %q: a name starting NEXW_ would take workloads' reply prefixes (%s...)", user, WorkloadInboxPrefix)
	}
	return nil
}

// Tenant mints credentials for a CLI user of namespace ns, valid for ttl (0: no expiry).
func (s *signer) Tenant(ns, user string, ttl time.Duration) (*Creds, error) {
	if err := v1.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if err := ValidateUserName(user); err != nil {
		return nil, err
	}
	return s.mint("nex user "+user+" of "+ns, TenantPermissions(ns, user), ttl, map[string]string{"nex-namespace": ns, "nex-user": user})
}

// MintTenant mints a CLI user's credentials for namespace ns with the account signing
// key seed of account (nex security user).
func MintTenant(signingKeySeed, account, ns, user string, ttl time.Duration) (*Creds, error) {
	m, err := NewSigningKeyMinter(signingKeySeed, account)
	if err != nil {
		return nil, err
	}
	return m.(*signer).Tenant(ns, user, ttl)
}
