package test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestDemo runs `make demo`'s script as a user would, on a free port, with the binaries
// built for these tests.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("demo in -short mode")
	}
	cmd := exec.Command("./test/demo/demo.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DEMO_PORT="+strconv.Itoa(freePort(t)), "DEMO_BIN="+binDir, "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{"hello ada from greet.world", "tag region=mars not matched", "successfully started (clone of", "Done: everything stopped"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
