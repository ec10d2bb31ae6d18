package history_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/history"
)

// A changed --logs.max-bytes reaches an existing stream (it was silently ignored), and
// the node is told what changed; the events stream has a byte bound of its own.
func TestHistoryLimitsFollowTheFlags(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	h, err := history.Open(ctx, nc, history.Config{LogsMaxAge: time.Hour, LogsMaxBytes: 1 << 20, EventsMaxAge: time.Hour, EventsMaxByte: 1 << 20})
	if err != nil || h.Ensure(ctx, "a") != nil {
		t.Fatal(err)
	}
	var changed []string
	h, err = history.Open(ctx, nc, history.Config{LogsMaxAge: time.Hour, LogsMaxBytes: 2 << 20, EventsMaxAge: time.Hour, EventsMaxByte: 1 << 20,
		Changed: func(stream, what string) { changed = append(changed, stream+": "+what) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Ensure(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	for name, want := range map[string]int64{v1.LogsStream("a"): 2 << 20, v1.EventsStream("a"): 1 << 20, v1.LogsStream("system"): 2 << 20} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.MaxBytes; got != want {
			t.Errorf("%s max_bytes %d, want %d", name, got, want)
		}
	}
	want := []string{"NEX_LOGS_system: max_bytes 1048576 -> 2097152", "NEX_LOGS_a: max_bytes 1048576 -> 2097152"}
	if strings.Join(changed, "|") != strings.Join(want, "|") {
		t.Fatalf("changes told: %q, want %q", changed, want)
	}
}

// One namespace's flood never evicts another's history: each namespace has its own
// streams with their own bound (there was one NEX_LOGS for all, discarding the oldest).
// The shared streams of an older nex are removed, since their subjects overlap.
func TestHistoryIsBoundedPerNamespace(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: history.LegacyLogsStream, Subjects: []string{v1.LogHistorySubject("*", "*")}}); err != nil {
		t.Fatal(err)
	}
	var changed []string
	h, err := history.Open(ctx, nc, history.Config{LogsMaxAge: time.Hour, LogsMaxBytes: 1 << 20, EventsMaxAge: time.Hour, EventsMaxByte: 1 << 20,
		Changed: func(stream, what string) { changed = append(changed, stream+": "+what) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || !strings.HasPrefix(changed[0], "NEX_LOGS: removed (0 messages)") {
		t.Fatalf("changes told: %q", changed)
	}
	for _, ns := range []string{"victim", "flood"} {
		if err := h.Ensure(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, v1.LogHistorySubject("victim", "w1"), []byte("kept\n")); err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for i := 0; i < 8<<10; i++ { // 8 MiB into a 1 MiB bound
		if err := nc.Publish(v1.LogHistorySubject("flood", fmt.Sprint("w", i%10)), line); err != nil {
			t.Fatal(err)
		}
	}
	flood, _ := js.Stream(ctx, v1.LogsStream("flood"))
	testutil.Eventually(t, 10*time.Second, "the flood to be stored up to its bound", func() bool {
		info, err := flood.Info(ctx)
		return err == nil && info.State.FirstSeq > 1 && info.State.Bytes <= 1<<20
	})
	victim, _ := js.Stream(ctx, v1.LogsStream("victim"))
	if m, err := victim.GetMsg(ctx, 1); err != nil || string(m.Data) != "kept\n" {
		t.Fatalf("the victim's history after another namespace's flood: %v %v", m, err)
	}
}

// A stream creation that fails is explained by the JetStream error's code: subjects
// another stream holds (an older nex's shared stream), or a store that cannot reserve
// the bound.
func TestHistoryCreateErrorsExplained(t *testing.T) {
	s := testutil.StartServer(t, func(o *server.Options) { o.JetStreamMaxStore = 8 << 20 })
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OLDER", Subjects: []string{v1.LogHistorySubject("*", "*")}}); err != nil {
		t.Fatal(err)
	}
	open := func(logsMax int64) error {
		h, err := history.Open(ctx, nc, history.Config{LogsMaxAge: time.Hour, EventsMaxAge: time.Hour, LogsMaxBytes: logsMax, EventsMaxByte: 1 << 20})
		if err == nil {
			err = h.Ensure(ctx, "a")
		}
		return err
	}
	if err := open(1 << 20); err == nil || !strings.Contains(err.Error(), "upgrade every node") {
		t.Fatalf("overlapping subjects: %v", err)
	}
	if err := js.DeleteStream(ctx, "OLDER"); err != nil {
		t.Fatal(err)
	}
	if err := open(1 << 30); err == nil || !strings.Contains(err.Error(), "the JetStream store cannot reserve that much") {
		t.Fatalf("a bound the store cannot reserve: %v", err)
	}
}
