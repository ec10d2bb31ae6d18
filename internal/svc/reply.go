package svc

import (
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// NATS checks who may publish to a subject, never the reply subject a message carries:
// a tenant that sent its own namespace's USAGE with the reply subject set to the system
// namespace's LAMEDUCK of a node had the node itself publish its answer there, and the
// node took it for the operator's lameduck (a review's walk: every workload of every
// namespace stopped). An endpoint answers only a reply subject that is an inbox: its
// first token starts with _INBOX (a user's _INBOX_<name>, a workload's _INBOX_NEXW_<ns>,
// the default _INBOX) or _NEXNODE_ (a node's, asking its nexlets). Anything else is
// dropped unanswered, and said in the log once a minute.

// InboxReply tells whether reply is a subject an endpoint may answer on.
func InboxReply(reply string) bool {
	return strings.HasPrefix(reply, "_INBOX") || strings.HasPrefix(reply, v1.NodeInboxPrefix(""))
}

// foreignReplies says, once a minute at most, that requests with other reply subjects
// were dropped.
type foreignReplies struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (f *foreignReplies) drop(log *zap.Logger, endpoint, subject, reply string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropped++
	if time.Since(f.last) < time.Minute {
		return
	}
	log.Warn("dropped requests whose reply subject is not an inbox (a client's inbox prefix must start with _INBOX; one that names another subject would have this node publish there)",
		zap.String("endpoint", endpoint), zap.String("subject", subject), zap.String("reply", reply), zap.Int("dropped", f.dropped))
	f.last, f.dropped = time.Now(), 0
}
