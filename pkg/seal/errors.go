package seal

import "errors"

// ErrSealed means a value is sealed for another key, or cannot be opened.
var ErrSealed = errors.New("sealed value")

// ErrOtherNamespace means a value is sealed for another namespace than the one opening it.
var ErrOtherNamespace = errors.New("sealed value of another namespace")
