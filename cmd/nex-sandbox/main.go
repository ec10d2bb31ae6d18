// nex-sandbox is the helper nexlet-native starts each sandboxed workload through (see
// internal/sandbox). It is not meant to be run by hand: without the spec nexlet-native
// gives it, it says so and exits.
package main

import (
	"fmt"
	"os"

	"github.com/nexrun/nex/internal/sandbox"
)

func main() {
	sandbox.Main()
	fmt.Fprintln(os.Stderr, "nex-sandbox: started by nexlet-native only, to put a workload in a sandbox of its own (docs/security.md)")
	os.Exit(2)
}
