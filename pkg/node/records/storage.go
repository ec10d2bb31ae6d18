package records

import (
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// JetStream error codes that mean the store is out of room.
const (
	jsErrStorageExceeded    = 10047 // insufficient storage resources available
	jsErrInsufficientRes    = 10023 // insufficient resources
	jsErrStreamStoreFailed  = 10077 // stream store failed (a write error, a full disk)
	jsErrMaxBytesExceeded   = 10028 // maximum bytes exceeded (account limit)
	jsErrAccountResourcesEx = 10002 // resource limits exceeded for account
	JSErrSubjectOverlap     = 10065 // subjects overlap with an existing stream
)

// StorageError names a state store failure for the user: storage_full when JetStream is
// out of room, storage_unavailable when it did not answer (no quorum, a leader election,
// JetStream down), each with what to do, or when the record changed under the write (the
// store answered: the message says so, where it said the store had not). what says what
// could not be recorded.
func StorageError(err error, what string) error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*v1.Error](err); ok {
		return e
	}
	if errors.Is(err, ErrConflict) {
		// it answered: another writer was quicker (or a write of this one whose answer was
		// lost landed: the code stays storage_unavailable, whose outcome is not known)
		return v1.Errorf(v1.CodeStorageUnavailable, "%s: its record changed as it was written (%v); try again", what, err)
	}
	if StorageFull(err) {
		return v1.Errorf(v1.CodeStorageFull, "%s: JetStream is out of storage (%v); free disk space on the NATS servers or raise their JetStream max_file_store / the account's limits", what, err)
	}
	return v1.Errorf(v1.CodeStorageUnavailable, "%s: the state store did not answer (%v); check that the NATS servers have JetStream with a quorum (nats server report jetstream), then try again", what, err)
}

// StorageFull tells whether err says JetStream has no room left.
func StorageFull(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jsErrStorageExceeded, jsErrInsufficientRes, jsErrStreamStoreFailed, jsErrMaxBytesExceeded, jsErrAccountResourcesEx:
			return true
		}
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "no space left") || strings.Contains(msg, "insufficient storage") || strings.Contains(msg, "resource limits exceeded")
}
