package client

import "errors"

// ErrNoSecretsKey means no node serves the secret store.
var ErrNoSecretsKey = errors.New("no node has a secrets key: start nexd with --secrets-key (the same key on every node)")

// ErrNoHistory means the namespace's history stream is missing (nothing has run in the
// namespace yet, JetStream is off, or nexd runs with --no-logs.history): only live
// messages can be followed.
var ErrNoHistory = errors.New("no history kept for this namespace: nothing has run in it yet, or the nodes keep none (JetStream off, or nexd --no-logs.history); use -f to follow live messages")
