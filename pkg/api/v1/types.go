package v1

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Reply headers set on every fan-out reply so a client knows who answered and which
// nodes the answering node believes alive; the client stops waiting once all have answered.
const (
	HeaderNodeID = "Nex-Node-Id"
	HeaderPeers  = "Nex-Peers"
	// HeaderAck, on a request about one workload, asks its owner to acknowledge at once;
	// on the acknowledgement (a message with no body), it is the owner's deadline
	// (RFC 3339) for the answer that follows.
	HeaderAck = "Nex-Ack"
	// HeaderExitCode is the exit code of a function's run, on its reply.
	HeaderExitCode = "Nex-Exit-Code"
	// HeaderError is why a function's reply is incomplete or missing, on its reply.
	HeaderError = "Nex-Error"
	// HeaderEncoding "gzip": the reply's body is gzipped (replies over 64 KiB, such as a
	// list of thousands of workloads, which would not fit a NATS message as JSON).
	HeaderEncoding = "Nex-Encoding"
)

// WorkloadDefinition is what a user asks to run: metadata plus the nexlet-specific start request.
type WorkloadDefinition struct {
	Namespace    string            `json:"namespace"`
	Name         string            `json:"name"`
	Description  string            `json:"description,omitempty"`
	Type         string            `json:"type"`
	Lifecycle    string            `json:"lifecycle"`
	Tags         map[string]string `json:"tags,omitempty"`
	StartRequest json.RawMessage   `json:"start_request"`
	// Group is the replica group the workload is a copy of ("" for none): the ID the user
	// started, scales and stops the copies by.
	Group string `json:"group,omitempty"`
	// GroupVersion is the version of the group's definition this copy runs (1 at start,
	// one more with each update).
	GroupVersion int `json:"group_version,omitempty"`
	// Disconnect is what a node cut off from NATS does with the workload: "" keeps it
	// running (the cluster may start it elsewhere too, until the node is back), or
	// DisconnectStop stops it before the cluster moves it (at most one copy at a time).
	Disconnect string `json:"disconnect,omitempty"`
	// Resources, ExposePorts and GracePeriod are what the node reads of a workload to
	// place it and to stop it: the room it needs and the limits its nexlet enforces, the
	// ports it listens on, and how long a stop waits before it kills. They may be given
	// here or, as before, as the start request's "resources", "expose_ports" and
	// "grace_period" (Normalize copies those here): a third-party nexlet keeps nex's
	// placement and stops without knowing native's field names, and reads them here
	// (native reads them here when its start request has none). See fields.go.
	Resources   *Resources `json:"resources,omitempty"`
	ExposePorts []int      `json:"expose_ports,omitempty"`
	GracePeriod Duration   `json:"grace_period,omitempty"`
}

// DisconnectStop is the Disconnect setting that stops a cut-off node's copy.
const DisconnectStop = "stop"

// Validate checks every field that ends up in a subject or selects a nexlet, and
// normalizes the fields the node reads (Normalize).
func (d *WorkloadDefinition) Validate() error {
	if err := ValidateNamespace(d.Namespace); err != nil {
		return err
	}
	if err := ValidateToken("name", d.Name); err != nil {
		return err
	}
	if err := ValidateToken("type", d.Type); err != nil {
		return err
	}
	if !ValidLifecycle(d.Lifecycle) {
		return BadRequest("lifecycle %q is not one of service, job, function", d.Lifecycle)
	}
	if err := ValidateTags(d.Tags); err != nil {
		return err
	}
	if len(d.StartRequest) == 0 {
		return Errorf(CodeSchemaInvalid, "start_request is missing")
	}
	if len(d.StartRequest) > MaxStartRequestBytes {
		return Errorf(CodeTooLarge, "start_request is %d bytes; the limit is %d", len(d.StartRequest), MaxStartRequestBytes)
	}
	if len(d.Description) > MaxDescriptionBytes {
		return Errorf(CodeTooLarge, "description is %d bytes; the limit is %d", len(d.Description), MaxDescriptionBytes)
	}
	if i := strings.IndexFunc(d.Description, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }); i >= 0 {
		return BadRequest("description has a control character (%q, at byte %d): it is shown in operators' terminals, where such characters act; newlines and tabs only", d.Description[i:i+1], i)
	}
	if len(d.Tags) > MaxTags {
		return Errorf(CodeTooLarge, "%d tags; the limit is %d", len(d.Tags), MaxTags)
	}
	if d.Disconnect != "" && d.Disconnect != DisconnectStop {
		return BadRequest("disconnect %q: the one value is %q (or none: keep running)", d.Disconnect, DisconnectStop)
	}
	return d.Normalize()
}

// Size limits of a workload definition, checked by the CLI and again by the node.
const (
	MaxStartRequestBytes = 256 << 10
	// MaxReplicas bounds a replica group's count and max_per_node: a tenant scaled a
	// group to 2^63-1 and its node started workloads until it stalled.
	MaxReplicas         = 1000
	MaxDescriptionBytes = 4 << 10
	MaxTags             = 64
)

// AuctionRequest asks every node whether it can run a workload.
type AuctionRequest struct {
	Type      string            `json:"type"`
	Lifecycle string            `json:"lifecycle"`
	Tags      map[string]string `json:"tags,omitempty"`
	// Ports the workload will listen on; a node where one is taken declines.
	Ports []int `json:"ports,omitempty"`
	// RequestID, when set, makes the start idempotent: a node that already runs the
	// namespace's workload started with this key answers with it (Existing).
	RequestID string `json:"request_id,omitempty"`
	// Resources the workload asks for (its start request's "resources"): a node that
	// cannot enforce them, or has no room for them, declines.
	Resources *Resources `json:"resources,omitempty"`
}

// MaxRequestIDBytes bounds a start's request ID.
const MaxRequestIDBytes = 256

// ExposedPorts reads the conventional "expose_ports" field of a start request, if any.
func ExposedPorts(startRequest json.RawMessage) []int {
	var sr struct {
		ExposePorts []int `json:"expose_ports"`
	}
	if json.Unmarshal(startRequest, &sr) != nil {
		return nil
	}
	return sr.ExposePorts
}

// Validate checks the auction's tokens.
func (r *AuctionRequest) Validate() error {
	if err := ValidateToken("type", r.Type); err != nil {
		return err
	}
	if !ValidLifecycle(r.Lifecycle) {
		return BadRequest("lifecycle %q is not one of service, job, function", r.Lifecycle)
	}
	if len(r.Ports) > MaxExposePorts { // each is bound by every node that answers
		return BadRequest("ports: %d, at most %d", len(r.Ports), MaxExposePorts)
	}
	if i := slices.IndexFunc(r.Ports, notAPort); i >= 0 {
		return BadRequest("port %d is out of range 1-65535", r.Ports[i])
	}
	return cmp.Or(ValidateRequestID(r.RequestID), r.Resources.Validate("resources"), ValidateTags(r.Tags))
}

// ValidateRequestID checks a start's request ID: empty (none), or at most
// MaxRequestIDBytes of printable characters.
func ValidateRequestID(id string) error {
	if len(id) > MaxRequestIDBytes {
		return BadRequest("request ID is %d bytes long; the limit is %d", len(id), MaxRequestIDBytes)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return BadRequest("request ID %q contains a control character", id)
		}
	}
	return nil
}

// AuctionReply is one node's answer: a bid, or a decline with its reason.
type AuctionReply struct {
	NodeID   string `json:"node_id"`
	NodeName string `json:"node_name,omitempty"`
	Bid      *Bid   `json:"bid,omitempty"`
	Decline  string `json:"decline,omitempty"`
	Soon     bool   `json:"soon,omitempty"` // the decline may pass in a moment (a nexlet still registering): ask again
	// Existing is the workload this node already runs for the auction's request ID.
	Existing *WorkloadInfo `json:"existing,omitempty"`
}

// Bid is a single-use, expiring offer to run a workload on one nexlet of one node.
type Bid struct {
	BidID              string          `json:"bid_id"`
	NodeID             string          `json:"node_id"`
	NexletID           string          `json:"nexlet_id"`
	Type               string          `json:"type"`
	ExpiresAt          time.Time       `json:"expires_at"`
	StartRequestSchema json.RawMessage `json:"start_request_schema,omitempty"`
	// XKey is the nexlet's public curve key: environment values are sealed for it.
	XKey string `json:"xkey,omitempty"`
	// Load is how full the node would be with the workload placed, 0 (empty) to 1 (full):
	// the larger of its memory and CPU shares. Placement picks the lowest; nil (a node
	// set to place at random) counts as a random value.
	Load *float64 `json:"load,omitempty"`
	// Workloads is how many workloads the node runs: the tie-break between equal loads.
	Workloads int `json:"workloads,omitempty"`
}

// DeployRequest claims a bid and starts the workload.
type DeployRequest struct {
	Workload WorkloadDefinition `json:"workload"`
	// RequestID makes the start idempotent (see AuctionRequest.RequestID).
	RequestID string `json:"request_id,omitempty"`
	// Takeover, sent by the cluster's coordinator, moves a workload of a lost node here
	// under its own ID (Workload is then what the auction was for).
	Takeover *Takeover `json:"takeover,omitempty"`
	// Coordinator and Epoch, sent by the cluster's coordinator placing a replica group's
	// copy, name the node that holds the coordinator lease and the lease's epoch: the node
	// refuses the start (409) unless the lease is still that node's at that epoch, so a
	// coordinator paused or cut off past its lease places nothing.
	Coordinator string `json:"coordinator,omitempty"`
	Epoch       uint64 `json:"epoch,omitempty"`
}

// GroupRequest starts, scales, stops or describes a replica group
// ($NEX.SVC.v1.<ns>.control.GROUP.<group_id>, answered by the cluster's coordinator).
type GroupRequest struct {
	// Op is GroupCreate (Definition, Replicas, MaxPerNode, Spread), GroupScale
	// (Replicas), GroupStop or GroupInfo.
	Op         string              `json:"op"`
	Definition *WorkloadDefinition `json:"definition,omitempty"`
	Replicas   int                 `json:"replicas"`
	// MaxPerNode is the most copies one node runs (default 1).
	MaxPerNode int `json:"max_per_node,omitempty"`
	// Spread is a node tag key whose values the copies are spread evenly over.
	Spread string `json:"spread,omitempty"`
	// MaxParallel is how many copies an update replaces at a time (default 1).
	MaxParallel int `json:"max_parallel,omitempty"`
}

// GroupIDPrefix starts every replica group's ID, so a group is told from a workload.
const GroupIDPrefix = "g-"

// Group operations.
const (
	GroupCreate = "create"
	GroupScale  = "scale"
	GroupStop   = "stop"
	GroupInfo   = "info"
	// GroupUpdate rolls the copies over to Definition, MaxParallel at a time: a new copy
	// starts and must run for a moment without a restart before an old one stops; a new
	// copy that fails stops the update and leaves the old copies running.
	GroupUpdate = "update"
	// GroupRestart replaces every copy with a new one of the same definition, as an update
	// does (the group's version goes up by one); Definition is not needed.
	GroupRestart = "restart"
)

// GroupStatus describes a replica group and its copies.
type GroupStatus struct {
	ID         string `json:"id"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Replicas   int    `json:"replicas"`
	MaxPerNode int    `json:"max_per_node"`
	Spread     string `json:"spread,omitempty"`
	Version    int    `json:"version"`
	// Definition is the group's current definition (its values sealed).
	Definition *WorkloadDefinition `json:"definition,omitempty"`
	Copies     []WorkloadInfo      `json:"copies"`
	// Pending says why copies are missing (the nodes' reasons), when some are.
	Pending string `json:"pending,omitempty"`
}

// Takeover reasons.
const (
	TakeoverLost  = "node_lost"
	TakeoverDrain = "drain"
	// TakeoverNexletFailed: its node gave up on the nexlet that ran it.
	TakeoverNexletFailed = "nexlet_failed"
	// TakeoverStartFailed: the node that took it over could not start it, after tries.
	TakeoverStartFailed = "start_failed"
)

// Takeover names the record a node takes over: the lost node's record of the workload,
// at the revision the coordinator read. The move is a compare-and-set on that revision,
// so exactly one node takes it.
type Takeover struct {
	WorkloadID string `json:"workload_id"`
	FromNode   string `json:"from_node"`
	Revision   uint64 `json:"revision"`
	// Reason is why it moves: TakeoverLost (its node is lost), TakeoverDrain,
	// TakeoverNexletFailed or TakeoverStartFailed.
	Reason string `json:"reason,omitempty"`
	// UseStartRequest: start it with the DEPLOY's start request (its sealed values
	// sealed for this node's nexlet by the old node's, in a drain), not the record's.
	UseStartRequest bool `json:"use_start_request,omitempty"`
}

// WorkloadInfo is a workload as seen by its nexlet and node.
type WorkloadInfo struct {
	ID          string            `json:"id"`
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Type        string            `json:"type"`
	Lifecycle   string            `json:"lifecycle"`
	Tags        map[string]string `json:"tags,omitempty"`
	State       string            `json:"state"`
	NodeID      string            `json:"node_id"`
	NexletID    string            `json:"nexlet_id"`
	StartedAt   time.Time         `json:"started_at"`
	ExitCode    *int              `json:"exit_code,omitempty"`
	// ExitReason says why its last process ended when the code alone does not tell
	// (ExitOOMKilled, ExitUnhealthy, ExitTimedOut).
	ExitReason string `json:"exit_reason,omitempty"`
	// Health is a service's health check verdict: HealthStarting until its first pass,
	// then HealthHealthy or HealthUnhealthy; empty without a check.
	Health string `json:"health,omitempty"`
	// Restarts counts the times the nexlet started the workload's process again;
	// LastExitCode is how its last process ended (while a new one runs, or before one
	// does); Error is the last failure the nexlet saw (a start, a fetch, a health check).
	// A rollout's gate reads these: a nexlet of any type fills them in.
	Restarts     uint64            `json:"restarts,omitempty"`
	LastExitCode *int              `json:"last_exit_code,omitempty"`
	Error        string            `json:"error,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	// Group is the replica group the workload is a copy of, if any, and GroupVersion the
	// version of the group's definition it runs.
	Group        string `json:"group,omitempty"`
	GroupVersion int    `json:"group_version,omitempty"`
	// Definition is what the workload was started with; nexlets always fill it in so a
	// restarted node can adopt the workload; listings leave it out.
	Definition *WorkloadDefinition `json:"definition,omitempty"`
}

// Finished reports whether the workload has ended for good (a job ran, a service gave up).
func (w *WorkloadInfo) Finished() bool {
	return w.State == StateStopped || w.State == StateFailed
}

// ListRequest filters a workload listing.
type ListRequest struct {
	Type string `json:"type,omitempty"`
	// NoMetadata leaves the nexlet metadata out, for a smaller, faster reply.
	NoMetadata bool `json:"no_metadata,omitempty"`
}

// ListReply is one node's workloads.
type ListReply struct {
	NodeID    string         `json:"node_id"`
	Workloads []WorkloadInfo `json:"workloads"`
}

// StopRequest asks for a workload to be stopped; GracePeriod overrides the nexlet default.
type StopRequest struct {
	GracePeriod Duration `json:"grace_period,omitempty"`
}

// Validate checks the grace period.
func (r *StopRequest) Validate() error { return within("grace_period", r.GracePeriod, MaxGracePeriod) }

// within checks that d (what it is named) is from 0 to most.
func within(what string, d, most Duration) error {
	if d < 0 || d > most {
		return BadRequest("%s %s: between 0 and %s", what, time.Duration(d), time.Duration(most))
	}
	return nil
}

// ExecRequest runs Argv beside a running workload: as its user, in its workdir, with its
// environment, in its cgroup and sandbox; Timeout (default DefaultExecTimeout, at most
// MaxExecTimeout) ends it.
type ExecRequest struct {
	Argv    []string `json:"argv"`
	Timeout Duration `json:"timeout,omitempty"`
	// TTY runs the command on a terminal of its own (a pseudo-terminal, its controlling
	// terminal): what it writes comes back as stdout, with a terminal's line endings.
	TTY bool `json:"tty,omitempty"`
}

// Exec bounds, and MaxGracePeriod: the longest a stop waits for a workload after SIGTERM
// (a stop's, a definition's or a start request's grace_period), holding its request.
const (
	MaxGracePeriod     = Duration(time.Hour)
	DefaultExecTimeout = Duration(time.Minute)
	MaxExecTimeout     = Duration(10 * time.Minute)
	MaxExecOutput      = 256 << 10 // bytes of stdout, and of stderr, kept: the reply fits NATS's default 1 MB payload
	MaxExposePorts     = 64        // ports one workload may expose (expose_ports): one start must not hold a node's every port
)

// Validate checks the request and fills in the default timeout.
func (r *ExecRequest) Validate() error {
	if len(r.Argv) == 0 || r.Argv[0] == "" {
		return BadRequest("exec: argv: the command to run is missing")
	}
	if len(r.Argv) > 1024 {
		return BadRequest("exec: argv: %d arguments, at most 1024", len(r.Argv))
	}
	r.Timeout = cmp.Or(r.Timeout, DefaultExecTimeout)
	return within("exec: timeout", r.Timeout, MaxExecTimeout)
}

// ExecReply is how the command ended and what it printed (each stream cut at
// MaxExecOutput bytes, Truncated then set).
type ExecReply struct {
	ExitCode  int    `json:"exit_code"`
	Stdout    []byte `json:"stdout,omitempty"`
	Stderr    []byte `json:"stderr,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	TimedOut  bool   `json:"timed_out,omitempty"`
}

// LameduckRequest puts a node in lameduck mode: it stops bidding at once, and stops its
// workloads and exits when Delay has passed.
type LameduckRequest struct {
	Delay Duration `json:"delay"`
}

// LameduckReply says when the node will stop its workloads.
type LameduckReply struct {
	NodeID   string    `json:"node_id"`
	Deadline time.Time `json:"deadline"`
}

// CloneRequest asks for a workload's definition; with ResealFor, sealed values come back sealed for that nexlet key.
type CloneRequest struct {
	ResealFor string `json:"reseal_for,omitempty"`
}

// ResealRequest asks a nexlet to re-seal a start request's sealed values for Recipient.
type ResealRequest struct {
	StartRequest json.RawMessage `json:"start_request"`
	Recipient    string          `json:"recipient"`
	Namespace    string          `json:"namespace"` // the workload's: each value is opened and sealed for it
}

// PruneRequest names every workload a node records for a nexlet: the nexlet removes
// what it keeps of any other (a workdir left by a workload that ended while the nexlet was
// down, and whose record went meanwhile), except what it runs.
type PruneRequest struct {
	Keep []string `json:"keep"`
}

// PruneReply names what a prune removed.
type PruneReply struct {
	Removed []string `json:"removed,omitempty"`
}

// CloneReply carries the definition of a workload so it can be auctioned again.
type CloneReply struct {
	WorkloadID string             `json:"workload_id"`
	Definition WorkloadDefinition `json:"definition"`
}

// NodeInfo describes one node; PING replies carry it without schemas.
type NodeInfo struct {
	NodeID    string            `json:"node_id"`
	Name      string            `json:"name"`
	Nexus     string            `json:"nexus"`
	Version   string            `json:"version"`
	Commit    string            `json:"commit,omitempty"`
	StartedAt time.Time         `json:"started_at"`
	Uptime    Duration          `json:"uptime"`
	State     string            `json:"state"`
	Tags      map[string]string `json:"tags,omitempty"`
	Nexlets   []NexletInfo      `json:"nexlets"`
	Workloads int               `json:"workloads"`
	// SecretsXKey is the public key secret values are sealed for (nexd --secrets-key).
	SecretsXKey string `json:"secrets_xkey,omitempty"`
	// Capacity is what the node offers its workloads and what they asked of it.
	Capacity *NodeCapacity `json:"capacity,omitempty"`
	// Coordinator says the node holds the cluster's coordinator lease (--state kv).
	Coordinator bool `json:"coordinator,omitempty"`
}

// NodeCapacity is a node's room for workloads: its memory and CPU, the share kept back for
// the node itself, and the sum of what its workloads requested (their "resources").
type NodeCapacity struct {
	Memory          ByteSize `json:"memory"`
	CPU             float64  `json:"cpu"`
	ReservedMemory  ByteSize `json:"reserved_memory"`
	ReservedCPU     float64  `json:"reserved_cpu"`
	RequestedMemory ByteSize `json:"requested_memory"`
	RequestedCPU    float64  `json:"requested_cpu"`
	// Placement is how the node bids: "least-loaded" (it reports its load) or "random".
	Placement string `json:"placement"`
}

// Placement settings of a node (NodeCapacity.Placement, nexd --placement).
const (
	// PlacementLeastLoaded: the node's bids carry its load, and the least loaded wins.
	PlacementLeastLoaded = "least-loaded"
	// PlacementRandom: the node's bids carry no load; they win at random.
	PlacementRandom = "random"
)

// SecretPutRequest stores a secret; Value is sealed for the nodes' secrets key.
type SecretPutRequest struct {
	Value string `json:"value"`
}

// SecretInfo names a secret; values never leave the store.
type SecretInfo struct {
	Name      string    `json:"name"`
	Namespace string    `json:"namespace"`
	UpdatedAt time.Time `json:"updated_at,omitempty"`
}

// Node states.
const (
	NodeRunning  = "running"
	NodeLameduck = "lameduck"
)

// NexletInfo describes a nexlet registered with a node: its registration (without the
// schema unless asked for) and what the node knows of its health.
type NexletInfo struct {
	RegisterRequest
	Workloads     int       `json:"workloads"`
	Health        string    `json:"health"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
}

// Nexlet health values.
const (
	HealthHealthy  = "healthy"
	HealthDegraded = "degraded"
	HealthLost     = "lost"
	// HealthRegistering: registered, its workloads still being reconciled; it bids
	// once that is done (a moment for a new nexlet, longer for one with many workloads).
	HealthRegistering = "registering"
)

// RegisterRequest is sent by a nexlet to its node.
type RegisterRequest struct {
	NexletID           string          `json:"nexlet_id"`
	RegisterType       string          `json:"register_type"`
	Version            string          `json:"version"`
	Lifecycles         []string        `json:"supported_lifecycles"`
	StartRequestSchema json.RawMessage `json:"start_request_schema,omitempty"`
	XKey               string          `json:"xkey"`
	MaxWorkloads       int             `json:"max_workloads"`
	// HostID names the nexlet's machine; a node refuses nexlets of other machines
	// unless remote registration is allowed.
	HostID string `json:"host_id,omitempty"`
	// PID is the nexlet's process ID on HostID, so a node that adopted it can stop it.
	PID int `json:"pid,omitempty"`
	// Isolation is what keeps the nexlet's workloads apart on its machine: IsolationUID
	// (each runs as a user of its own) or IsolationNone (the default when empty).
	Isolation string `json:"isolation,omitempty"`
	// Sandbox is what else keeps them apart: SandboxNamespaces (mount, IPC and PID namespaces
	// of their own: private /tmp and /dev/shm, a /proc showing only their own processes)
	// or SandboxNone (the default when empty).
	Sandbox string `json:"sandbox,omitempty"`
	// Cgroups is how the nexlet enforces resource limits (CgroupsV2, CgroupsV1 or
	// CgroupsNone), and Limits the resources it can limit (ResourceMemory, ...).
	Cgroups string   `json:"cgroups,omitempty"`
	Limits  []string `json:"limits,omitempty"`
}

// Isolation values: of a nexlet's registration, and of the node tag nex.isolation.
const (
	IsolationUID  = "uid"
	IsolationNone = "none"
	// TagIsolation is the node tag that says whether workloads are isolated; a workload
	// requiring isolation asks for TagIsolation=IsolationUID.
	TagIsolation = "nex.isolation"
	// TagSandbox is the node tag that says whether every nexlet there sandboxes its
	// workloads (SandboxNamespaces) or not (SandboxNone).
	TagSandbox        = "nex.sandbox"
	SandboxNamespaces = "namespaces"
	SandboxNone       = "none"
)

// Validate checks a registration.
func (r *RegisterRequest) Validate() error {
	if err := ValidateToken("nexlet_id", r.NexletID); err != nil {
		return err
	}
	if err := ValidateToken("register_type", r.RegisterType); err != nil {
		return err
	}
	if len(r.Lifecycles) == 0 {
		return BadRequest("supported_lifecycles is empty")
	}
	for _, l := range r.Lifecycles {
		if !ValidLifecycle(l) {
			return BadRequest("supported lifecycle %q is not one of service, job, function", l)
		}
	}
	if len(r.StartRequestSchema) == 0 {
		return BadRequest("start_request_schema is missing")
	}
	return nil
}

// RegisterReply acknowledges a registration.
type RegisterReply struct {
	NodeID            string   `json:"node_id"`
	HeartbeatInterval Duration `json:"heartbeat_interval"`
	// DisconnectStopAfter is how long the nexlet may be cut off from NATS before it stops
	// the workloads whose definition says disconnect: stop (well before the cluster
	// starts them elsewhere); 0: it never does (a node that keeps its records to itself).
	DisconnectStopAfter Duration `json:"disconnect_stop_after,omitempty"`
}

// Heartbeat is sent periodically by a nexlet, and at once when a workload finishes.
type Heartbeat struct {
	NexletID  string `json:"nexlet_id"`
	Workloads int    `json:"workloads"`
	// Finished lists workloads that ended for good (jobs that ran, services that gave
	// up), so the node never brings them back.
	Finished []string `json:"finished,omitempty"`
	// Stats are counters the runtime keeps (log_lines, log_lines_dropped, ...).
	Stats map[string]uint64 `json:"stats,omitempty"`
	// States counts the nexlet's workloads by state.
	States map[string]int `json:"states,omitempty"`
	// Restarts is the sum of its workloads' restarts.
	Restarts uint64 `json:"restarts,omitempty"`
	// RestartCounts are the restarts of each workload restarted at least once, so the
	// node keeps them in the record and a recovery carries on counting.
	RestartCounts map[string]uint64 `json:"restart_counts,omitempty"`
	// Ended describes the workloads of Finished that ended since the nexlet's last
	// heartbeat (without definitions), so the node records how they ended without asking.
	Ended []WorkloadInfo `json:"ended,omitempty"`
}

// StartWorkloadRequest is what a node sends a nexlet to start a workload.
type StartWorkloadRequest struct {
	WorkloadID string             `json:"workload_id"`
	NodeID     string             `json:"node_id"`
	Definition WorkloadDefinition `json:"definition"`
	// Restarts is how often the workload was restarted before (a recovery after its
	// nexlet was lost carries on counting from here; the recovery itself is one more).
	Restarts uint64 `json:"restarts,omitempty"`
	// SealedCreds are the workload's NATS credentials (a .creds file) sealed with the
	// nexlet's xkey by SenderXKey, the node's; only the nexlet can open them.
	SealedCreds []byte `json:"sealed_creds,omitempty"`
	SenderXKey  string `json:"sender_xkey,omitempty"`
	// Creds are the opened credentials, filled in by the nexlet SDK; never sent.
	Creds []byte `json:"-"`
	// Environment is the start request's environment with sealed values opened, filled
	// in by the nexlet SDK; never sent. The definition keeps the sealed form.
	Environment map[string]string `json:"-"`
}

// CredsUpdate carries renewed, sealed credentials for a running workload.
type CredsUpdate struct {
	SealedCreds []byte `json:"sealed_creds"`
	SenderXKey  string `json:"sender_xkey"`
}

// NexletListRequest lists a nexlet's workloads; an empty namespace means all.
type NexletListRequest struct {
	Namespace string `json:"namespace,omitempty"`
	// Definitions includes each workload's definition (the node asks when it adopts).
	Definitions bool `json:"definitions,omitempty"`
	// NoMetadata leaves metadata out.
	NoMetadata bool `json:"no_metadata,omitempty"`
}

// Event types on workload feeds ($NEX.FEED.<ns>.event.<wid>).
const (
	EventStarted     = "started"
	EventStopped     = "stopped"
	EventExited      = "exited"
	EventRestarted   = "restarted"
	EventFailed      = "failed"
	EventTriggered   = "triggered"
	EventLogsDropped = "logs_dropped"
	// EventRescheduled: the workload's node was lost and it runs on another one now,
	// under the same ID (data: from_node, to_node).
	EventRescheduled = "rescheduled"
	// EventUnplaced: its node was lost or drained and no other node can take it yet
	// (message: the nodes' reasons); a drained node stops it at its deadline.
	EventUnplaced = "unplaced"
	// EventHealthy and EventUnhealthy: a service's health check passed for the first time
	// (or again), or failed `failures` times in a row (message: the last failure).
	EventHealthy   = "healthy"
	EventUnhealthy = "unhealthy"
)

// Exit reasons (WorkloadInfo.ExitReason, and data.reason of an exited event).
const (
	// ExitOOMKilled: the kernel killed the workload for going over its memory limit.
	ExitOOMKilled = "oom_killed"
	// ExitDiskLimit: its workdir went over resources.disk; it is stopped for good.
	ExitDiskLimit = "disk_limit"
	// ExitUnhealthy: the nexlet killed a service its health check found unhealthy.
	ExitUnhealthy = "unhealthy"
	// ExitTimedOut: the nexlet killed a job that ran past its timeout.
	ExitTimedOut = "timed_out"
)

// Workload health (WorkloadInfo.Health).
const (
	WorkloadHealthStarting  = "starting"
	WorkloadHealthHealthy   = "healthy"
	WorkloadHealthUnhealthy = "unhealthy"
)

// Event types on the node feed ($NEX.FEED.system.event.<node_id>).
const (
	EventNodeStarted      = "started"
	EventNodeStopped      = "stopped"
	EventLameduck         = "lameduck"
	EventRegistered       = "nexlet_registered"
	EventLost             = "nexlet_lost"
	EventNexletRestarting = "nexlet_restarting"
	EventNexletFailed     = "nexlet_failed"
	// EventNodeLost is published by the cluster's coordinator about another node: no
	// announcement from it within the node-loss window (data: node_id, last_seen).
	EventNodeLost = "node_lost"
)

// EventTypes lists every event type, workload and node (for docs and tests).
var EventTypes = []string{
	EventStarted, EventStopped, EventExited, EventRestarted, EventFailed, EventTriggered, EventLogsDropped, EventRescheduled, EventUnplaced, EventHealthy, EventUnhealthy,
	EventLameduck, EventRegistered, EventLost, EventNexletRestarting, EventNexletFailed, EventNodeLost,
}

// LogEnd ends one run's output on a workload's log subjects (header Nex-End): every line
// of the run was published before it. Final says the workload will not run again (a job
// done, a service stopped or given up), so a reader following its output can stop.
type LogEnd struct {
	ExitCode int    `json:"exit_code"`
	Reason   string `json:"reason,omitempty"`
	Final    bool   `json:"final"`
}

// Event is published on $NEX.FEED.<ns>.event.<id>.
type Event struct {
	Type       string         `json:"type"`
	WorkloadID string         `json:"workload_id,omitempty"`
	Namespace  string         `json:"namespace"`
	NodeID     string         `json:"node_id,omitempty"`
	Time       time.Time      `json:"time"`
	ExitCode   *int           `json:"exit_code,omitempty"`
	Message    string         `json:"message,omitempty"`
	Data       map[string]any `json:"data,omitempty"`
}

// SecretKeyReply is the public curve key secret values are sealed for (nexd --secrets-key).
type SecretKeyReply struct {
	XKey string `json:"xkey"`
}

// Announce is a node's periodic "I am alive" message.
type Announce struct {
	NodeID  string `json:"node_id"`
	Name    string `json:"name"`
	Leaving bool   `json:"leaving,omitempty"`
	// Starting is a node's first announcement: every node that hears it answers with its
	// own at once, so the newcomer knows its peers within a round trip (a node killed and
	// started again is still known to the others, which would otherwise wait a period).
	Starting bool `json:"starting,omitempty"`
	// XKeys are the public curve keys of the node's registered nexlets: a CLONE's
	// reseal_for must be one of the cluster's.
	XKeys []string `json:"xkeys,omitempty"`
}

// Duration is a time.Duration that travels as a Go duration string ("10s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration %s: want a string like \"10s\"", b)
	}
	*d = Duration(n)
	return nil
}
