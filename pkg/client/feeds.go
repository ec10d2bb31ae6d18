package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// FeedOptions select which messages of a feed to read.
type FeedOptions struct {
	// Follow keeps reading new messages after the history, until ctx ends.
	Follow bool
	// Since starts the history at this time (zero: from the beginning).
	Since time.Time
	// Tail keeps only the last N messages of the history (0: all).
	Tail int
	// Until, when closed, ends a Follow as soon as everything stored so far was read
	// (a fallback for output whose end never comes: its nexlet was killed).
	Until <-chan struct{}
	// OnEnd is called with the end of each run of a workload's output (Logs only): every
	// line of the run came before it. Returning true ends the read there.
	OnEnd func(v1.LogEnd) bool
	// NewOnly skips the history: only messages stored from now on (a Follow of events).
	NewOnly bool
}

// errEnded ends a read of a feed where OnEnd asked to.
var errEnded = errors.New("the output ended")

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

// Logs reads a workload's output lines: history from the namespace's v1.LogsStream (batches of
// lines on v1.LogHistorySubject), then (with Follow) new lines as they are stored; with no
// stream, live lines from v1.LogSubject. Tail counts lines. fn returning an error stops
// the read.
func (c *Client) Logs(ctx context.Context, wid string, o FeedOptions, fn func(LogLine) error) error {
	if err := v1.ValidateToken("workload ID", wid); err != nil {
		return err
	}
	tail := newLineTail(o.Tail)
	o.Tail = 0 // counted in lines here, not in stored messages
	emit := func(l LogLine) error {
		if tail != nil {
			tail.add(l)
			return nil
		}
		return fn(l)
	}
	f := feed{
		stream: v1.LogsStream(c.ns), subject: v1.LogHistorySubject(c.ns, wid), live: v1.LogSubject(c.ns, wid),
		caughtUp: func() error {
			t := tail
			tail = nil
			return t.each(fn)
		},
	}
	err := c.readFeed(ctx, f, o, func(m FeedMsg) error {
		if m.Header.Get(v1.HeaderStream) == "" && m.Header.Get(v1.HeaderEnd) == "" {
			// every message of a nexlet's LineWriter says its stream, or that the output
			// ended: this one is someone else's (JetStream's answer to another's
			// request, with that namespace's text in it)
			return nil
		}
		if m.Header.Get(v1.HeaderEnd) != "" {
			var end v1.LogEnd
			if json.Unmarshal(m.Data, &end) != nil || o.OnEnd == nil || !o.OnEnd(end) {
				return nil
			}
			t := tail // what the tail held is printed before the read ends
			tail = nil
			if err := t.each(fn); err != nil {
				return err
			}
			return errEnded
		}
		stream := m.Header.Get(v1.HeaderStream)
		if m.Subject != f.subject && m.Header.Get(v1.HeaderLines) == "" { // a live line
			return emit(LogLine{Time: m.Time, Stream: stream, Line: string(m.Data), Continued: m.Header.Get(v1.HeaderContinued) == "true"})
		}
		// a history message, or a live burst: lines, each followed by '\n'

		cont := map[int]bool{}
		if h := m.Header.Get(v1.HeaderContinuedLines); h != "" {
			for _, p := range strings.Split(h, ",") {
				if i, err := strconv.Atoi(p); err == nil {
					cont[i] = true
				}
			}
		}
		data := m.Data
		for i := 0; len(data) > 0; i++ {
			end := bytes.IndexByte(data, '\n')
			if end < 0 {
				end = len(data)
			}
			if err := emit(LogLine{Time: m.Time, Stream: stream, Line: string(data[:end]), Continued: cont[i]}); err != nil {
				return err
			}
			data = data[min(end+1, len(data)):]
		}
		return nil
	})
	if errors.Is(err, errEnded) {
		return nil
	}
	return err
}

// lineTail keeps the last n lines of the history.
type lineTail struct {
	lines []LogLine
	next  int
	full  bool
}

func newLineTail(n int) *lineTail {
	if n <= 0 {
		return nil
	}
	return &lineTail{lines: make([]LogLine, n)}
}

func (t *lineTail) add(l LogLine) {
	t.lines[t.next] = l
	t.next++
	if t.next == len(t.lines) {
		t.next, t.full = 0, true
	}
}

func (t *lineTail) each(fn func(LogLine) error) error {
	if t == nil {
		return nil
	}
	order := t.lines[:t.next]
	if t.full {
		order = append(t.lines[t.next:], t.lines[:t.next]...)
	}
	for _, l := range order {
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
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
	return c.readFeed(ctx, feed{stream: v1.EventsStream(c.ns), subject: subject, live: subject}, o, func(m FeedMsg) error {
		var ev v1.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Namespace != c.ns || ev.Type == "" {
			// not ours to judge: skip what does not decode, or is no event of the
			// namespace (JetStream's answer to another's request, aimed here)
			return nil
		}
		if ev.Time.IsZero() {
			ev.Time = m.Time
		}
		return fn(ev)
	})
}

// feed is where a feed's messages are: the stream and subject that keep them, and the
// subject they are published on live (the same one for events).
type feed struct {
	stream, subject, live string
	// caughtUp, when set, is called once everything stored so far has been read.
	caughtUp func() error
}

// reached calls caughtUp, once.
func (f *feed) reached() error {
	if f.caughtUp == nil {
		return nil
	}
	cu := f.caughtUp
	f.caughtUp = nil
	return cu()
}

func (c *Client) readFeed(ctx context.Context, f feed, o FeedOptions, fn func(FeedMsg) error) error {
	stream, subject := f.stream, f.subject
	reached := f.reached
	js, err := jetstream.New(c.nc.Conn)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := js.Stream(sctx, stream)
	cancel()
	if err != nil {
		if perr := c.deniedJetStream(stream); perr != nil {
			return perr // a user without JetStream rights: not a missing stream
		}
		if !o.Follow {
			return fmt.Errorf("%w (stream %s)", ErrNoHistory, stream)
		}
		return c.followLive(ctx, f.live, fn)
	}
	have, err := historySize(ctx, st, subject, o.Since)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	cfg := consumerConfig(subject, o)
	if o.NewOnly && o.Since.IsZero() {
		have = 0
	}
	skip := uint64(0)
	if o.Tail > 0 && o.Since.IsZero() && have > uint64(o.Tail) {
		skip = have - uint64(o.Tail)
	}
	if have == 0 {
		if !o.Follow {
			return nil
		}
		if err := reached(); err != nil {
			return err
		}
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
	returned := make(chan struct{}) // the watcher below ends with this read
	defer close(returned)
	go func() {
		select {
		case <-returned:
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
				return reached()
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
			if err := reached(); err != nil {
				return err
			}
			if !o.Follow || until.Load() {
				return nil
			}
			caughtUp.Store(true)
		} else {
			caughtUp.Store(false)
		}
	}
}

// consumerConfig reads subject from where o says: all of it, from o.Since, or new only.
func consumerConfig(subject string, o FeedOptions) jetstream.OrderedConsumerConfig {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case !o.Since.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &o.Since
	case o.NewOnly:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	return cfg
}

// historySize is how many messages the stream keeps for subject (where a tail starts),
// or 0 when none was stored since since: a read must not wait for a first message that
// will not come.
func historySize(ctx context.Context, st jetstream.Stream, subject string, since time.Time) (uint64, error) {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	info, err := st.Info(ictx, jetstream.WithSubjectFilter(subject))
	cancel()
	if err != nil {
		return 0, err
	}
	var have uint64
	for _, n := range info.State.Subjects {
		have += n
	}
	if have > 0 && !since.IsZero() {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last, err := st.GetLastMsgForSubject(lctx, subject)
		cancel()
		if err == nil && last.Time.Before(since) {
			have = 0
		}
	}
	return have, nil
}

// deniedJetStream is a forbidden error when the server refused this user's request about
// stream (a permission violation on $JS.API), else nil.
func (c *Client) deniedJetStream(stream string) error {
	_ = c.nc.FlushTimeout(time.Second) // the violation arrives asynchronously
	if err := c.nc.LastError(); err != nil && errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), "$JS.API") {
		return v1.Errorf(v1.CodeForbidden, "permission denied: this NATS user may not read the history stream %s (%v); ask for $JS.API.STREAM.INFO.%s and consumer rights on it, or follow live output with -f", stream, err, stream)
	}
	return nil
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
		return v1.Errorf(v1.CodeForbidden, "permission denied: this NATS user may not subscribe to %s", subject)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			if svc.DeliveredMsg(subject, m) {
				// JetStream delivers a push consumer's messages under the subject they were
				// stored with: another namespace's consumer aimed at this subject (its
				// creator's permissions are not checked against where it delivers) is not
				// this workload's output
				continue
			}
			if err := fn(FeedMsg{Subject: m.Subject, Time: time.Now(), Header: m.Header, Data: m.Data}); err != nil {
				return err
			}
		}
	}
}
