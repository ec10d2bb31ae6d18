package node

import "errors"

// Errors returned by the node.
var (
	ErrConfig         = errors.New("invalid node config")
	ErrNexletNotReady = errors.New("nexlet did not register in time")
	ErrReservedTag    = errors.New("tags with the nex. prefix are reserved")
	ErrDuplicateNode  = errors.New("a node with this ID is already running")
)
