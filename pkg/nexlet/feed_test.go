package nexlet_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/nexlet"
)

func TestLineWriter(t *testing.T) {
	long := strings.Repeat("x", nexlet.MaxLineBytes+10)
	tests := []struct {
		name   string
		writes []string
		want   []string
		cont   []bool
	}{
		{"lines", []string{"a\nb\n"}, []string{"a", "b"}, []bool{false, false}},
		{"split across writes", []string{"hel", "lo\nwor", "ld\n"}, []string{"hello", "world"}, []bool{false, false}},
		{"partial last line", []string{"a\nrest"}, []string{"a", "rest"}, []bool{false, false}},
		{"crlf", []string{"dos\r\n"}, []string{"dos"}, []bool{false}},
		{"empty line", []string{"\n\n"}, []string{"", ""}, []bool{false, false}},
		{"over-long line", []string{long + "\n"}, []string{long[:nexlet.MaxLineBytes], "xxxxxxxxxx"}, []bool{true, false}},
	}
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	feed := nexlet.NewFeed(nc, "NODE")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := nc.SubscribeSync(v1.LogSubject("ns", "w1"))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			w := feed.LineWriter("ns", "w1", "stdout")
			for _, s := range tt.writes {
				if _, err := w.Write([]byte(s)); err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			var lines []string
			var cont []bool
			for len(lines) < len(tt.want) {
				m, err := sub.NextMsg(2 * time.Second)
				if err != nil {
					t.Fatalf("line %d: %v", len(lines), err)
				}
				if m.Header.Get(v1.HeaderStream) != "stdout" {
					t.Fatalf("headers %v", m.Header)
				}
				l, c := testutil.FeedLines(m)
				lines, cont = append(lines, l...), append(cont, c...)
			}
			for i, want := range tt.want {
				if lines[i] != want || cont[i] != tt.cont[i] {
					t.Fatalf("line %d = %q (len %d, continued %v), want len %d, continued %v", i, lines[i], len(lines[i]), cont[i], len(want), tt.cont[i])
				}
			}
			if m, err := sub.NextMsg(50 * time.Millisecond); err == nil {
				t.Fatalf("extra message %q", m.Data)
			}
		})
	}
}

// BenchmarkLineWriter ships 80-byte lines through a real connection, end to end: every
// 10,000 lines it waits until they are published, so the queue never overflows.
func BenchmarkLineWriter(b *testing.B) {
	s := testutil.StartServer(b)
	nc := testutil.Connect(b, s)
	w := nexlet.NewFeed(nc, "NODE").LineWriter("ns", "w1", "stdout")
	line := []byte(strings.Repeat("x", 79) + "\n")
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		_, _ = w.Write(line)
		if i%10000 == 0 || i == b.N {
			for w.Lines()+w.Dropped() < uint64(i) {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	w.Close()
	if w.Dropped() > 0 {
		b.Fatalf("dropped %d lines", w.Dropped())
	}
}

// A connection that takes nothing: Write waits MaxBlock for room, then drops and counts
// lines instead of holding the workload up for longer; it never hangs.
func TestLineWriterStuckConnection(t *testing.T) {
	nc, unstick := stuckConnection(t)
	w := nexlet.NewFeed(nc, "NODE").LineWriter("ns", "w1", "stdout")
	w.MaxBlock = 100 * time.Millisecond
	chunk := []byte(strings.Repeat(strings.Repeat("y", 99)+"\n", 640)) // 64,000 bytes, 640 lines
	const chunks = 1000                                                // 64 MB: far more than the queue and the socket hold
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < chunks; i++ {
			_, _ = w.Write(chunk)
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Write is held up by a stuck connection")
	}
	if w.Dropped() == 0 || w.Lines()+w.Dropped() > chunks*640 {
		t.Fatalf("published %d, dropped %d of %d lines", w.Lines(), w.Dropped(), chunks*640)
	}
	unstick() // the server goes away: the publisher's blocked write fails at once
	w.Close()
}

// Empty lines count against the queue's bound too (each costs its entry): a tenant's
// flood of them, with the publisher held up, grew nexlet-native by gigabytes until the
// OOM killer took it, and every namespace's workloads with it.
func TestLineWriterEmptyLinesBounded(t *testing.T) {
	nc, unstick := stuckConnection(t)
	w := nexlet.NewFeed(nc, "NODE").LineWriter("ns", "w1", "stdout")
	w.MaxBlock = 100 * time.Millisecond
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	empty := bytes.Repeat([]byte("\n"), 1<<20)
	for range 16 { // 16 million empty lines
		_, _ = w.Write(empty)
	}
	runtime.ReadMemStats(&after)
	if w.Dropped() == 0 {
		t.Fatalf("16 million empty lines queued behind a stuck connection, none dropped (%d published)", w.Lines())
	}
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
		t.Fatalf("the queue of empty lines took %d MiB", grew>>20)
	}
	unstick()
	w.Close()
}

// A burst far larger than the queue, written at once: the writer waits for the publisher
// instead of dropping lines.
func TestLineWriterBurstLosesNothing(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	w := nexlet.NewFeed(nc, "NODE").LineWriter("ns", "w1", "stdout")
	chunk := []byte(strings.Repeat(strings.Repeat("z", 99)+"\n", 640))
	const chunks = 400 // 25.6 MB: three times the queue
	for i := 0; i < chunks; i++ {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	testutil.Eventually(t, 30*time.Second, "every line to be published", func() bool {
		return w.Lines()+w.Dropped() == chunks*640
	})
	if w.Dropped() != 0 {
		t.Fatalf("dropped %d of %d lines", w.Dropped(), chunks*640)
	}
}

// Lines the history stream refuses (it is full) are counted as dropped, reported to the
// nexlet, and told to the user as a logs_dropped event; a history that is off loses nothing.
func TestHistoryRefusalsCounted(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	// a tiny history that refuses what does not fit
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NEX_LOGS", Subjects: []string{v1.LogHistorySubject("*", "*")},
		MaxBytes: 4096, Discard: jetstream.DiscardNew}); err != nil {
		t.Fatal(err)
	}
	events, _ := nc.SubscribeSync(v1.EventSubject("default", "w1"))
	feed := nexlet.NewFeed(nc, "NODE")
	var reported atomic.Uint64
	feed.OnHistoryDrop = func(ns, wid string, lines uint64, reason string) { reported.Add(lines) }
	w := feed.LineWriter("default", "w1", "stdout")
	line := strings.Repeat("x", 1000)
	for i := 0; i < 200; i++ {
		fmt.Fprintln(w, line)
	}
	w.Close()
	testutil.Eventually(t, 5*time.Second, "refused history lines to be counted", func() bool {
		return feed.Stats()["log_lines_history_dropped"] > 100 && reported.Load() == feed.Stats()["log_lines_history_dropped"]
	})
	msg, err := events.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no logs_dropped event: %v", err)
	}
	var ev v1.Event
	if json.Unmarshal(msg.Data, &ev) != nil || ev.Type != v1.EventLogsDropped || ev.Data["where"] != "history" {
		t.Fatalf("event %s", msg.Data)
	}

	// no history stream at all: nothing counted
	s2 := testutil.StartServer(t)
	nc2 := testutil.Connect(t, s2)
	feed2 := nexlet.NewFeed(nc2, "NODE")
	w2 := feed2.LineWriter("default", "w1", "stdout")
	for i := 0; i < 50; i++ {
		fmt.Fprintln(w2, line)
	}
	w2.Close()
	_ = nc2.Flush()
	if d := feed2.Stats()["log_lines_history_dropped"]; d != 0 {
		t.Fatalf("with no history stream %d lines counted as dropped", d)
	}
}

// A burst of lines goes out as few messages, each of whole lines (v1.HeaderLines says how
// many), at most MaxLiveBatchBytes; every line arrives, in order.
func TestLineWriterBatchesBursts(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	sub, err := nc.SubscribeSync(v1.LogSubject("ns", "burst"))
	if err != nil {
		t.Fatal(err)
	}
	w := nexlet.NewFeed(nc, "NODE").LineWriter("ns", "burst", "stdout")
	var in strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	if _, err := w.Write([]byte(in.String())); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var lines []string
	msgs := 0
	for len(lines) < 20000 {
		m, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			t.Fatalf("after %d lines: %v", len(lines), err)
		}
		if len(m.Data) > nexlet.MaxLiveBatchBytes {
			t.Fatalf("a message of %d bytes", len(m.Data))
		}
		l, _ := testutil.FeedLines(m)
		lines = append(lines, l...)
		msgs++
	}
	for i, l := range lines {
		if l != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
	if msgs > 100 {
		t.Fatalf("20,000 lines written at once went out as %d messages", msgs)
	}
}

// stuckConnection is a connection to a server that greets, answers the first PING, and
// then never reads again; unstick makes the server go away (the test's end does too).
func stuckConnection(t *testing.T) (*nats.Conn, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	stop := make(chan struct{})
	var once sync.Once
	unstick := func() { once.Do(func() { close(stop) }) }
	t.Cleanup(unstick)
	go func() { // a server that greets, answers the first PING, and then never reads again
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(c, "INFO {\"server_id\":\"stuck\",\"version\":\"2.10.0\",\"proto\":1,\"max_payload\":1048576,\"headers\":true}\r\n")
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "PING") {
				fmt.Fprint(c, "PONG\r\n")
				break
			}
		}
		<-stop
	}()
	nc, err := nats.Connect("nats://"+l.Addr().String(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, unstick
}

// With Feed.OutputRate, a writer takes no more than a second's worth at once, then as
// much a second as the rate allows, each line costing 32 bytes more than its own: a
// workload's flood waits, as on a full pipe, and every line still arrives. Close ends a
// wait at once (a workload that has exited is not held up by its pace).
func TestLineWriterPaced(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	sub, err := nc.SubscribeSync(v1.LogSubject("ns", "w1"))
	if err != nil {
		t.Fatal(err)
	}
	feed := nexlet.NewFeed(nc, "NODE")
	const rate = 64 << 10
	feed.OutputRate = rate
	w := feed.LineWriter("ns", "w1", "stdout")
	line := []byte(strings.Repeat("x", 95) + "\n") // 96 bytes, 128 counted
	began := time.Now()
	const lines = 1536 // 192 KiB counted: a second's burst, then 2 s at the rate
	for range lines {
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(began); took < 1900*time.Millisecond {
		t.Fatalf("%d lines of 96 bytes at %d B/s took %s, want at least 2 s", lines, rate, took)
	}
	if paced := feed.Stats()["log_paced_ms"]; paced == 0 {
		t.Fatal("log_paced_ms 0 after a paced flood")
	}
	got := 0
	for got < lines {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d lines: %v", got, lines, err)
		}
		l, _ := testutil.FeedLines(m)
		got += len(l)
	}

	// a write that owes a minute waits for Close only
	slow := feed.LineWriter("ns", "w2", "stdout")
	_, _ = slow.Write(bytes.Repeat([]byte("y"), rate)) // the burst
	wrote := make(chan struct{})
	go func() {
		_, _ = slow.Write(bytes.Repeat([]byte("y"), 60*rate))
		close(wrote)
	}()
	testutil.Eventually(t, 5*time.Second, "the second write to wait out its pace", func() bool { return feed.Stats()["log_paced_ms"] > 0 })
	slow.Close()
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("a write waiting out its pace did not return on Close")
	}
}
