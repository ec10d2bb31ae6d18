package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// markerPrefix starts every chaos workload's marker: its name, and a word of its command
// line, so the process table says which workload a process is.
const markerPrefix = "chaosw-"

// op is one call of a client and its reply, as the history file keeps it.
type op struct {
	Client    int       `json:"client"`
	Kind      string    `json:"op"` // start, stop, list
	Marker    string    `json:"marker,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	WID       string    `json:"workload_id,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	OK        bool      `json:"ok"`
	Code      string    `json:"error_code,omitempty"`
	Err       string    `json:"error,omitempty"`
	Listed    int       `json:"listed,omitempty"`
	Missing   int       `json:"missing_nodes,omitempty"`
}

// ambiguous says whether a failed call may have taken effect all the same (no answer in
// time): the history cannot say, and the checker allows either outcome.
func (o op) ambiguous() bool {
	return !o.OK && (o.Code == v1.CodeTimeout || o.Code == "" || strings.Contains(o.Err, "no reply") ||
		strings.Contains(o.Err, "acknowledged") || strings.Contains(o.Err, "timeout") || strings.Contains(o.Err, "no responders"))
}

// history is every op, kept in memory and written as JSON lines.
type history struct {
	mu  sync.Mutex
	ops []op
	f   *os.File
}

func (h *history) add(o op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, o)
	if h.f != nil {
		b, _ := json.Marshal(o)
		_, _ = h.f.Write(append(b, '\n'))
	}
}

func (h *history) all() []op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]op(nil), h.ops...)
}

// worker is one client: it starts services (most with a request ID, retried with it as
// the CLI retries), stops them and lists, at a steady pace, until ctx ends.
type worker struct {
	id   int
	cl   *client.Client
	rng  *rand.Rand
	hist *history
	seq  int
	seed uint64
	live []op // started and not stopped
}

func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		switch r := w.rng.IntN(10); {
		case r < 5 || len(w.live) == 0:
			w.start(ctx)
		case r < 8:
			w.stop(ctx)
		default:
			w.list(ctx)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(300+w.rng.IntN(700)) * time.Millisecond):
		}
	}
}

func (w *worker) start(ctx context.Context) {
	w.seq++
	marker := fmt.Sprintf("%s%d-%d-%d", markerPrefix, w.seed, w.id, w.seq)
	def := v1.WorkloadDefinition{Name: marker, Type: "native", Lifecycle: v1.LifecycleService,
		StartRequest: json.RawMessage(`{"uri":"file:///bin/sh","argv":["-c","sleep 100000; : ` + marker + `"]}`)}
	withID := w.rng.IntN(10) < 7
	for attempt := 0; attempt < 3; attempt++ {
		o := op{Client: w.id, Kind: "start", Marker: marker, Start: time.Now()}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		var info *v1.WorkloadInfo
		var err error
		if withID {
			o.RequestID = marker
			info, _, err = w.cl.StartOnce(cctx, def, marker)
		} else {
			info, err = w.cl.StartWorkload(cctx, def)
		}
		cancel()
		w.settle(&o, err)
		if info != nil {
			o.WID = info.ID
		}
		w.hist.add(o)
		if o.OK {
			w.live = append(w.live, o)
			return
		}
		if !withID || !o.ambiguous() || ctx.Err() != nil {
			return // without a request ID a retry could start a second copy
		}
	}
}

func (w *worker) stop(ctx context.Context) {
	i := w.rng.IntN(len(w.live))
	s := w.live[i]
	o := op{Client: w.id, Kind: "stop", Marker: s.Marker, WID: s.WID, Start: time.Now()}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_, err := w.cl.StopWorkload(cctx, s.WID, v1.StopRequest{})
	cancel()
	w.settle(&o, err)
	w.hist.add(o)
	if o.OK || v1.IsNotFound(err) {
		w.live = append(w.live[:i], w.live[i+1:]...)
	}
}

func (w *worker) list(ctx context.Context) {
	o := op{Client: w.id, Kind: "list", Start: time.Now()}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	l, missing, err := w.cl.ListReport(cctx, v1.ListRequest{NoMetadata: true})
	cancel()
	w.settle(&o, err)
	o.Listed, o.Missing = len(l), len(missing)
	w.hist.add(o)
}

func (w *worker) settle(o *op, err error) {
	o.End, o.OK = time.Now(), err == nil
	if err != nil {
		o.Err = err.Error()
		var e *v1.Error
		if errors.As(err, &e) {
			o.Code = e.ErrorCode
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			o.Code = v1.CodeTimeout
		}
	}
}

// processes lists the PIDs whose command line holds every one of words (zombies left out).
func processes(words ...string) []int { return testutil.Processes(words...) }

// markers counts the running processes of each chaos workload.
func markers() map[string]int {
	out := map[string]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmd := string(b)
		if i := strings.Index(cmd, "sleep 100000; : "+markerPrefix); i >= 0 {
			out[strings.TrimRight(cmd[i+len("sleep 100000; : "):], "\x00")]++
		}
	}
	return out
}
