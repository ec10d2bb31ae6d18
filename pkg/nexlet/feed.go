package nexlet

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// MaxLineBytes is the longest log line sent as one message; longer lines are cut into
// pieces, each but the last marked with the Nex-Continued header.
const MaxLineBytes = 64 * 1024

// HeaderContinued marks a piece of an over-long line that continues in the next message.
const HeaderContinued = "Nex-Continued"

// Feed publishes a workload's logs and events on the $NEX.FEED subjects.
type Feed struct {
	nc     *nats.Conn
	nodeID string
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

// LineWriter returns a writer that publishes one message per line of output on
// $NEX.FEED.<ns>.logs.<wid>, with Nex-Stream set to stream. Close flushes a partial line.
func (f *Feed) LineWriter(ns, wid, stream string) *LineWriter {
	return &LineWriter{nc: f.nc, subject: v1.LogSubject(ns, wid), stream: stream}
}

// LineWriter splits a byte stream into lines and publishes each one.
type LineWriter struct {
	mu      sync.Mutex
	nc      *nats.Conn
	subject string
	stream  string
	buf     []byte
	lines   uint64
	// Tee, when set, receives each line too (nexd's --show-workload-logs).
	Tee func(stream string, line []byte)
}

// Write publishes every complete line in p and keeps the rest for the next call.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= MaxLineBytes {
				w.publish(w.buf[:MaxLineBytes], true)
				w.buf = append(w.buf[:0], w.buf[MaxLineBytes:]...)
			}
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			w.buf = append(w.buf, line...)
			line = w.buf
		}
		for len(line) > MaxLineBytes {
			w.publish(line[:MaxLineBytes], true)
			line = line[MaxLineBytes:]
		}
		w.publish(line, false)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *LineWriter) publish(line []byte, continued bool) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	h := nats.Header{v1.HeaderStream: []string{w.stream}}
	if continued {
		h[HeaderContinued] = []string{"true"}
	}
	_ = w.nc.PublishMsg(&nats.Msg{Subject: w.subject, Header: h, Data: line})
	w.lines++
	if w.Tee != nil {
		w.Tee(w.stream, line)
	}
}

// Lines is the number of messages published so far.
func (w *LineWriter) Lines() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines
}

// Close publishes a trailing partial line, if any.
func (w *LineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.publish(w.buf, false)
		w.buf = w.buf[:0]
	}
	return nil
}
