package v1

// Who may call what. NATS permissions are the first fence (a CLI user of namespace a
// publishes to $NEX.SVC.v1.a.> only); the node checks the subject's namespace against
// this table as well, before it does anything, so a permission set too wide (or a
// namespace's user asking for a node's administration under its own subject) is refused
// with 403 forbidden.

// Callers name who a verb is for.
const (
	// CallerNamespace is any user of the namespace in the subject, for that namespace's own
	// workloads, bids, groups and secrets ("system" reaches every namespace's workloads).
	CallerNamespace = "namespace"
	// CallerSystem is a user of the namespace "system" only: node administration.
	CallerSystem = "system"
	// CallerNexlet is a nexlet of the node in the subject (its NATS credentials allow
	// $NEX.NODE.v1.<node>.> and nothing of $NEX.SVC).
	CallerNexlet = "nexlet"
	// CallerNode is the node a nexlet registered with.
	CallerNode = "node"
)

// AuthRule is one row of the authorization table.
type AuthRule struct {
	Subject string // the subject, with <ns>, <node_id> ... for its tokens
	Who     string // a Caller*
	Scope   string // what the caller reaches through it
}

// Authorization is the table every endpoint of API v1 is checked against (docs/api-v1.md
// prints it; TestAuthorizationTable walks it with a tenant's credentials).
var Authorization = []AuthRule{
	{"$NEX.SVC.v1.<ns>.control.AUCTION", CallerNamespace, "bids for the namespace; a bid is bound to the namespace that asked"},
	{"$NEX.SVC.v1.<ns>.control.DEPLOY.<bid_id>", CallerNamespace, "a bid the same namespace won; another namespace's bid is not found"},
	{"$NEX.SVC.v1.<ns>.control.RELEASE.<bid_id>", CallerNamespace, "a bid the same namespace won"},
	{"$NEX.SVC.v1.<ns>.control.STOP.<workload_id>", CallerNamespace, "the namespace's workloads (system: every namespace's)"},
	{"$NEX.SVC.v1.<ns>.control.INFO.<workload_id>", CallerNamespace, "the namespace's workloads (system: every namespace's)"},
	{"$NEX.SVC.v1.<ns>.control.CLONE.<workload_id>", CallerNamespace, "the namespace's workloads; reseal_for must be a registered nexlet's key"},
	{"$NEX.SVC.v1.<ns>.control.EXEC.<workload_id>", CallerNamespace, "the namespace's workloads, as the workload's own user (what its own code could run)"},
	{"$NEX.SVC.v1.<ns>.control.LIST", CallerNamespace, "the namespace's workloads (system: every namespace's)"},
	{"$NEX.SVC.v1.<ns>.control.GROUP.<group_id>", CallerNamespace, "the namespace's groups (system: every namespace's)"},
	{"$NEX.SVC.v1.<ns>.control.GROUPS", CallerNamespace, "the namespace's groups (system: every namespace's)"},
	{"$NEX.SVC.v1.<ns>.control.SECRET_PUT.<name>", CallerNamespace, "the namespace's secrets"},
	{"$NEX.SVC.v1.<ns>.control.SECRET_RM.<name>", CallerNamespace, "the namespace's secrets"},
	{"$NEX.SVC.v1.<ns>.control.SECRET_LIST", CallerNamespace, "the namespace's secrets (names only)"},
	{"$NEX.SVC.v1.<ns>.control.SECRET_KEY", CallerNamespace, "the public key secret values are sealed for"},
	{"$NEX.SVC.v1.<ns>.control.BUNDLE_BUCKET", CallerNamespace, "makes the namespace's own bundle bucket, with the node's bounds"},
	{"$NEX.SVC.v1.<ns>.control.USAGE", CallerNamespace, "the namespace's usage and quota (system: every namespace's)"},
	{"$NEX.SVC.v1.system.control.PING", CallerSystem, "every node's summary"},
	{"$NEX.SVC.v1.system.control.INFO.<node_id>", CallerSystem, "a node's info"},
	{"$NEX.SVC.v1.system.control.LAMEDUCK.<node_id>", CallerSystem, "drains and stops a node"},
	{"$NEX.NODE.v1.<node_id>.REGISTER", CallerNexlet, "registers a nexlet of that node"},
	{"$NEX.NODE.v1.<node_id>.HEARTBEAT.<nexlet_id>", CallerNexlet, "that nexlet's heartbeat"},
	{"$NEX.NODE.v1.<node_id>.nexlet.<nexlet_id>.<VERB>", CallerNode, "the nexlet's endpoints: START, STOP, INFO, LIST, CREDS, RESEAL, EXEC ..."},
}

// systemVerbs are the control verbs only namespace system may call (node administration).
var systemVerbs = map[string]bool{VerbLameduck: true, VerbPing: true}

// Authorize refuses a control verb the namespace ns may not call: node administration
// outside "system". Node INFO (INFO.<node_id>) is checked where a node ID is known.
func Authorize(verb, ns string) error {
	if systemVerbs[verb] && ns != SystemNamespace {
		return Errorf(CodeForbidden, "%s is node administration: only namespace %s may call it (not %s)", verb, SystemNamespace, ns)
	}
	return nil
}
