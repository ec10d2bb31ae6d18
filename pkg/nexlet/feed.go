package nexlet

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// MaxLineBytes is the longest log line sent as one message; longer lines are cut into
// pieces, each but the last marked with the Nex-Continued header.
const MaxLineBytes = 64 * 1024

// HeaderContinued marks a piece of an over-long line that continues in the next message.
const HeaderContinued = v1.HeaderContinued

// MaxHistoryBatchBytes bounds one history message (less when the server's max_payload is
// smaller).
const MaxHistoryBatchBytes = 512 * 1024

// MaxLiveBatchBytes bounds one live message of a burst of lines.
const MaxLiveBatchBytes = 64 * 1024

// Feed publishes a workload's logs and events on the $NEX.FEED subjects.
type Feed struct {
	nc      *nats.Conn
	nodeID  string
	lines   atomic.Uint64
	dropped atomic.Uint64
	// historyDropped counts lines the history stream refused (also in dropped).
	historyDropped atomic.Uint64
	hist           historyAcks
	// OnHistoryDrop, when set, is told of each batch of lines the history refused (for
	// the nexlet's log). Set it before the first LineWriter.
	OnHistoryDrop func(ns, wid string, lines uint64, reason string)
	// OutputRate, when above 0, bounds the bytes a second each LineWriter takes, a line
	// counting lineOverhead more (a burst of a second's worth passes at once): past it,
	// Write waits, so the workload's writes block as on a full pipe. The nexlet's CPU for
	// a workload's output is the node's, outside the workload's own limits (one `yes`
	// made nexlet-native use 1.25 cores). Set it before the first LineWriter.
	OutputRate int64
	paced      atomic.Int64 // nanoseconds LineWriters waited for OutputRate
}

// Stats are the feed's totals: log lines published and dropped, for heartbeats and metrics.
func (f *Feed) Stats() map[string]uint64 {
	return map[string]uint64{"log_lines": f.lines.Load(), "log_lines_dropped": f.dropped.Load(), "log_lines_history_dropped": f.historyDropped.Load(),
		"log_paced_ms": uint64(f.paced.Load() / int64(time.Millisecond))}
}

// NewFeed returns a Feed publishing on nc; nodeID is stamped on events.
func NewFeed(nc *nats.Conn, nodeID string) *Feed { return &Feed{nc: nc, nodeID: nodeID} }

// Event publishes ev on $NEX.FEED.<ns>.event.<wid>, filling in time and node.
func (f *Feed) Event(ev v1.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if ev.NodeID == "" {
		ev.NodeID = f.nodeID
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	_ = f.nc.Publish(v1.EventSubject(ev.Namespace, ev.WorkloadID), b)
}

// EndAfter publishes the end of a run's output once writers (closed) have published every
// line they had, or at most endWait later: Close waits only a few seconds, and a follower
// stops reading at the end (a million lines under load took longer, and 55% were cut off).
func (f *Feed) EndAfter(ns, wid string, end v1.LogEnd, writers ...*LineWriter) {
	go func() {
		t := time.NewTimer(endWait)
		defer t.Stop()
		for _, w := range writers {
			select {
			case <-w.Done():
			case <-t.C:
			}
		}
		f.End(ns, wid, end)
	}()
}

// endWait bounds how long the end of a run's output waits for its lines.
const endWait = 2 * time.Minute

// End publishes the end of a run's output of workload ns/wid, on its live and its history
// subject: call it once every line of the run was published, so that it follows them.
func (f *Feed) End(ns, wid string, end v1.LogEnd) {
	b, err := json.Marshal(end)
	if err != nil {
		return
	}
	h := nats.Header{v1.HeaderEnd: []string{"true"}}
	_ = f.nc.PublishMsg(&nats.Msg{Subject: v1.LogSubject(ns, wid), Header: h, Data: b})
	_ = f.nc.PublishMsg(&nats.Msg{Subject: v1.LogHistorySubject(ns, wid), Header: h, Data: b})
}

// MaxQueueBytes bounds the output a LineWriter holds while NATS is slow. When it is full,
// Write waits for the publisher to take the queue (the workload's writes block, as on a
// full pipe), so a burst costs time, not lines.
const MaxQueueBytes = 8 << 20

// lineOverhead is what each queued line costs beyond its bytes (its entry, and its start
// in a batch), counted against MaxQueueBytes: empty lines cost nothing against a bound of
// bytes alone, and a tenant's flood of them grew nexlet-native by gigabytes, until the
// kernel's OOM killer took the nexlet and every namespace's workloads with it.
const lineOverhead = 32

// spareKeep bounds the buffers a quiet LineWriter keeps: a burst's big ones go back to
// the collector once its lines are out, not stay with a workload that has gone quiet (a
// flood keeps reusing them).
const spareKeep = 1 << 20

// shrink lets go of buffers over spareKeep. Caller holds w.mu, with the queue empty.
func (w *LineWriter) shrink() {
	if cap(w.queue) > spareKeep || cap(w.entries)*lineOverhead > spareKeep {
		w.queue, w.entries = nil, nil
	}
	if cap(w.spare) > spareKeep || cap(w.spareEnts)*lineOverhead > spareKeep {
		w.spare, w.spareEnts = nil, nil
	}
}

// DefaultMaxBlock bounds that wait: a publisher that takes nothing for this long is stuck
// (a connection that does not drain), and lines are dropped and counted until it moves
// again, so a workload is never held up by its logging for longer.
const DefaultMaxBlock = 5 * time.Second

// LineWriter returns a writer that publishes one message per line of output on
// $NEX.FEED.<ns>.logs.<wid>, with Nex-Stream set to stream. Close flushes a partial line
// and waits (briefly) for queued lines to be published.
func (f *Feed) LineWriter(ns, wid, stream string) *LineWriter {
	w := &LineWriter{feed: f, nc: f.nc, ns: ns, wid: wid, subject: v1.LogSubject(ns, wid), history: v1.LogHistorySubject(ns, wid), stream: stream,
		done: make(chan struct{}), freed: make(chan struct{}), MaxBlock: DefaultMaxBlock, rate: f.OutputRate, closing: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// LineWriter splits a byte stream into lines and publishes each one from its own
// goroutine: a slow connection holds the writer up (MaxBlock at most), a stuck one costs
// dropped lines (counted). Each batch of lines it publishes live, one message per line, it publishes
// again as one history message for the NEX_LOGS stream.
type LineWriter struct {
	feed    *Feed
	nc      *nats.Conn
	ns, wid string
	subject string
	history string
	hist    []byte // history batch being built
	live    []byte // live batch being built
	stream  string
	done    chan struct{}
	// Tee, when set, receives each published line too (nexd's --show-workload-logs).
	// Set it before the first Write.
	Tee func(stream string, line []byte)
	// MaxBlock is how long Write waits for room in a full queue (DefaultMaxBlock). Set
	// it before the first Write.
	MaxBlock time.Duration

	mu         sync.Mutex
	cond       *sync.Cond
	partial    []byte
	queue      []byte  // queued lines, back to back
	entries    []entry // where each queued line ends
	spare      []byte
	spareEnts  []entry
	closed     bool
	publishing bool          // publishLoop runs (from the first line on)
	writing    bool          // a Write is in progress (it may be waiting for room)
	freed      chan struct{} // closed when the publisher takes the queue
	stuck      bool          // a wait for room timed out: drop until the publisher moves
	published  uint64
	dropped    uint64
	rate       int64         // Feed.OutputRate
	credit     float64       // bytes the rate lets through now (below 0: a debt to wait out)
	creditAt   time.Time     // when credit was last counted
	closing    chan struct{} // closed by Close: a Write waiting out the rate returns
}

type entry struct {
	end       int
	continued bool
}

// Write queues every complete line in p and keeps the rest for the next call.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writing = true
	n, p0 := len(p), p
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			for len(w.partial) >= MaxLineBytes {
				w.enqueue(w.partial[:MaxLineBytes], true)
				w.partial = append(w.partial[:0], w.partial[MaxLineBytes:]...)
			}
			break
		}
		line := p[:i]
		if len(w.partial) > 0 {
			w.partial = append(w.partial, line...)
			line = w.partial
		}
		for len(line) > MaxLineBytes {
			w.enqueue(line[:MaxLineBytes], true)
			line = line[MaxLineBytes:]
		}
		w.enqueue(line, false)
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	w.writing = false
	wait := w.debt(p0)
	w.mu.Unlock()
	w.cond.Signal()
	if wait > 0 {
		w.pace(wait)
	}
	return n, nil
}

// debt counts p against the writer's rate and says how long to wait before taking
// more (0: no wait). Caller holds w.mu.
func (w *LineWriter) debt(p []byte) time.Duration {
	if w.rate <= 0 {
		return 0
	}
	now := time.Now()
	if w.creditAt.IsZero() {
		w.credit = float64(w.rate)
	} else {
		w.credit = min(w.credit+now.Sub(w.creditAt).Seconds()*float64(w.rate), float64(w.rate))
	}
	w.creditAt = now
	w.credit -= float64(len(p) + bytes.Count(p, []byte{'\n'})*lineOverhead)
	if w.credit >= 0 {
		return 0
	}
	return time.Duration(-w.credit / float64(w.rate) * float64(time.Second))
}

// pace waits d (or until Close), holding up the workload's writes.
func (w *LineWriter) pace(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.closing:
	}
	w.feed.paced.Add(int64(d))
}

// enqueue appends one line to the queue. When the queue is full it waits for room, or
// counts the line as dropped when the publisher is stuck or the writer closed. Caller
// holds w.mu (released while waiting).
func (w *LineWriter) enqueue(line []byte, continued bool) {
	if !w.publishing { // the first line: a quiet workload costs no publisher goroutine
		w.publishing = true
		go w.publishLoop()
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	for len(w.queue)+len(line)+(len(w.entries)+1)*lineOverhead > MaxQueueBytes {
		if w.stuck || w.closed || !w.waitForRoom() {
			w.dropped++
			w.feed.dropped.Add(1)
			return
		}
	}
	w.queue = append(w.queue, line...)
	w.entries = append(w.entries, entry{end: len(w.queue), continued: continued})
}

// waitForRoom wakes the publisher and waits until it takes the queue (true) or MaxBlock
// passes (false: the publisher is stuck). Caller holds w.mu.
func (w *LineWriter) waitForRoom() bool {
	freed := w.freed
	w.mu.Unlock()
	w.cond.Signal()
	t := time.NewTimer(w.MaxBlock)
	var ok bool
	select {
	case <-freed:
		ok = true
	case <-t.C:
	}
	t.Stop()
	w.mu.Lock()
	if !ok {
		w.stuck = true
	}
	return ok
}

func (w *LineWriter) publishLoop() {
	defer close(w.done)
	plain := nats.Header{v1.HeaderStream: []string{w.stream}}
	cont := nats.Header{v1.HeaderStream: []string{w.stream}, HeaderContinued: []string{"true"}}
	msg := &nats.Msg{Subject: w.subject}
	for {
		w.mu.Lock()
		if len(w.entries) == 0 {
			w.shrink() // quiet now: a burst's buffers go
		}
		for len(w.entries) == 0 && !w.closed {
			w.cond.Wait()
		}
		if len(w.entries) == 0 && w.closed {
			w.mu.Unlock()
			return
		}
		// Swap buffers: the writer fills the spare ones while these are published.
		buf, ents := w.queue, w.entries
		w.queue, w.entries = w.spare[:0], w.spareEnts[:0]
		close(w.freed)
		w.freed, w.stuck = make(chan struct{}), false
		w.mu.Unlock()

		lost := w.publishLive(msg, plain, cont, buf, ents)
		w.publishHistory(buf, ents)

		w.feed.lines.Add(uint64(len(ents)) - lost)
		w.mu.Lock()
		w.published += uint64(len(ents)) - lost
		w.dropped += lost
		w.feed.dropped.Add(lost)
		w.spare, w.spareEnts = buf, ents
		w.mu.Unlock()
	}
}

// publishLive publishes the queued lines live and says how many were lost: a line alone
// as one message (slow output goes out as it comes, with no added delay), a burst of
// whole lines as few messages (up to MaxLiveBatchBytes, v1.HeaderLines saying how many),
// each piece of a cut line alone with v1.HeaderContinued.
func (w *LineWriter) publishLive(msg *nats.Msg, plain, cont nats.Header, buf []byte, ents []entry) uint64 {
	limit := MaxLiveBatchBytes
	if mp := int(w.nc.MaxPayload()) - 1024; mp > 0 && mp < limit {
		limit = mp
	}
	var lost uint64
	send := func(data []byte, h nats.Header, lines int) {
		msg.Data, msg.Header = data, h
		if w.nc.PublishMsg(msg) != nil { // the reconnect buffer is full, or the connection closed
			lost += uint64(lines)
		}
	}
	starts := make([]int, len(ents)+1) // line i is buf[starts[i]:ents[i].end]
	for i, e := range ents {
		starts[i+1] = e.end
		if w.Tee != nil {
			w.Tee(w.stream, buf[starts[i]:e.end])
		}
	}
	for i := 0; i < len(ents); {
		if ents[i].continued {
			send(buf[starts[i]:ents[i].end], cont, 1)
			i++
			continue
		}
		j, size := i+1, ents[i].end-starts[i]+1
		for j < len(ents) && !ents[j].continued && size+ents[j].end-starts[j]+1 <= limit {
			size += ents[j].end - starts[j] + 1
			j++
		}
		if j == i+1 {
			send(buf[starts[i]:ents[i].end], plain, 1)
			i = j
			continue
		}
		body := w.live[:0]
		for k := i; k < j; k++ {
			body = append(append(body, buf[starts[k]:ents[k].end]...), '\n')
		}
		send(body, nats.Header{v1.HeaderStream: plain[v1.HeaderStream], v1.HeaderLines: []string{strconv.Itoa(j - i)}}, j-i)
		w.live, i = body, j
	}
	if cap(w.live) > 64<<10 {
		w.live = nil
	}
	return lost
}

// publishHistory publishes the lines of one batch as few history messages: each line
// followed by '\n', the pieces of cut lines listed in a header.
func (w *LineWriter) publishHistory(buf []byte, ents []entry) {
	limit := MaxHistoryBatchBytes
	if mp := int(w.nc.MaxPayload()) - 1024; mp > 0 && mp < limit {
		limit = mp
	}
	body := w.hist[:0]
	var cont []string
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		h := nats.Header{v1.HeaderStream: []string{w.stream}}
		if len(cont) > 0 {
			h[v1.HeaderContinuedLines] = []string{strings.Join(cont, ",")}
		}
		_ = w.nc.PublishMsg(&nats.Msg{Subject: w.history, Reply: w.feed.historyReply(w.ns, w.wid, n), Header: h, Data: body})
		body, cont, n = body[:0], cont[:0], 0
	}
	start := 0
	for _, e := range ents {
		line := buf[start:e.end]
		start = e.end
		if len(body)+len(line)+1 > limit {
			flush()
		}
		if e.continued {
			cont = append(cont, strconv.Itoa(n))
		}
		body = append(body, line...)
		body = append(body, '\n')
		n++
	}
	flush()
	if cap(body) <= 64<<10 { // a burst's big buffer is not kept for a quiet workload
		w.hist = body
	} else {
		w.hist = nil
	}
}

// Lines is the number of messages published so far.
func (w *LineWriter) Lines() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.published
}

// Done is closed once every line queued before Close is published (or dropped).
func (w *LineWriter) Done() <-chan struct{} { return w.done }

// Dropped is the number of lines dropped because the queue was full.
func (w *LineWriter) Dropped() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// closeWait bounds how long Close waits for queued lines to be published.
const closeWait = 5 * time.Second

// Close queues a trailing partial line, if any, and waits until the queue is published
// (at most a few seconds: a stuck connection must not hold up a workload's exit).
func (w *LineWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	// a Write still waiting for room (its process gone, its pipe closed) owns the partial line
	if len(w.partial) > 0 && !w.writing {
		w.enqueue(w.partial, false)
		w.partial = w.partial[:0]
	}
	w.closed = true
	close(w.closing)
	if !w.publishing { // nothing was ever written
		close(w.done)
		w.mu.Unlock()
		return nil
	}
	w.mu.Unlock()
	w.cond.Signal()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	}
	return nil
}
