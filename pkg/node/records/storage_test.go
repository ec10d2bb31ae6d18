package records

import (
	"fmt"
	"strings"
	"testing"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// A write that lost to other writers is not a store that did not answer: a stop said "the
// state store did not answer (state record changed meanwhile ...); check that the NATS
// servers have JetStream with a quorum" of a store that had answered.
func TestStorageErrorOfAConflictSaysSo(t *testing.T) {
	err := StorageError(fmt.Errorf("%w: workload w of node n", ErrConflict), "record the stop of workload w")
	e := v1.AsError(err)
	if e.ErrorCode != v1.CodeStorageUnavailable || strings.Contains(e.Message, "did not answer") || !strings.Contains(e.Message, "changed as it was written") {
		t.Fatalf("a conflict: %v (%s)", err, e.ErrorCode)
	}
	err = StorageError(fmt.Errorf("nats: timeout"), "record x")
	if e := v1.AsError(err); e.ErrorCode != v1.CodeStorageUnavailable {
		t.Fatalf("a timeout: %v (%s)", err, e.ErrorCode)
	}
}
