package client

import "errors"

// ErrNoSecretsKey means no node serves the secret store.
var ErrNoSecretsKey = errors.New("no node has a secrets key: start nexd with --secrets-key (the same key on every node)")

// ErrNoHistory means the history stream is missing (JetStream off, or nexd started
// with --no-logs.history): only live messages can be followed.
var ErrNoHistory = errors.New("no history: the JetStream stream is missing (is JetStream on, and nexd started without --no-logs.history?); use -f to follow live messages")
