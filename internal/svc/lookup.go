package svc

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
)

// LookupWait bounds how long a lookup waits for its first answer when the context has no
// deadline; once the owner has acknowledged, its deadline governs.
const LookupWait = 10 * time.Second

// Ack is an owner's acknowledgement of a request about one of its workloads.
type Ack struct {
	NodeID   string
	Deadline time.Time // when the owner will have answered at the latest
}

// Lookup sends req to every node about one workload and returns the owner's answer,
// decoded into resp. The owner acknowledges at once (the request asks it to) with a
// deadline derived from what it has to do (a stop's grace period), and from then on only
// its answer ends the wait: other nodes' 404s and the straggler bound cannot turn a slow
// owner into "not found". Without an acknowledgement, 404 from every node the answers
// name alive is not_found; when some of those never answer, the lookup ends at its
// deadline with 503 unavailable naming them (one of them may have it); no responders at
// all is ErrNoResponders. straggler is not used (a lookup does not guess). onAck, when
// set, is told of the acknowledgement (progress for people). A workload that moved while
// the nodes answered (one named as its holder a node that had already said 404) is looked
// up again, up to three times: requests about one workload are idempotent.
func Lookup(ctx context.Context, nc *natsconn.Conn, subject string, req, resp any, _ time.Duration, onAck func(Ack)) error {
	for attempt := 1; ; attempt++ {
		err := lookupOnce(ctx, nc, subject, req, resp, onAck)
		if !errors.Is(err, errMoved) {
			return err
		}
		if attempt == 3 {
			return v1.Errorf(v1.CodeUnavailable, "the workload moved between nodes while they answered, three times: nothing may have been done; try again")
		}
	}
}

// errMoved says a lookup's answers disagree because the workload moved meanwhile.
var errMoved = errors.New("moved during the lookup")

func lookupOnce(ctx context.Context, nc *natsconn.Conn, subject string, req, resp any, onAck func(Ack)) error {
	denied, check := violations(nc)
	ch, unsub, err := publishForReplies(nc, subject, nats.Header{v1.HeaderAck: []string{"1"}}, req)
	if err != nil {
		return err
	}
	defer unsub()
	first := answerTimer(ctx)
	defer first.Stop()
	l := lookupState{peers: newPeerSet(), down: map[string]string{}, stopping: map[string]bool{}}
	for {
		select {
		case <-denied:
			if perr := check(subject); perr != nil {
				return perr
			}
			denied, _ = violations(nc)
		case <-ctx.Done():
			return mapRequestError(subject, ctx.Err())
		case <-first.C:
			if l.acked {
				return v1.Errorf(v1.CodeTimeout, "node %s acknowledged but did not answer by %s on %s", l.owner, l.deadline.Format(time.RFC3339), subject)
			}
			if missing := l.peers.missing(); len(l.peers.answered) > 0 && len(missing) > 0 {
				// a node the others name alive may have it (its nexd restarting, or cut off):
				// "not found" would be a guess, and was wrong every time a chaos run made it
				return v1.Errorf(v1.CodeUnavailable, "the %d node(s) that answered do not have it; %s, which they name alive, did not answer in time and may have it: nothing was done, try again", len(l.peers.answered), nodeList(missing))
			}
			if len(l.peers.answered) > 0 {
				return l.notFound()
			}
			return mapRequestError(subject, context.DeadlineExceeded)
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				return ErrNoResponders
			}
			done, err := l.take(m, resp, onAck)
			if done {
				return err
			}
			if l.acked {
				first.Reset(time.Until(l.deadline) + 2*time.Second) // the owner's word, with room for the reply
			} else if l.peers.complete() {
				return l.notFound()
			}
		}
	}
}

// lookupState is what a lookup has heard so far.
type lookupState struct {
	peers    *peerSet
	down     map[string]string // nodes whose records hold it, which the others do not hear: the node that said so
	stopping map[string]bool   // of those, the ones whose record says stop (a stop recorded while it was away)
	moved    bool              // a node named as its holder one that had said 404 already
	unsure   string            // why a node that said 404 could not say who holds it
	acked    bool
	owner    string
	deadline time.Time
}

// take handles one message: an acknowledgement, a 404, or the answer (done).
func (l *lookupState) take(m *nats.Msg, resp any, onAck func(Ack)) (done bool, err error) {
	id := m.Header.Get(v1.HeaderNodeID)
	if dl := m.Header.Get(v1.HeaderAck); dl != "" && len(m.Data) == 0 {
		t, perr := time.Parse(time.RFC3339Nano, dl)
		if perr != nil {
			t = time.Now().Add(LookupWait)
		}
		if !l.acked || t.After(l.deadline) {
			l.acked, l.owner, l.deadline = true, id, t
			if onAck != nil {
				onAck(Ack{NodeID: id, Deadline: t})
			}
		}
		return false, nil
	}
	err = DecodeReply(m.Header, m.Data, resp)
	if d, ok := v1.AsError(err).Details.(map[string]any); ok && d["moved_to"] != nil {
		return true, errMoved // it was taken over as it answered: ask its new node
	}
	if !v1.IsNotFound(err) || (l.acked && id == l.owner) { // the owner's 404 is its answer
		return true, err
	}
	l.peers.heard(m)
	if d, ok := v1.AsError(err).Details.(map[string]any); ok {
		if why, ok := d["owner_unknown"].(string); ok && why != "" {
			l.unsure = why
		}
		if owner, ok := d["owner"].(string); ok && owner != "" && owner != id {
			if l.peers.answered[owner] {
				l.moved = true // it said 404 already: the workload moved meanwhile
			} else if d["owner_alive"] == "false" {
				l.down[owner] = id // its record says it has it, and it is not heard from
				l.stopping[owner] = d["owner_desired"] == "stopping"
			} else {
				l.peers.expected[owner] = true // its record says it has it: wait for its word
			}
		}
	}
	return false, nil
}

// nodeList names nodes for a message: "node X", or "nodes X, Y".
func nodeList(ids []string) string {
	if len(ids) == 1 {
		return "node " + ids[0]
	}
	return "nodes " + strings.Join(ids, ", ")
}

// notFound is what a lookup says when every node it waits for answered 404: not_found
// (the caller replaces the message), unless the records name a node that holds it and is
// not heard from (stopped, lost, paused or cut off), or a node could not read the records
// to say (the state store unavailable): then 503, naming it or saying why.
func (l *lookupState) notFound() error {
	if l.moved {
		return errMoved
	}
	if len(l.down) > 0 {
		var ids []string
		for id := range l.down {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		e := v1.Errorf(v1.CodeUnavailable, "its record is on %s, which the other nodes do not hear from (stopped, lost or cut off): nothing was done; try again once it is back, or once the cluster has moved its workloads", nodeList(ids))
		if l.stopping[ids[0]] {
			e = v1.Errorf(v1.CodeUnavailable, "its record is on %s, which the other nodes do not hear from (stopped, lost or cut off), and says stop: a stop was recorded, and is done as soon as that node is back (nothing starts it elsewhere)", nodeList(ids))
		}
		e.Details = map[string]string{DetailOwnerDown: ids[0], DetailToldBy: l.down[ids[0]]}
		return e
	}
	if l.unsure != "" {
		return v1.Errorf(v1.CodeUnavailable, "the nodes that answered do not have it, and could not read the state store to say which node does (%s): nothing was done; try again", l.unsure)
	}
	return v1.NotFound("not found") // replaced by the caller's message
}
