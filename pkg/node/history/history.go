// Package history is the history room of a node: each namespace's streams of its
// workloads' output and events, made before the namespace's first workload starts, within
// the bounds the node was given.
package history

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
)

// The streams that kept every namespace's history together, before each namespace had
// its own (v1.LogsStream, v1.EventsStream): one tenant's flood evicted every other's
// history there. A node removes them at start, since their subjects overlap the
// per-namespace streams'.
const (
	LegacyLogsStream   = "NEX_LOGS"
	LegacyEventsStream = "NEX_EVENTS"
)

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

// Config bounds each namespace's history streams.
type Config struct {
	LogsMaxAge    time.Duration
	LogsMaxBytes  int64 // per namespace
	EventsMaxAge  time.Duration
	EventsMaxByte int64 // per namespace
	Replicas      int
	// Changed, when set, is told of an existing stream whose limits were brought in line,
	// and of a legacy shared stream removed.
	Changed func(stream, what string)
}

// History keeps the history streams of the namespaces this node runs workloads of.
type History struct {
	js  jetstream.JetStream
	cfg Config

	mu   sync.Mutex
	made map[string]time.Time // namespace -> when its streams were made (or last failed)
	errs map[string]error
}

// historyRetry is how long a namespace whose streams could not be made waits before
// the next start tries again (a start never waits on history for long).
const historyRetry = 30 * time.Second

// Open removes the legacy shared streams and makes the system namespace's
// (node events), so a node that starts knows at once whether history can be kept.
func Open(ctx context.Context, nc *nats.Conn, h Config) (*History, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if h.Replicas <= 0 {
		h.Replicas = 1
	}
	if err := records.CheckJetStream(ctx, js); err != nil { // off: at once, not after waiting on a stream
		return nil, err
	}
	hist := &History{js: js, cfg: h, made: map[string]time.Time{}, errs: map[string]error{}}
	for name, subject := range map[string]string{LegacyLogsStream: v1.LogHistorySubject("*", "*"), LegacyEventsStream: v1.EventSubject("*", "*")} {
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		if !slices.Contains(st.CachedInfo().Config.Subjects, subject) {
			continue // not ours
		}
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("remove the shared history stream %s: %w", name, err)
		}
		if h.Changed != nil {
			h.Changed(name, fmt.Sprintf("removed (%d messages): history is kept per namespace now, in %s and %s", st.CachedInfo().State.Msgs, v1.LogsStream("<namespace>"), v1.EventsStream("<namespace>")))
		}
	}
	if err := hist.create(ctx, v1.SystemNamespace); err != nil {
		return nil, err
	}
	hist.made[v1.SystemNamespace] = time.Now()
	return hist, nil
}

// Ensure makes namespace ns's history streams unless they were made already. A failure
// is remembered for historyRetry, so starts do not each wait on a JetStream that cannot
// (and is returned once: the remembered failure returns nil).
func (h *History) Ensure(ctx context.Context, ns string) error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if at, ok := h.made[ns]; ok && (h.errs[ns] == nil || time.Since(at) < historyRetry) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := h.create(ctx, ns)
	h.made[ns], h.errs[ns] = time.Now(), err
	return err
}

// create makes (or adopts) namespace ns's two streams.
func (h *History) create(ctx context.Context, ns string) error {
	c := h.cfg
	for _, cfg := range []jetstream.StreamConfig{
		{Name: v1.LogsStream(ns), Description: "nex workload output of namespace " + ns, Subjects: []string{v1.LogHistorySubject(ns, "*")},
			MaxAge: c.LogsMaxAge, MaxBytes: c.LogsMaxBytes, Discard: jetstream.DiscardOld, Replicas: c.Replicas, Storage: jetstream.FileStorage},
		{Name: v1.EventsStream(ns), Description: "nex events of namespace " + ns, Subjects: []string{v1.EventSubject(ns, "*")},
			MaxAge: c.EventsMaxAge, MaxBytes: c.EventsMaxByte, Discard: jetstream.DiscardOld, Replicas: c.Replicas, Storage: jetstream.FileStorage},
	} {
		if cfg.MaxBytes == 0 {
			cfg.MaxBytes = -1
		}
		_, err := h.js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			var what string
			if what, err = adopt(ctx, h.js, cfg); err == nil && what != "" && c.Changed != nil {
				c.Changed(cfg.Name, what)
			}
		}
		if err != nil && records.StorageFull(err) {
			return fmt.Errorf("create stream %s with max_bytes %d: %w: the JetStream store cannot reserve that much (every namespace's streams reserve it); lower --logs.max-bytes or --events.max-bytes, or give the server more room (max_file_store)", cfg.Name, cfg.MaxBytes, err)
		}
		if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok && apiErr.ErrorCode == records.JSErrSubjectOverlap {
			return fmt.Errorf("create stream %s: %w: a node of an older nex keeps the shared %s or %s stream; upgrade every node", cfg.Name, err, LegacyLogsStream, LegacyEventsStream)
		}
		if err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
