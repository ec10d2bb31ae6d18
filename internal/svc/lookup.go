package svc

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
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
// owner into "not found". Without an acknowledgement, 404 from every live node (or from
// those that answered within the straggler bound) is not_found; no responders at all is
// ErrNoResponders. onAck, when set, is told of the acknowledgement (progress for people).
func Lookup(ctx context.Context, nc *nats.Conn, subject string, req, resp any, straggler time.Duration, onAck func(Ack)) error {
	_, _, data, err := prepare(context.Background(), req)
	if err != nil {
		return err
	}
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	denied, check := violations(nc)
	msg := &nats.Msg{Subject: subject, Reply: inbox, Data: data, Header: nats.Header{v1.HeaderAck: []string{"1"}}}
	if err := nc.PublishMsg(msg); err != nil {
		return err
	}
	first := time.NewTimer(LookupWait)
	if dl, ok := ctx.Deadline(); ok {
		first.Reset(time.Until(dl))
	}
	defer first.Stop()
	l := lookupState{peers: newPeerSet()}
	var stragglerC <-chan time.Time
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
				return v1.NewError(504, v1.CodeTimeout, "node %s acknowledged but did not answer by %s on %s", l.owner, l.deadline.Format(time.RFC3339), subject)
			}
			if len(l.peers.answered) > 0 {
				return v1.NotFound("not found") // replaced by the caller's message
			}
			return mapRequestError(subject, context.DeadlineExceeded)
		case <-stragglerC:
			if !l.acked {
				return v1.NotFound("not found")
			}
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
				stragglerC = nil
			} else if l.peers.complete() {
				return v1.NotFound("not found")
			} else if stragglerC == nil {
				t := time.NewTimer(straggler)
				defer t.Stop()
				stragglerC = t.C
			}
		}
	}
}

// lookupState is what a lookup has heard so far.
type lookupState struct {
	peers    *peerSet
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
	if !v1.IsNotFound(err) || (l.acked && id == l.owner) { // the owner's 404 is its answer
		return true, err
	}
	l.peers.heard(m)
	return false, nil
}
