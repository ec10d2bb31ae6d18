package daemon

import "github.com/nexrun/nex/internal/nodeflags"

// Options are nexd's flags (see nodeflags, which the nex CLI links without the daemon).
type Options = nodeflags.Options

// RefuseSeedArgs refuses a node seed given on the command line (see nodeflags).
func RefuseSeedArgs(args []string) error { return nodeflags.RefuseSeedArgs(args) }

// NexletSpec is a local nexlet nexd starts and supervises (see nodeflags).
type NexletSpec = nodeflags.NexletSpec
