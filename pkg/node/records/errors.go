package records

import "errors"

// Errors of the state stores.
var (
	ErrNoJetStream = errors.New("--state kv needs JetStream, and the NATS server has it off: enable it (a `jetstream {}` block in the server config, or nexd --embedded) or use --state memory")
	ErrConflict    = errors.New("state record changed meanwhile")
)
