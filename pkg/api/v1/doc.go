// Package v1 holds the wire types, subject builders and error codes of nex API v1.
// It imports no NATS package so that any client, in any process, can share it.
package v1

// APIVersion is the API version carried in subjects and micro-service metadata.
const APIVersion = "v1"

// Header names used on feed messages.
const (
	// HeaderStream names the output stream of a log line: "stdout" or "stderr".
	HeaderStream = "Nex-Stream"
	// HeaderContinued ("true") marks a piece of an over-long line continued next message.
	HeaderContinued = "Nex-Continued"
	// HeaderContinuedLines lists, comma separated, a history batch's such pieces (0: its first line).
	HeaderContinuedLines = "Nex-Continued-Lines"
	// HeaderLines, on a live log message, says it holds that many whole lines, each ending
	// '\n' (a burst in one message); a live message without it is one line, without '\n'.
	HeaderLines = "Nex-Lines"
	// HeaderEnd ("true") marks the message ending a run's output (live and history): a LogEnd.
	HeaderEnd = "Nex-End"
)

// Lifecycles a workload can have.
const (
	LifecycleService  = "service"
	LifecycleJob      = "job"
	LifecycleFunction = "function"
)

// ValidLifecycle reports whether l is one of the known lifecycles.
func ValidLifecycle(l string) bool {
	return l == LifecycleService || l == LifecycleJob || l == LifecycleFunction
}

// Workload states as reported by nexlets.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
	StateStopped  = "stopped"
	StateBackoff  = "backoff"
	StateFailed   = "failed"
	// StateUnknown: the nexlet did not answer; the node tells what its record knows.
	StateUnknown = "unknown"
)

// WorkloadStates are the states above, in a workload's order of life.
var WorkloadStates = []string{StateStarting, StateRunning, StateBackoff, StateStopping, StateStopped, StateFailed, StateUnknown}

// SystemNamespace is the administrative namespace; listing in it covers every namespace.
const SystemNamespace = "system"
