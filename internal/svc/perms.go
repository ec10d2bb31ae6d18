package svc

import (
	"cmp"
	"strings"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
)

// violations returns a channel closed at the next permission violation the server reports
// on nc (see natsconn.Watch), and a check for whether the latest one concerns subject or
// the replies' inbox.
func violations(nc *natsconn.Conn) (<-chan struct{}, func(subject string) error) {
	next, last := nc.Denials()
	return next, func(subject string) error {
		l := last()
		if err := PublishDenied(subject, l); err != nil {
			return err
		}
		// the replies' inbox: no answer could ever arrive, so say so now, not at the timeout
		if inbox := cmp.Or(nc.Opts.InboxPrefix, nats.InboxPrefix); strings.Contains(l, "Subscription") && strings.Contains(l, `"`+strings.TrimSuffix(inbox, ".")+".") {
			return v1.Errorf(v1.CodeForbidden, "permission denied: this NATS user may not subscribe to its replies' inbox %s.> (%s): give it that right, or the prefix it may subscribe to with --nats.inbox-prefix (a user made by nex security user has _INBOX_<name>)", strings.TrimSuffix(inbox, "."), l)
		}
		return nil
	}
}

// PublishDenied is the error for a publish to subject when last, the server's latest
// permission violation on the connection, is about it (nil otherwise).
func PublishDenied(subject, last string) error {
	if strings.Contains(last, `"`+subject+`"`) {
		return v1.Errorf(v1.CodeForbidden, "permission denied: this NATS user may not publish to %s (%s)", subject, last)
	}
	return nil
}
