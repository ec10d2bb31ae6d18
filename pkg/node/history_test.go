package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/testutil"
	"github.com/nexrun/nex/pkg/node"
)

// A changed --logs.max-bytes reaches an existing stream (it was silently ignored), and
// the node is told what changed; the events stream has a byte bound of its own.
func TestHistoryLimitsFollowTheFlags(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	ctx := context.Background()
	if err := node.EnsureHistory(ctx, nc, node.HistoryConfig{LogsMaxAge: time.Hour, LogsMaxBytes: 1 << 20, EventsMaxAge: time.Hour, EventsMaxByte: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	var changed []string
	if err := node.EnsureHistory(ctx, nc, node.HistoryConfig{LogsMaxAge: time.Hour, LogsMaxBytes: 2 << 20, EventsMaxAge: time.Hour, EventsMaxByte: 1 << 20,
		Changed: func(stream, what string) { changed = append(changed, stream+": "+what) }}); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	for name, want := range map[string]int64{node.LogsStream: 2 << 20, node.EventsStream: 1 << 20} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.MaxBytes; got != want {
			t.Errorf("%s max_bytes %d, want %d", name, got, want)
		}
	}
	if len(changed) != 1 || !strings.Contains(changed[0], "NEX_LOGS: max_bytes 1048576 -> 2097152") {
		t.Fatalf("changes told: %v", changed)
	}
}
