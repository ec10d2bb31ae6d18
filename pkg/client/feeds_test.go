package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/node/history"
)

// Lines written by a nexlet come back from the history line for line: in order, by
// stream, over-long lines in marked pieces, a partial last line, and --tail in lines.
func TestLogsHistoryRoundTrip(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	if h, err := history.Open(ctx, nc, history.Config{LogsMaxAge: time.Hour, EventsMaxAge: time.Hour}); err != nil || h.Ensure(ctx, "default") != nil {
		t.Fatal(err)
	}
	feed := nexlet.NewFeed(nc, "NODE")
	out := feed.LineWriter("default", "w1", "stdout")
	errw := feed.LineWriter("default", "w1", "stderr")
	const n = 5000
	var want []client.LogLine
	for i := 0; i < n; i++ {
		fmt.Fprintf(out, "line %d\n", i)
		want = append(want, client.LogLine{Stream: "stdout", Line: fmt.Sprintf("line %d", i)})
	}
	long := strings.Repeat("x", nexlet.MaxLineBytes+10)
	fmt.Fprintf(out, "%s\nlast, no newline", long)
	want = append(want,
		client.LogLine{Stream: "stdout", Line: long[:nexlet.MaxLineBytes], Continued: true},
		client.LogLine{Stream: "stdout", Line: long[nexlet.MaxLineBytes:]},
		client.LogLine{Stream: "stdout", Line: "last, no newline"})
	out.Close()
	fmt.Fprintln(errw, "to stderr")
	errw.Close()

	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, v1.LogsStream("default"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the history to be stored", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs > 0 && info.State.Bytes > uint64(n*6)
	})
	info, _ := st.Info(ctx)
	if info.State.Msgs >= n/10 {
		t.Errorf("%d lines stored as %d messages: not batched", n+4, info.State.Msgs)
	}

	c, err := client.New(nc, "default")
	if err != nil {
		t.Fatal(err)
	}
	read := func(o client.FeedOptions) []client.LogLine {
		var got []client.LogLine
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		err := c.Logs(rctx, "w1", o, func(l client.LogLine) error {
			if l.Time.IsZero() {
				t.Fatal("a line without a time")
			}
			l.Time = time.Time{}
			got = append(got, l)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if rctx.Err() != nil {
			t.Fatalf("reading the history with %+v did not end by itself", o)
		}
		return got
	}
	var stdout []client.LogLine
	stderr := 0
	for _, l := range read(client.FeedOptions{}) {
		if l.Stream == "stderr" {
			stderr++
			if l.Line != "to stderr" {
				t.Errorf("stderr line %q", l.Line)
			}
			continue
		}
		stdout = append(stdout, l)
	}
	if stderr != 1 || len(stdout) != len(want) {
		t.Fatalf("%d stdout lines (want %d), %d stderr", len(stdout), len(want), stderr)
	}
	for i := range want {
		if stdout[i] != want[i] {
			t.Fatalf("line %d: %+.80v, want %+.80v", i, stdout[i], want[i])
		}
	}
	tail := read(client.FeedOptions{Tail: 3})
	if len(tail) != 3 || tail[0].Line != long[nexlet.MaxLineBytes:] || tail[1].Line != "last, no newline" || tail[2].Line != "to stderr" {
		t.Fatalf("tail 3: %+.80v", tail)
	}
	// --since: a window with nothing in it ends at once; one with everything has everything
	if got := read(client.FeedOptions{Since: time.Now().Add(time.Hour)}); len(got) != 0 {
		t.Fatalf("since an hour from now: %d lines", len(got))
	}
	if got := read(client.FeedOptions{Since: time.Now().Add(-time.Hour)}); len(got) != len(want)+1 {
		t.Fatalf("since an hour ago: %d lines, want %d", len(got), len(want)+1)
	}
	if got := read(client.FeedOptions{Tail: 100000}); len(got) != len(want)+1 {
		t.Fatalf("a tail longer than the history: %d lines, want %d", len(got), len(want)+1)
	}
}

// A read of the history that does not follow ends every goroutine it started.
func TestFeedReadsLeaveNoGoroutine(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	if h, err := history.Open(ctx, nc, history.Config{LogsMaxAge: time.Hour, EventsMaxAge: time.Hour}); err != nil || h.Ensure(ctx, "default") != nil {
		t.Fatal(err)
	}
	out := nexlet.NewFeed(nc, "NODE").LineWriter("default", "w1", "stdout")
	fmt.Fprintln(out, "one line")
	out.Close()
	c, err := client.New(nc, "default")
	if err != nil {
		t.Fatal(err)
	}
	read := func() {
		got := 0
		if err := c.Logs(ctx, "w1", client.FeedOptions{}, func(client.LogLine) error { got++; return nil }); err != nil || got != 1 {
			t.Fatalf("read %d lines: %v", got, err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "the line to be stored", func() bool {
		got := 0
		_ = c.Logs(ctx, "w1", client.FeedOptions{}, func(client.LogLine) error { got++; return nil })
		return got == 1
	})
	read()
	before := testutil.ClientGoroutines()
	for i := 0; i < 50; i++ {
		read()
	}
	testutil.Eventually(t, 5*time.Second, "the reads' goroutines to end", func() bool { return testutil.ClientGoroutines() <= before })
}

// Following a workload's output live (no history stream) reads what its nexlet
// publishes, never what JetStream delivers there: another namespace's push consumer,
// aimed at the workload's log subject (NATS checks the consumer's create request, not
// where it delivers), delivers messages under the subject they were stored with.
func TestFollowLiveTakesNoDeliveries(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(nc, "b")
	got := make(chan client.LogLine, 16)
	done := make(chan error, 1)
	go func() {
		done <- c.Logs(ctx, "w1", client.FeedOptions{Follow: true}, func(l client.LogLine) error { got <- l; return nil })
	}()
	// the follower subscribes once it finds no stream: the nexlet's lines, until one arrives
	feed := nexlet.NewFeed(nc, "NODE")
	w := feed.LineWriter("b", "w1", "stdout")
	defer w.Close()
	testutil.Eventually(t, 10*time.Second, "the follower to read the nexlet's line", func() bool {
		fmt.Fprintln(w, "real")
		select {
		case l := <-got:
			if l.Line != "real" {
				t.Fatalf("the follower read %q", l.Line)
			}
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
	for len(got) > 0 {
		<-got
	}
	push := fmt.Sprintf(`{"stream_name":"OTHER","config":{"name":"pushed","ack_policy":"none","deliver_subject":%q}}`, v1.LogSubject("b", "w1"))
	if m, err := nc.Request("$JS.API.CONSUMER.CREATE.OTHER.pushed", []byte(push), 3*time.Second); err != nil || strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("the push consumer: %v %s", err, m.Data)
	}
	if _, err := js.Publish(ctx, "other.x", []byte("INJECTED")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "JetStream to deliver", func() bool {
		m, err := nc.Request("$JS.API.CONSUMER.INFO.OTHER.pushed", nil, time.Second)
		var info struct {
			Delivered struct {
				Consumer uint64 `json:"consumer_seq"`
			} `json:"delivered"`
		}
		return err == nil && json.Unmarshal(m.Data, &info) == nil && info.Delivered.Consumer > 0
	})
	fmt.Fprintln(w, "after")
	for l := range got {
		if l.Line == "after" {
			break
		}
		t.Fatalf("the follower read %q, delivered by another's consumer", l.Line)
	}
	cancel()
	<-done
}
