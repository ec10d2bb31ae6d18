package cluster

import (
	"context"
	"slices"
	"time"

	"github.com/nexrun/nex/pkg/node/records"
)

// A takeover marks the lost node's record moved, then writes the new node's record, then
// starts the workload. One that fails half-way (a write whose answer was lost, a store
// that filled up, a node killed in between) can leave a mark that names a node holding
// no record of the workload. Acting on such a mark (the old node stops its copy and
// removes the mark, the coordinator removes a lost node's) loses the workload: a chaos
// run saw one started, acknowledged, then stopped as "moved", and listed nowhere.
// So a mark is acted on only once the node it names holds the record; one that names
// nobody for MoveGrace is put back to running, where the node, or the coordinator's
// next round for a lost node, keeps or places the workload again.

// MoveGrace is how long a moved mark may name a node without its record before it is
// taken for a takeover that failed half-way: longer than a takeover's writes take with
// every store retry (records.Retry: 15 s each).
const MoveGrace = 45 * time.Second

type MoveState int

const (
	MoveDone     MoveState = iota // the node it names holds the record
	MovePending                   // not yet: a takeover may be writing it
	MoveDangling                  // not after MoveGrace: the takeover failed half-way
	MoveUnknown                   // the store could not say
)

// CheckMove tells what the moved mark rec, node's, stands for: done when another node
// holds a record of the workload. Not only the node the mark names: that node may have
// lost it on in turn and removed its own mark once it stopped its copy (a chaos run: a
// mark naming such a node was taken for a failed takeover and put back, and the
// workload ran twice for minutes).
func CheckMove(ctx context.Context, cs records.ClusterStore, node string, rec records.Record) MoveState {
	// the node the mark names, first: one read from the stream's leader, where a listing
	// of every node's keys is slow and, while JetStream elects a leader, times out
	if rec.MovedTo != "" && rec.MovedTo != node {
		if _, err := cs.RecordOf(ctx, rec.MovedTo, rec.WorkloadID); err == nil {
			return MoveDone
		}
	}
	owners, err := cs.Owners(ctx, rec.WorkloadID)
	switch {
	case err != nil:
		return MoveUnknown
	case slices.ContainsFunc(owners, func(o string) bool { return o != node }):
		return MoveDone
	case time.Since(rec.UpdatedAt) > MoveGrace:
		return MoveDangling
	}
	return MovePending
}

// RestoreMoved puts node's moved mark rec back to running (compare-and-set on its
// revision); it returns the record written, or false when the mark changed meanwhile.
func RestoreMoved(ctx context.Context, cs records.ClusterStore, node string, rec records.Record) (records.Record, bool) {
	back := rec
	back.Desired, back.MovedTo, back.UpdatedAt = records.DesiredRunning, "", time.Now().UTC()
	if err := cs.PutOf(ctx, node, &back); err != nil {
		return records.Record{}, false
	}
	return back, true
}
