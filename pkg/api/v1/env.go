package v1

// The environment of the processes nex starts: nexd gives a nexlet it supervises the
// first three; a nexlet gives each workload the rest (NATS_URL and the credentials only
// when it has them). A third-party nexlet reads its own from here and gives its
// workloads the same names; nothing else in nex spells them.
const (
	// EnvNATSURL is the NATS server a nexlet or a workload connects to.
	EnvNATSURL = "NATS_URL"
	// EnvNodeID is the node a nexlet serves, or whose nexlet runs a workload.
	EnvNodeID = "NEX_NODE_ID"
	// EnvNexletID is the nexlet's ID (a workload's: the nexlet that runs it).
	EnvNexletID = "NEX_NEXLET_ID"

	// EnvWorkloadID, EnvWorkloadName and EnvNamespace say which workload a process is.
	EnvWorkloadID   = "NEX_WORKLOAD_ID"
	EnvWorkloadName = "NEX_WORKLOAD_NAME"
	EnvNamespace    = "NEX_NAMESPACE"
	// EnvNATSCreds is the file of the workload's own NATS credentials, renewed in place.
	EnvNATSCreds = "NEX_NATS_CREDS"
	// EnvInboxPrefix is where replies to the workload's requests come (not _INBOX.>).
	EnvInboxPrefix = "NEX_NATS_INBOX_PREFIX"
	// EnvTriggerSubject is the subject a function was triggered on, for that run.
	EnvTriggerSubject = "NEX_TRIGGER_SUBJECT"
)
