package svc

import (
	"errors"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// ErrNoReply tells the adapter to stay silent: the request was meant for another responder.
var ErrNoReply = errors.New("no reply")

// ErrStopped answers a request that arrives while the server is stopping.
var ErrStopped = v1.Errorf(v1.CodeUnavailable, "the service is shutting down")

// ErrNoResponders means nothing listens on a fan-out's subject: no node answered. A read
// must say so, never answer with an empty result.
var ErrNoResponders = errors.New("no responders")
