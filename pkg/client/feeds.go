package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Streams nexd keeps the feeds' history in (see pkg/node.EnsureHistory).
const (
	logsStream   = "NEX_LOGS"
	eventsStream = "NEX_EVENTS"
)

// ErrNoHistory means the history stream is missing (JetStream off, or nexd started
// with --no-logs.history): only live messages can be followed.
var ErrNoHistory = errors.New("no history: the JetStream stream is missing (is JetStream on, and nexd started without --no-logs.history?); use -f to follow live messages")

// FeedOptions select which messages of a feed to read.
type FeedOptions struct {
	// Follow keeps reading new messages after the history, until ctx ends.
	Follow bool
	// Since starts the history at this time (zero: from the beginning).
	Since time.Time
	// Tail keeps only the last N messages of the history (0: all).
	Tail int
	// Until, when closed, ends a Follow as soon as everything stored so far was read
	// (used to stop following a job once it has exited).
	Until <-chan struct{}
}

// FeedMsg is one message of a feed.
type FeedMsg struct {
	Subject string
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// LogLine is one line of a workload's output.
type LogLine struct {
	Time      time.Time `json:"time"`
	Stream    string    `json:"stream"`
	Line      string    `json:"line"`
	Continued bool      `json:"continued,omitempty"`
}

// Logs reads a workload's output lines: history from the NEX_LOGS stream, then (with
// Follow) live lines. fn returning an error stops the read.
func (c *Client) Logs(ctx context.Context, wid string, o FeedOptions, fn func(LogLine) error) error {
	if err := v1.ValidateToken("workload ID", wid); err != nil {
		return err
	}
	return c.readFeed(ctx, logsStream, v1.LogSubject(c.ns, wid), o, func(m FeedMsg) error {
		return fn(LogLine{Time: m.Time, Stream: m.Header.Get(v1.HeaderStream), Line: string(m.Data), Continued: m.Header.Get("Nex-Continued") == "true"})
	})
}

// Events reads lifecycle events of the namespace (of one workload when wid is set; in
// the system namespace, node events).
func (c *Client) Events(ctx context.Context, wid string, o FeedOptions, fn func(v1.Event) error) error {
	subject := v1.EventSubject(c.ns, ">")
	if wid != "" {
		if err := v1.ValidateToken("workload ID", wid); err != nil {
			return err
		}
		subject = v1.EventSubject(c.ns, wid)
	}
	return c.readFeed(ctx, eventsStream, subject, o, func(m FeedMsg) error {
		var ev v1.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			return nil // not ours to judge: skip what does not decode
		}
		if ev.Time.IsZero() {
			ev.Time = m.Time
		}
		return fn(ev)
	})
}

func (c *Client) readFeed(ctx context.Context, stream, subject string, o FeedOptions, fn func(FeedMsg) error) error {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := js.Stream(sctx, stream)
	cancel()
	if err != nil {
		if !o.Follow {
			return ErrNoHistory
		}
		return c.followLive(ctx, subject, fn)
	}
	// How much history is there for this subject? (also: where the tail starts)
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	info, err := st.Info(ictx, jetstream.WithSubjectFilter(subject))
	cancel()
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	var have uint64
	for _, n := range info.State.Subjects {
		have += n
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !o.Since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &o.Since
	}
	skip := uint64(0)
	if o.Tail > 0 && o.Since.IsZero() && have > uint64(o.Tail) {
		skip = have - uint64(o.Tail)
	}
	if have == 0 && !o.Follow {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	var caughtUp, until atomic.Bool
	go func() {
		select {
		case <-ctx.Done():
			it.Stop()
		case <-o.Until:
			until.Store(true)
			if caughtUp.Load() {
				it.Stop()
			}
		}
	}()
	if have == 0 {
		caughtUp.Store(true)
	}
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || until.Load() || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		md, _ := m.Metadata()
		if skip > 0 {
			skip--
		} else {
			fm := FeedMsg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
			if md != nil {
				fm.Time = md.Timestamp
			}
			if err := fn(fm); err != nil {
				return err
			}
		}
		if md != nil && md.NumPending == 0 {
			if !o.Follow || until.Load() {
				return nil
			}
			caughtUp.Store(true)
		} else {
			caughtUp.Store(false)
		}
	}
}

func (c *Client) followLive(ctx context.Context, subject string, fn func(FeedMsg) error) error {
	ch := make(chan *nats.Msg, 4096)
	sub, err := c.nc.ChanSubscribe(subject, ch)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	// A denied subscription would wait forever in silence: the server says so at once.
	if err := c.nc.FlushTimeout(2 * time.Second); err != nil {
		return err
	}
	if err := c.nc.LastError(); err != nil && strings.Contains(err.Error(), `"`+subject+`"`) {
		return v1.NewError(403, v1.CodeForbidden, "permission denied: this NATS user may not subscribe to %s", subject)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			if err := fn(FeedMsg{Subject: m.Subject, Time: time.Now(), Header: m.Header, Data: m.Data}); err != nil {
				return err
			}
		}
	}
}
