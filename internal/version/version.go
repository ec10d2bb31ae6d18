// Package version holds the version and commit stamped at build time with -ldflags.
package version

// Set with -ldflags "-X github.com/nexrun/nex/internal/version.Version=... -X ...Commit=...".
var (
	Version = "0.0.0-dev"
	Commit  = "unknown"
)

// String is "<version> (<commit>)".
func String() string { return Version + " (" + Commit + ")" }
