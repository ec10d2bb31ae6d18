package native

import (
	"strings"
	"testing"

	"github.com/nexrun/nex/pkg/runtime/native/spawn"
	"github.com/nexrun/nex/pkg/runtime/native/workdir"
)

// Once a workload is being removed (its UID about to be given back and swept), no
// process is made for it any more: a command beside it or a probe that got past its
// checks before the removal would otherwise run as the UID after the sweep, as its next
// holder. (Checked on the handle: the window is between a check and a fork.)
func TestNoProcessMadeForAWorkloadBeingRemoved(t *testing.T) {
	h := &handle{d: &Driver{}, wd: &workdir.Dir{}}
	s := spawn.Spec{Path: "/bin/true"}
	c, err := h.startChild(s)
	if err != nil {
		t.Fatalf("before its removal: %v", err)
	}
	c.Wait()
	h.cleanup()
	if c, err := h.startChild(s); err == nil || !strings.Contains(err.Error(), "being removed") {
		if c != nil {
			c.Wait()
		}
		t.Fatalf("a process made after the workload's cleanup: %v", err)
	}
}
