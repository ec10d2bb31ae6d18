package svc

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
)

// The details of Lookup's 503 for a workload whose record is on a node the others do not
// hear from: that node, and a node that said so (which a stop can ask to record the stop
// on that node's record: HeaderStopAway).
const (
	DetailOwnerDown = "owner_down"
	DetailToldBy    = "told_by"
)

// HeaderStopAway, on a STOP, asks the node HeaderRecorder names to record the stop on the
// record of the node it names, which the nodes do not hear from; the other nodes answer
// 404 (docs/api-v1.md).
const (
	HeaderStopAway = "Nex-Stop-Away"
	HeaderRecorder = "Nex-Recorder"
)

// OwnerDown reads Lookup's 503 for a workload whose record is on a node the others do
// not hear from: that node, and the node that said so.
func OwnerDown(err error) (owner, toldBy string, ok bool) {
	d, _ := v1.AsError(err).Details.(map[string]string)
	owner, toldBy = d[DetailOwnerDown], d[DetailToldBy]
	return owner, toldBy, err != nil && owner != "" && toldBy != ""
}

// AskNode sends req with headers on subject, which every node receives, and returns the
// answer of node alone, decoded into resp (the others' are not waited for); it waits
// until ctx ends, or LookupWait without a deadline.
func AskNode(ctx context.Context, nc *natsconn.Conn, subject, node string, headers nats.Header, req, resp any) error {
	ch, unsub, err := publishForReplies(nc, subject, headers, req)
	if err != nil {
		return err
	}
	defer unsub()
	wait := answerTimer(ctx)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return mapRequestError(subject, ctx.Err())
		case <-wait.C:
			return v1.Errorf(v1.CodeTimeout, "node %s did not answer in time on %s: nothing may have been done; try again", node, subject)
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				return ErrNoResponders
			}
			if m.Header.Get(v1.HeaderNodeID) == node && (len(m.Data) > 0 || m.Header.Get(v1.HeaderAck) == "") {
				return DecodeReply(m.Header, m.Data, resp)
			}
		}
	}
}

// publishForReplies publishes req with headers on subject, its replies to an inbox of its
// own, and returns them as they come, with what unsubscribes from them.
func publishForReplies(nc *natsconn.Conn, subject string, headers nats.Header, req any) (<-chan *nats.Msg, func(), error) {
	_, _, data, err := prepare(context.Background(), req)
	if err != nil {
		return nil, nil, err
	}
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, nil, err
	}
	unsub := func() { _ = sub.Unsubscribe() }
	if err := nc.PublishMsg(&nats.Msg{Subject: subject, Reply: inbox, Data: data, Header: headers}); err != nil {
		unsub()
		return nil, nil, err
	}
	return ch, unsub, nil
}

// answerTimer fires at ctx's deadline, or after LookupWait when ctx has none.
func answerTimer(ctx context.Context) *time.Timer {
	if dl, ok := ctx.Deadline(); ok {
		return time.NewTimer(time.Until(dl))
	}
	return time.NewTimer(LookupWait)
}
