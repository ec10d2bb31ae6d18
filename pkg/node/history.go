package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// adopt points an existing stream (made by an older nexd, or with other flags) at the
// subjects and limits this node was given: a changed --logs.max-bytes takes effect, and
// Changed says what changed (nodes should share the settings: the last to start wins).
func adopt(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (changed string, err error) {
	st, err := js.Stream(ctx, want.Name)
	if err != nil {
		return "", err
	}
	cfg := st.CachedInfo().Config
	var what []string
	if !slices.Equal(cfg.Subjects, want.Subjects) {
		cfg.Subjects = want.Subjects
		what = append(what, "subjects")
	}
	if cfg.MaxBytes != want.MaxBytes {
		what = append(what, fmt.Sprintf("max_bytes %d -> %d", cfg.MaxBytes, want.MaxBytes))
		cfg.MaxBytes = want.MaxBytes
	}
	if cfg.MaxAge != want.MaxAge {
		what = append(what, fmt.Sprintf("max_age %s -> %s", cfg.MaxAge, want.MaxAge))
		cfg.MaxAge = want.MaxAge
	}
	if len(what) == 0 {
		return "", nil
	}
	_, err = js.UpdateStream(ctx, cfg)
	return strings.Join(what, ", "), err
}

// HistoryConfig bounds the history streams.
type HistoryConfig struct {
	LogsMaxAge    time.Duration
	LogsMaxBytes  int64
	EventsMaxAge  time.Duration
	EventsMaxByte int64
	Replicas      int
	// Changed, when set, is told of an existing stream whose limits were brought in line.
	Changed func(stream, what string)
}

// EnsureHistory creates the history streams, or brings an existing one's subjects and
// limits in line with h.
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
			var what string
			if what, err = adopt(ctx, js, cfg); err == nil && what != "" && h.Changed != nil {
				h.Changed(cfg.Name, what)
			}
		}
		if err != nil && strings.Contains(err.Error(), "insufficient storage") {
			return fmt.Errorf("create stream %s with max_bytes %d: %w: the JetStream store cannot reserve that much; lower --logs.max-bytes or --events.max-bytes, or give the server more room (max_file_store)", cfg.Name, cfg.MaxBytes, err)
		}
		if err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
