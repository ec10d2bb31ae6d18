package nexlet

import "errors"

// ErrConfig means a nexlet's Config is incomplete or invalid.
var ErrConfig = errors.New("invalid nexlet config")
