package nexfile

import "errors"

// ErrInvalid wraps every problem with a Nexfile's content.
var ErrInvalid = errors.New("invalid Nexfile")

// incomplete is a definition made from flags alone that lacks fields: errors.Is(err,
// ErrInvalid) holds, but its message does not blame a Nexfile that was never read.
type incomplete string

func (e incomplete) Error() string        { return string(e) }
func (e incomplete) Is(target error) bool { return target == ErrInvalid }
