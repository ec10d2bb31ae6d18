package native

import "errors"

// Errors returned by the native runtime.
var (
	ErrBadURI        = errors.New("invalid uri")
	ErrNotExecutable = errors.New("not an executable file")
	ErrLameduck      = errors.New("nexlet is in lameduck mode")
	ErrCapacity      = errors.New("nexlet is at capacity")
)
