package native

import (
	"errors"

	"github.com/nexrun/nex/pkg/runtime/native/artifacts"
	"github.com/nexrun/nex/pkg/runtime/native/asuser"
)

// Errors returned by the native runtime.
var (
	ErrBadURI        = artifacts.ErrBadURI
	ErrNotExecutable = asuser.ErrNotExecutable
	ErrLameduck      = errors.New("nexlet is in lameduck mode")
	ErrCapacity      = errors.New("nexlet is at capacity")
)
