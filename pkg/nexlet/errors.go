package nexlet

import "errors"

// Errors returned by the SDK.
var (
	ErrConfig        = errors.New("invalid nexlet config")
	ErrNotRegistered = errors.New("nexlet is not registered with its node")
)
