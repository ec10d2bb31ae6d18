package node

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/retry"
	"github.com/nexrun/nex/pkg/node/records"
)

// A takeover marks the lost node's record moved, then writes the new node's record, then
// starts the workload. One that fails half-way (a write whose answer was lost, a store
// that filled up, a node killed in between) can leave a mark that names a node holding
// no record of the workload. Acting on such a mark (the old node stops its copy and
// removes the mark, the coordinator removes a lost node's) loses the workload: a chaos
// run saw one started, acknowledged, then stopped as "moved", and listed nowhere.
// So a mark is acted on only once the node it names holds the record; one that names
// nobody for moveGrace is put back to running, where the node, or the coordinator's
// next round for a lost node, keeps or places the workload again.

// moveGrace is how long a moved mark may name a node without its record before it is
// taken for a takeover that failed half-way: longer than a takeover's writes take with
// every store retry (records.Retry: 15 s each).
const moveGrace = 45 * time.Second

type moveState int

const (
	moveDone     moveState = iota // the node it names holds the record
	movePending                   // not yet: a takeover may be writing it
	moveDangling                  // not after moveGrace: the takeover failed half-way
	moveUnknown                   // the store could not say
)

// checkMove tells what the moved mark rec, node's, stands for: done when another node
// holds a record of the workload. Not only the node the mark names: that node may have
// lost it on in turn and removed its own mark once it stopped its copy (a chaos run: a
// mark naming such a node was taken for a failed takeover and put back, and the
// workload ran twice for minutes).
func checkMove(ctx context.Context, cs ClusterStore, node string, rec Record) moveState {
	// the node the mark names, first: one read from the stream's leader, where a listing
	// of every node's keys is slow and, while JetStream elects a leader, times out
	if rec.MovedTo != "" && rec.MovedTo != node {
		if _, err := cs.RecordOf(ctx, rec.MovedTo, rec.WorkloadID); err == nil {
			return moveDone
		}
	}
	owners, err := cs.Owners(ctx, rec.WorkloadID)
	switch {
	case err != nil:
		return moveUnknown
	case slices.ContainsFunc(owners, func(o string) bool { return o != node }):
		return moveDone
	case time.Since(rec.UpdatedAt) > moveGrace:
		return moveDangling
	}
	return movePending
}

// restoreMoved puts node's moved mark rec back to running (compare-and-set on its
// revision); it returns the record written, or false when the mark changed meanwhile.
func restoreMoved(ctx context.Context, cs ClusterStore, node string, rec Record) (Record, bool) {
	back := rec
	back.Desired, back.MovedTo, back.UpdatedAt = DesiredRunning, "", time.Now().UTC()
	if err := cs.PutOf(ctx, node, &back); err != nil {
		return Record{}, false
	}
	return back, true
}

// awaitMove waits, before this node stops its copy of a workload whose record is marked
// moved (rec), until the node the mark names holds the record (false: stop the copy).
// It returns true when the copy stays: the mark was put back (by the node that failed to
// take it over, or here once it named nobody for moveGrace), and the record is indexed again.
func (n *Node) awaitMove(rec Record) bool {
	cs, ok := n.cfg.Store.(ClusterStore)
	if !ok || rec.MovedTo == "" {
		return false
	}
	backoff := retry.Backoff{First: 250 * time.Millisecond, Max: 5 * time.Second}
	giveUp := time.Now().Add(2 * moveGrace) // the store unreadable all along: stop, as before
	for {
		ctx, cancel := context.WithTimeout(n.ctx, records.AttemptTimeout)
		state := checkMove(ctx, cs, n.cfg.NodeID, rec)
		if state == moveDone {
			cancel()
			return false
		}
		if state == moveDangling {
			if back, ok := restoreMoved(ctx, cs, n.cfg.NodeID, rec); ok {
				cancel()
				n.keepMoved(back, "a takeover of this node's workload failed half-way (its mark named a node without its record): it stays here")
				return true
			}
		}
		cur, err := cs.RecordOf(ctx, n.cfg.NodeID, rec.WorkloadID)
		cancel()
		switch {
		case errors.Is(err, ErrNotStored):
			return false // removed: nothing holds it here any more
		case err == nil && cur.Desired != DesiredMoved:
			n.keepMoved(*cur, "a takeover of this node's workload was given back: it stays here")
			return true
		case err == nil:
			rec = *cur
		}
		if time.Now().After(giveUp) || !backoff.Wait(n.ctx, 0) {
			return false
		}
	}
}

// keepMoved indexes again a record whose moved mark was put back.
func (n *Node) keepMoved(rec Record, why string) {
	if rec.Desired != DesiredRunning {
		return
	}
	n.index(rec)
	n.log.Warn(why, zap.String("workload_id", rec.WorkloadID))
}

// dropMarks removes, before a stop removes this node's record of a workload that came
// here by a takeover, the moved marks other nodes' records keep of it: a node that comes
// back then hears its record removed and stops its copy. Were the marks left (a stop
// that removed them after its own record, and failed: a chaos run), a mark would name a
// node without the record, be taken for a takeover that failed half-way, and put back:
// the stopped workload would run again.
func (n *Node) dropMarks(rec Record) error {
	cs, ok := n.cfg.Store.(ClusterStore)
	if !ok || !rec.TakenOver {
		return nil
	}
	wid := rec.WorkloadID
	ctx, cancel := context.WithTimeout(n.ctx, records.RetryBudget)
	defer cancel()
	var owners []string
	err := records.Retry(ctx, func(actx context.Context) (err error) {
		owners, err = cs.Owners(actx, wid)
		return err
	})
	if err != nil {
		return err
	}
	for _, o := range owners { // a mark is never the record that holds the workload
		r, err := cs.RecordOf(ctx, o, wid)
		if errors.Is(err, ErrNotStored) {
			continue
		}
		if err != nil {
			return err
		}
		if r.Desired != DesiredMoved {
			continue
		}
		if err := cs.RemoveOf(ctx, o, wid, r.Revision); err != nil && !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return nil
}

// dropMarksLater removes the marks, then this node's record, once the store answers.
func (n *Node) dropMarksLater(rec Record) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		backoff := retry.Backoff{First: time.Second, Max: 30 * time.Second}
		for backoff.Wait(n.ctx, 0) {
			if n.dropMarks(rec) != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(n.ctx, records.RetryBudget)
			err := n.cfg.Store.Delete(ctx, rec.WorkloadID)
			cancel()
			if err == nil {
				return
			}
		}
	}()
}
