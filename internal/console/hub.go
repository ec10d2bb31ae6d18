package console

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
)

// message is one server-sent event, encoded once and shared by every tab that gets it.
type message struct {
	kind string
	data []byte
}

// source reads one topic from the cluster until ctx ends, handing each message to emit.
type source func(ctx context.Context, emit func(kind string, v any)) error

// Hub relays the cluster's feeds to the open pages: one reader (one NATS subscription
// or consumer) per topic, shared by every subscriber, started by the first and stopped
// when the last one leaves.
type Hub struct {
	mu     sync.Mutex
	topics map[string]*topic
	// opened counts the readers ever started, per topic (what tests compare with the
	// number of subscribers).
	opened map[string]int
	// dropped counts messages a subscriber too slow to take them missed.
	dropped atomic.Uint64
}

type topic struct {
	subs   map[chan message]struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// subscriberBuffer is how many messages a slow tab may fall behind before it misses some.
const subscriberBuffer = 1024

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{topics: map[string]*topic{}, opened: map[string]int{}}
}

// Subscribe joins topic key, starting its reader with src when it has none. release
// leaves it; the last to leave stops the reader.
func (h *Hub) Subscribe(key string, src source) (<-chan message, func()) {
	ch := make(chan message, subscriberBuffer)
	h.mu.Lock()
	t, ok := h.topics[key]
	if !ok {
		ctx, cancel := context.WithCancel(context.Background())
		t = &topic{subs: map[chan message]struct{}{}, cancel: cancel, done: make(chan struct{})}
		h.topics[key] = t
		h.opened[key]++
		go func() {
			defer close(t.done)
			err := src(ctx, func(kind string, v any) { h.publish(t, kind, v) })
			if err != nil && ctx.Err() == nil {
				h.publish(t, "feed_error", map[string]string{"topic": key, "message": err.Error()})
			}
			// a reader that ended is not reused: the next subscriber starts another
			h.mu.Lock()
			if h.topics[key] == t {
				delete(h.topics, key)
			}
			h.mu.Unlock()
		}()
	}
	t.subs[ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	release := func() {
		once.Do(func() {
			h.mu.Lock()
			delete(t.subs, ch)
			last := len(t.subs) == 0 && h.topics[key] == t
			if last {
				delete(h.topics, key)
			}
			h.mu.Unlock()
			if last {
				t.cancel()
			}
		})
	}
	return ch, release
}

// publish encodes v once and offers it to every subscriber of t; one that is full misses it.
func (h *Hub) publish(t *topic, kind string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	m := message{kind: kind, data: b}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range t.subs {
		select {
		case ch <- m:
		default:
			h.dropped.Add(1)
		}
	}
}

// Readers is how many topic readers run now.
func (h *Hub) Readers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.topics)
}

// Subscribers is how many subscribers topic key has now.
func (h *Hub) Subscribers(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.topics[key]; ok {
		return len(t.subs)
	}
	return 0
}

// Opened is how many readers of topic key were ever started.
func (h *Hub) Opened(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opened[key]
}

// Close stops every reader and waits for them.
func (h *Hub) Close() {
	h.mu.Lock()
	ts := make([]*topic, 0, len(h.topics))
	for k, t := range h.topics {
		ts = append(ts, t)
		delete(h.topics, k)
	}
	h.mu.Unlock()
	for _, t := range ts {
		t.cancel()
		<-t.done
	}
}
