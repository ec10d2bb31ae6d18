package schema

import "errors"

// ErrInvalid is wrapped by every validation failure.
var ErrInvalid = errors.New("start_request does not match the schema")

// ErrBadSchema means the schema itself could not be compiled.
var ErrBadSchema = errors.New("invalid JSON schema")
