package daemon

import "errors"

// ErrBadSeed means --node-seed is neither a server seed nor a file holding one.
var ErrBadSeed = errors.New("invalid node seed")

// ErrNexletNotFound means nexlet-native is neither beside nexd nor on PATH.
var ErrNexletNotFound = errors.New("nexlet-native not found")

// ErrStartupWait means NATS or JetStream was not ready within --startup-wait.
var ErrStartupWait = errors.New("gave up waiting at start-up")
