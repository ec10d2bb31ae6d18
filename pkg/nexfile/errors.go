package nexfile

import "errors"

// ErrInvalid wraps every problem with a Nexfile's content.
var ErrInvalid = errors.New("invalid Nexfile")
