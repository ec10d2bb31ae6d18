package svc

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
)

// DefaultTimeout bounds a request when the context has no deadline.
const DefaultTimeout = 10 * time.Second

// Call sends req as JSON to subject and decodes the reply into resp. No responders is
// reported as 503 unavailable at once, so a missing service never looks like a hang.
func Call(ctx context.Context, nc *natsconn.Conn, subject string, req, resp any) error {
	return CallWaiting(ctx, nc, subject, req, resp, 0)
}

// CallWaiting is Call that, for up to wait, asks again while nothing is listening: for a
// peer that is known to exist but may be between connections (reconnecting with renewed
// credentials, or restarting). No responders means no one received the request, so
// asking again never runs it twice.
func CallWaiting(ctx context.Context, nc *natsconn.Conn, subject string, req, resp any, wait time.Duration) error {
	ctx, cancel, data, err := prepare(ctx, req)
	if err != nil {
		return err
	}
	defer cancel()
	until := time.Now().Add(wait)
	for {
		err := call(ctx, nc, subject, data, resp)
		if !errors.Is(err, nats.ErrNoResponders) || !time.Now().Before(until) {
			return mapRequestError(subject, err)
		}
		select {
		case <-ctx.Done():
			return mapRequestError(subject, err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func call(ctx context.Context, nc *natsconn.Conn, subject string, data []byte, resp any) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	denied, check := violations(nc)
	type result struct {
		msg *nats.Msg
		err error
	}
	done := make(chan result, 1)
	go func() {
		msg, err := nc.RequestWithContext(ctx, subject, data)
		done <- result{msg, err}
	}()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				if perr := check(subject); perr != nil {
					return perr
				}
				return r.err
			}
			return DecodeReply(r.msg.Header, r.msg.Data, resp)
		case <-denied:
			if perr := check(subject); perr != nil {
				cancel()
				return perr
			}
			denied, _ = violations(nc)
		}
	}
}

// prepare encodes req and gives ctx the default deadline when it has none.
func prepare(ctx context.Context, req any) (context.Context, context.CancelFunc, []byte, error) {
	var data []byte
	switch r := req.(type) {
	case nil:
	case []byte:
		data = r
	default:
		b, err := json.Marshal(req)
		if err != nil {
			return ctx, func() {}, nil, err
		}
		data = b
	}
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}, data, nil
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	return ctx, cancel, data, nil
}

func mapRequestError(subject string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrNoResponders):
		return v1.Errorf(v1.CodeUnavailable, "nothing is listening on %s", subject)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return v1.Errorf(v1.CodeTimeout, "no reply on %s in time", subject)
	}
	return err
}

// Reply is one answer collected by FanOut.
type Reply struct {
	NodeID string
	Data   []byte
	Header nats.Header
}

// Decode decodes the reply (or its micro error) into resp.
func (r Reply) Decode(resp any) error { return DecodeReply(r.Header, r.Data, resp) }

// Body is the reply's JSON, unzipped, or the error it carries (ReplyBody).
func (r Reply) Body() ([]byte, error) { return ReplyBody(r.Header, r.Data) }

// FanOut publishes req to subject and collects replies until every node named in the
// replies' peer lists has answered, done returns true, or the straggler bound passes
// after the first reply. With no responders at all it returns ErrNoResponders at once.
func FanOut(ctx context.Context, nc *natsconn.Conn, subject string, req any, straggler time.Duration, done func(Reply) bool) error {
	_, err := FanOutMissing(ctx, nc, subject, req, straggler, done)
	return err
}

// FanOutMissing is FanOut that also returns the nodes the answers named as alive but that
// had not answered when it stopped waiting (sorted): what it collected lacks theirs.
func FanOutMissing(ctx context.Context, nc *natsconn.Conn, subject string, req any, straggler time.Duration, done func(Reply) bool) (missing []string, err error) {
	ctx, cancel, data, err := prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	defer cancel()
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	denied, check := violations(nc)
	if err := nc.PublishRequest(subject, inbox, data); err != nil {
		return nil, err
	}
	peers := newPeerSet()
	var stragglerC <-chan time.Time
	for {
		select {
		case <-denied:
			if perr := check(subject); perr != nil {
				return nil, perr
			}
			denied, _ = violations(nc)
		case <-ctx.Done():
			if len(peers.answered) == 0 {
				return nil, mapRequestError(subject, ctx.Err())
			}
			return peers.missing(), nil
		case <-stragglerC:
			return peers.missing(), nil
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				return nil, ErrNoResponders
			}
			id := peers.heard(m)
			if done(Reply{NodeID: id, Data: m.Data, Header: m.Header}) {
				return nil, nil
			}
			if peers.complete() {
				return nil, nil
			}
			if stragglerC == nil {
				t := time.NewTimer(straggler)
				defer t.Stop()
				stragglerC = t.C
			}
		}
	}
}

// peerSet is what a fan-out has heard: the nodes that answered, and every node the
// answers named as alive (Nex-Peers), which it waits for.
type peerSet struct {
	expected, answered map[string]bool
}

func newPeerSet() *peerSet {
	return &peerSet{expected: map[string]bool{}, answered: map[string]bool{}}
}

// heard records an answer and the peers it names, and returns who answered.
func (s *peerSet) heard(m *nats.Msg) string {
	id := m.Header.Get(v1.HeaderNodeID)
	s.answered[id], s.expected[id] = true, true
	for _, p := range strings.Split(m.Header.Get(v1.HeaderPeers), ",") {
		if p != "" {
			s.expected[p] = true
		}
	}
	return id
}

// complete tells whether every node named so far has answered.
// missing lists the expected nodes that have not answered, sorted.
func (s *peerSet) missing() []string {
	var out []string
	for id := range s.expected {
		if !s.answered[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func (s *peerSet) complete() bool {
	if len(s.answered) < len(s.expected) {
		return false
	}
	for id := range s.expected {
		if !s.answered[id] {
			return false
		}
	}
	return true
}
