package seal

import "errors"

// ErrSealed means a value is sealed for another key.
var ErrSealed = errors.New("sealed value")
