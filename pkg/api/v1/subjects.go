package v1

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Subject prefixes.
const (
	svcPrefix  = "$NEX.SVC.v1."
	nodePrefix = "$NEX.NODE.v1."
	feedPrefix = "$NEX.FEED."
	histPrefix = "$NEX.HIST."
)

// Control verbs served by nexd on $NEX.SVC.v1.<ns>.control.<VERB>.
const (
	VerbAuction  = "AUCTION"
	VerbDeploy   = "DEPLOY"
	VerbStop     = "STOP"
	VerbInfo     = "INFO"
	VerbClone    = "CLONE"
	VerbList     = "LIST"
	VerbPing     = "PING"
	VerbLameduck = "LAMEDUCK"
	// VerbRelease gives back a bid that will not be used (RELEASE.<bid_id>): its node
	// frees the room the bid held without waiting for it to expire.
	VerbRelease  = "RELEASE"
	VerbGroup    = "GROUP"    // a replica group (GROUP.<group_id>); the cluster's coordinator answers
	VerbGroups   = "GROUPS"   // the namespace's replica groups, without their copies (system: every namespace's); the coordinator answers
	VerbTakeover = "TAKEOVER" // a node's DEPLOY of a workload it moves: system namespace only (TAKEOVER.<bid_id>)
	// Secret store verbs: one node answers (they share the KV bucket).
	VerbSecretPut  = "SECRET_PUT"
	VerbSecretRm   = "SECRET_RM"
	VerbSecretList = "SECRET_LIST"
	// VerbSecretKey answers the secrets key values are sealed for, under the namespace's
	// own subject (it needed node administration's PING before).
	VerbSecretKey = "SECRET_KEY"
	// VerbUsage is answered by every node: what the namespace's workloads on it hold, and
	// the quota the node holds the namespace to.
	VerbUsage = "USAGE"
	// VerbBundleBucket makes the namespace's bundle bucket (BundleBucket) with the
	// node's bounds; one node answers. Tenants may write to the bucket, never configure
	// a stream: a stream's configuration (subjects, sources, republish) reaches anything.
	VerbBundleBucket = "BUNDLE_BUCKET"
	// VerbExec runs a command beside a running workload (EXEC.<wid>); its owner answers.
	VerbExec = "EXEC"
)

// Nexlet verbs served on $NEX.NODE.v1.<node>.nexlet.<nexlet>.<VERB>[.<wid>].
const (
	NexletStart    = "START"
	NexletStop     = "STOP"
	NexletGet      = "GET"
	NexletList     = "LIST"
	NexletLameduck = "LAMEDUCK"
	NexletPing     = "PING"
	NexletCreds    = "CREDS"
	NexletReseal   = "RESEAL"
	// NexletExec runs a command beside a workload (EXEC.<wid>); a nexlet that cannot
	// answers 501 not_implemented.
	NexletExec = "EXEC"
	// NexletPrune removes what the nexlet keeps of workloads the node no longer records
	// (PruneRequest); a nexlet that keeps nothing answers 501 not_implemented.
	NexletPrune = "PRUNE"
)

// ValidateToken checks that s can stand as one subject token: not empty, and free of
// '.', '*', '>' and whitespace. what names the value in the error ("namespace", "tag key").
func ValidateToken(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidToken, what)
	}
	if len(s) > MaxTokenBytes {
		return fmt.Errorf("%w: %s is %d bytes long; the limit is %d", ErrInvalidToken, what, len(s), MaxTokenBytes)
	}
	for _, r := range s {
		switch {
		case r == '.' || r == '*' || r == '>':
			return fmt.Errorf("%w: %s %q contains %q", ErrInvalidToken, what, s, r)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Errorf("%w: %s %q contains whitespace or a control character", ErrInvalidToken, what, s)
		case r == utf8.RuneError:
			return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalidToken, what, s)
		}
	}
	return nil
}

// ValidateNamespace checks a namespace: a token that does not start with '$' or '_'.
// Those prefixes are NATS's own ($JS, $KV, $SYS, _INBOX ...): a namespace named so would
// hand its workloads rights on them (<ns>.>).
func ValidateNamespace(ns string) error {
	if err := ValidateToken("namespace", ns); err != nil {
		return err
	}
	if len(ns) > MaxNamespaceBytes {
		return fmt.Errorf("%w: namespace %q is %d characters, at most %d: it is written many times into its users' and workloads' credentials, which must fit a NATS connect line", ErrInvalidToken, ns, len(ns), MaxNamespaceBytes)
	}
	if ns[0] == '$' || ns[0] == '_' {
		return fmt.Errorf("%w: namespace %q starts with %q, which NATS keeps for itself ($JS, $KV, _INBOX ...); pick a name that starts with a letter or digit", ErrInvalidToken, ns, ns[:1])
	}
	for _, c := range ns {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			// a namespace names streams, buckets and keys too (NEX_BUNDLES_<ns>, the KV
			// key <ns>.<name>), which take these characters only
			return fmt.Errorf("%w: namespace %q has %q: a namespace is letters, digits, '_' and '-' only", ErrInvalidToken, ns, c)
		}
	}
	return nil
}

// MaxNamespaceBytes bounds a namespace.
const MaxNamespaceBytes = 32

// MaxTokenBytes bounds a name, tag or ID.
const MaxTokenBytes = 256

// ValidateTags checks tags. Keys may be dotted ("nex.os") but are otherwise tokens;
// values are tokens.
func ValidateTags(tags map[string]string) error {
	for k, v := range tags {
		if err := validateDotted("tag key", k); err != nil {
			return err
		}
		if err := ValidateToken(fmt.Sprintf("tag %s value", k), v); err != nil {
			return err
		}
	}
	return nil
}

// ControlSubject is $NEX.SVC.v1.<ns>.control.<verb>[.<id>].
func ControlSubject(ns, verb string, id ...string) string {
	s := svcPrefix + ns + ".control." + verb
	for _, t := range id {
		s += "." + t
	}
	return s
}

// NamespaceWildcard matches every control subject of namespace ns ($NEX.SVC.v1.<ns>.>):
// what a tenant's credentials may publish to.
func NamespaceWildcard(ns string) string { return svcPrefix + ns + ".>" }

// NamespaceOfWildcard is the namespace a NamespaceWildcard names, if s is one.
func NamespaceOfWildcard(s string) (ns string, ok bool) {
	ns, ok = strings.CutPrefix(s, svcPrefix)
	if !ok || !strings.HasSuffix(ns, ".>") {
		return "", false
	}
	return strings.TrimSuffix(ns, ".>"), true
}

// NodeWildcard matches every subject of node nodeID ($NEX.NODE.v1.<node>.>): its nexlets'
// endpoints, registrations, heartbeats and announcements.
func NodeWildcard(nodeID string) string { return nodePrefix + nodeID + ".>" }

// FeedWildcard matches every feed of namespace ns ($NEX.FEED.<ns>.>): its logs and events.
func FeedWildcard(ns string) string { return feedPrefix + ns + ".>" }

// NodeInboxPrefix is the inbox prefix of a node's connection to its nexlets
// (_NEXNODE_<node>): its nexlets may publish their answers under it.
func NodeInboxPrefix(nodeID string) string { return "_NEXNODE_" + nodeID }

// ControlWildcard is the subject a node subscribes to for verb in every namespace.
func ControlWildcard(verb string, withID bool) string {
	s := svcPrefix + "*.control." + verb
	if withID {
		s += ".*"
	}
	return s
}

// ParseControlSubject returns the namespace and trailing ID (if any) of a control subject.
func ParseControlSubject(subject string) (ns, id string, err error) {
	if !strings.HasPrefix(subject, svcPrefix) {
		return "", "", fmt.Errorf("%w: %q is not a control subject", ErrInvalidToken, subject)
	}
	parts := strings.Split(strings.TrimPrefix(subject, svcPrefix), ".")
	if len(parts) < 3 || parts[1] != "control" {
		return "", "", fmt.Errorf("%w: %q is not a control subject", ErrInvalidToken, subject)
	}
	ns = parts[0]
	if len(parts) > 3 {
		id = parts[3]
	}
	return ns, id, nil
}

// SystemSubject is $NEX.SVC.v1.system.control.<verb>[.<node_id>].
func SystemSubject(verb string, nodeID ...string) string {
	return ControlSubject(SystemNamespace, verb, nodeID...)
}

// RegisterSubject is where nexlets register with node nodeID.
func RegisterSubject(nodeID string) string { return nodePrefix + nodeID + ".REGISTER" }

// HeartbeatSubject is where nexlet nexletID sends heartbeats to node nodeID.
func HeartbeatSubject(nodeID, nexletID string) string {
	return nodePrefix + nodeID + ".HEARTBEAT." + nexletID
}

// AnnounceSubject is where node nodeID announces that it is alive.
func AnnounceSubject(nodeID string) string { return nodePrefix + nodeID + ".ANNOUNCE" }

// AnnounceWildcard matches every node's announcements.
const AnnounceWildcard = nodePrefix + "*.ANNOUNCE"

// NexletSubject is $NEX.NODE.v1.<node>.nexlet.<nexlet>.<verb>[.<wid>].
func NexletSubject(nodeID, nexletID, verb string, wid ...string) string {
	s := nodePrefix + nodeID + ".nexlet." + nexletID + "." + verb
	for _, t := range wid {
		s += "." + t
	}
	return s
}

// NexletPrefix is the subject prefix of every endpoint of one nexlet.
func NexletPrefix(nodeID, nexletID string) string {
	return nodePrefix + nodeID + ".nexlet." + nexletID
}

// LogSubject is $NEX.FEED.<ns>.logs.<wid>.
func LogSubject(ns, wid string) string { return feedPrefix + ns + ".logs." + wid }

// LogHistorySubject is $NEX.HIST.<ns>.logs.<wid>: the same lines as LogSubject, many per
// message (one per line, '\n' after each), kept by the NEX_LOGS stream. Storing a batch
// costs JetStream what storing one line would; live readers use LogSubject.
func LogHistorySubject(ns, wid string) string { return histPrefix + ns + ".logs." + wid }

// EventSubject is $NEX.FEED.<ns>.event.<wid>.
func EventSubject(ns, wid string) string { return feedPrefix + ns + ".event." + wid }

// NodeEventSubject is $NEX.FEED.system.event.<node_id>.
func NodeEventSubject(nodeID string) string { return EventSubject(SystemNamespace, nodeID) }

func validateDotted(what, s string) error {
	for _, part := range strings.Split(s, ".") {
		if err := ValidateToken(what, part); err != nil {
			return fmt.Errorf("%w: %s %q is not a dotted name", ErrInvalidToken, what, s)
		}
	}
	return nil
}

// ValidateTriggerSubject checks a subject a function may be triggered by: well-formed
// tokens, wildcards only as whole tokens ('>' last), and nothing in nex's own or the
// system's subject space.
func ValidateTriggerSubject(s string) error {
	for _, reserved := range []string{"$NEX.", "$SYS.", "$JS.", "$KV.", "$O.", "$SRV.", "_INBOX."} {
		if strings.HasPrefix(s, reserved) {
			return fmt.Errorf("%w: trigger %q is in the reserved %s space", ErrInvalidToken, s, strings.TrimSuffix(reserved, "."))
		}
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "*":
		case t == ">" && i == len(tokens)-1:
		default:
			if err := ValidateToken("trigger token", t); err != nil {
				return fmt.Errorf("%w: trigger %q is not a valid subject", ErrInvalidToken, s)
			}
		}
	}
	return nil
}

// BundleBucket is namespace ns's own object store: nex workload bundle stores there by
// default, and a workload of ns, with scoped credentials, may read nats:// artifacts from
// it and from no other bucket (the node grants its credentials that bucket alone).
func BundleBucket(ns string) string { return "NEX_BUNDLES_" + ns }

// LogsStream is the JetStream stream that keeps namespace ns's output history (the
// batches on LogHistorySubject(ns, "*")). Each namespace has its own, with its own byte
// bound, so one tenant's flood never evicts another's history.
func LogsStream(ns string) string { return "NEX_LOGS_" + ns }

// EventsStream is the stream that keeps namespace ns's events (EventSubject(ns, "*")).
func EventsStream(ns string) string { return "NEX_EVENTS_" + ns }
