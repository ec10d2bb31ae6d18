package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Streams that keep the feeds' history, so `nex workload logs` and `nex events` can show
// what happened before they were run.
const (
	LogsStream   = "NEX_LOGS"
	EventsStream = "NEX_EVENTS"
)

// LogsHistorySubjects are the batches of lines nexlets publish for the history, not the
// one-message-per-line live feed.
var LogsHistorySubjects = v1.LogHistorySubject("*", "*")

// adoptSubjects points an existing stream (made by an older nexd) at the subjects this
// one publishes history on; its limits stay as they are.
func adoptSubjects(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, want.Name)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	if slices.Equal(cfg.Subjects, want.Subjects) {
		return nil
	}
	cfg.Subjects = want.Subjects
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// HistoryConfig bounds the history streams.
type HistoryConfig struct {
	LogsMaxAge    time.Duration
	LogsMaxBytes  int64
	EventsMaxAge  time.Duration
	EventsMaxByte int64
	Replicas      int
}

// EnsureHistory creates the history streams when they do not exist yet. An existing
// stream is left as it is, so nodes with different settings do not fight over it.
func EnsureHistory(ctx context.Context, nc *nats.Conn, h HistoryConfig) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if h.Replicas <= 0 {
		h.Replicas = 1
	}
	for _, cfg := range []jetstream.StreamConfig{
		{Name: LogsStream, Description: "nex workload output", Subjects: []string{LogsHistorySubjects},
			MaxAge: h.LogsMaxAge, MaxBytes: h.LogsMaxBytes, Discard: jetstream.DiscardOld, Replicas: h.Replicas, Storage: jetstream.FileStorage},
		{Name: EventsStream, Description: "nex workload and node events", Subjects: []string{v1.EventSubject("*", "*")},
			MaxAge: h.EventsMaxAge, MaxBytes: h.EventsMaxByte, Discard: jetstream.DiscardOld, Replicas: h.Replicas, Storage: jetstream.FileStorage},
	} {
		if cfg.MaxBytes == 0 {
			cfg.MaxBytes = -1
		}
		_, err := js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = adoptSubjects(ctx, js, cfg)
		}
		if err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
