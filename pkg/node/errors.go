package node

import "errors"

// Errors returned by the node.
var (
	ErrConfig         = errors.New("invalid node config")
	ErrNexletNotReady = errors.New("nexlet did not register in time")
	ErrReservedTag    = errors.New("tags with the nex. prefix are reserved")
	ErrDuplicateNode  = errors.New("a node with this ID is already running")
)

// Errors of the state stores.
var (
	ErrNoJetStream = errors.New("--state kv needs JetStream, and the NATS server has it off: enable it (a `jetstream {}` block in the server config, or nexd --embedded) or use --state memory")
	ErrConflict    = errors.New("state record changed meanwhile")
)
