package nexlet

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// History batches are published with a reply subject, so JetStream's acknowledgement
// (or its refusal: out of space, a stream limit) comes back. A refused batch's lines are
// counted as dropped, and the workload gets a logs_dropped event (at most one per
// historyEventEvery) saying so: the history never loses lines in silence.

// historyEventEvery bounds how often one workload is told of refused history lines.
const historyEventEvery = 5 * time.Second

// historyAckWait is how long an unacknowledged batch is tracked before it is forgotten
// (its acknowledgement was lost; nothing is known of it).
const historyAckWait = 30 * time.Second

type historyBatch struct {
	ns, wid string
	lines   uint64
	sent    time.Time
}

// historyAcks tracks the history batches of one Feed awaiting acknowledgement.
type historyAcks struct {
	mu      sync.Mutex
	sub     *nats.Subscription
	prefix  string
	seq     uint64
	pending map[string]historyBatch
	told    map[string]time.Time // workload -> last logs_dropped event for the history
	owed    map[string]uint64    // workload -> dropped lines not told yet
	swept   time.Time
}

// historyReply returns the reply subject for a batch of lines of workload ns/wid, or ""
// when acknowledgements cannot be had (the connection cannot subscribe).
func (f *Feed) historyReply(ns, wid string, lines int) string {
	h := &f.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sub == nil {
		h.prefix = f.nc.NewRespInbox() + "."
		sub, err := f.nc.Subscribe(h.prefix+"*", f.onHistoryAck)
		if err != nil {
			return ""
		}
		h.sub, h.pending, h.told, h.owed = sub, map[string]historyBatch{}, map[string]time.Time{}, map[string]uint64{}
	}
	now := time.Now()
	if now.Sub(h.swept) > historyAckWait {
		for k, b := range h.pending {
			if now.Sub(b.sent) > historyAckWait {
				delete(h.pending, k)
			}
		}
		h.swept = now
	}
	h.seq++
	token := strconv.FormatUint(h.seq, 36)
	h.pending[token] = historyBatch{ns: ns, wid: wid, lines: uint64(lines), sent: now}
	return h.prefix + token
}

// onHistoryAck settles one batch: stored, refused (its lines count as dropped), or not
// stored because there is no history stream at all (history off: nothing is lost).
func (f *Feed) onHistoryAck(m *nats.Msg) {
	h := &f.hist
	token, ok := strings.CutPrefix(m.Subject, h.prefix)
	if !ok { // not an ack of ours (the subscription is on the prefix: cannot happen)
		return
	}
	h.mu.Lock()
	b, ok := h.pending[token]
	delete(h.pending, token)
	h.mu.Unlock()
	if !ok || (len(m.Data) == 0 && m.Header.Get("Status") == "503") { // no stream: history is off
		return
	}
	var ack struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if json.Unmarshal(m.Data, &ack) != nil || ack.Error == nil {
		return
	}
	f.historyDropped.Add(b.lines)
	f.dropped.Add(b.lines)
	key := b.ns + "/" + b.wid
	h.mu.Lock()
	h.owed[key] += b.lines
	owed := h.owed[key]
	due := time.Since(h.told[key]) >= historyEventEvery
	if due {
		h.told[key], h.owed[key] = time.Now(), 0
	}
	h.mu.Unlock()
	if f.OnHistoryDrop != nil {
		f.OnHistoryDrop(b.ns, b.wid, b.lines, ack.Error.Description)
	}
	if due {
		f.Event(v1.Event{Type: v1.EventLogsDropped, Namespace: b.ns, WorkloadID: b.wid,
			Message: "the log history refused lines: " + ack.Error.Description,
			Data:    map[string]any{"lines": owed, "where": "history", "reason": ack.Error.Description}})
	}
}
