package natsconn

import "errors"

// Errors returned by this package.
var (
	ErrContextNotFound = errors.New("NATS context not found")
	ErrTLSIncomplete   = errors.New("--nats.tls-cert and --nats.tls-key must be given together")
)
