package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
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
const markerPrefix = "chaos"

// procMark starts the command line of every service the harness starts; the name after
// it says which (the process table is read for it, and the environment's
// NEX_WORKLOAD_NAME, which tells a clone from its original).
const procMark = "sleep 100000; : "

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
	Of        string    `json:"of,omitempty"`       // a clone's original
	Group     string    `json:"group,omitempty"`    // a group op's group
	Replicas  int       `json:"replicas,omitempty"` // what a create or scale asked for
	Version   int       `json:"version,omitempty"`  // what a create or update asked for
	Want      string    `json:"want,omitempty"`     // a trigger's right reply
	Reply     string    `json:"reply,omitempty"`    // what it got
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
// the CLI retries), stops, clones, lists and asks after them, runs jobs and removes
// them, triggers a function, and creates, scales, updates and stops a replica group, at
// a steady pace, until ctx ends.
type worker struct {
	id   int
	cl   *client.Client
	nc   *nats.Conn
	rng  *rand.Rand
	hist *history
	seq  int
	seed uint64
	live []op // started and not stopped
	jobs []op // jobs started and not removed
	fn   *op  // the function started, if any
	grp  *group
}

// group is the worker's replica group: its ID, name and the version and count it asked for.
type group struct {
	id, base          string
	version, replicas int
}

func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		switch r := w.rng.IntN(20); {
		case r < 6 || len(w.live) == 0:
			w.start(ctx)
		case r < 9:
			w.stop(ctx)
		case r < 10:
			w.list(ctx)
		case r < 11:
			w.info(ctx)
		case r < 12:
			w.clone(ctx)
		case r < 14:
			w.job(ctx)
		case r < 16:
			w.trigger(ctx)
		case r < 17:
			w.list(ctx)
		default:
			w.groupOp(ctx)
		}
		wait(ctx, time.Duration(300+w.rng.IntN(700))*time.Millisecond)
	}
}

// name is a new workload name of this worker, of the kind a prefix says.
func (w *worker) name(kind string) string {
	w.seq++
	return fmt.Sprintf("%s%s%d-%d-%d", markerPrefix, kind, w.seed, w.id, w.seq)
}

// service is a service that sleeps; its command line says it is one of the harness's.
func service(name string) v1.WorkloadDefinition {
	return v1.WorkloadDefinition{Name: name, Namespace: "chaos", Type: "native", Lifecycle: v1.LifecycleService,
		StartRequest: json.RawMessage(`{"uri":"file:///bin/sh","argv":["-c","` + procMark + name + `"]}`)}
}

// call runs one call with a deadline and records it.
func (w *worker) call(ctx context.Context, o *op, d time.Duration, fn func(context.Context) error) {
	o.Client, o.Start = w.id, time.Now()
	cctx, cancel := context.WithTimeout(ctx, d)
	err := fn(cctx)
	cancel()
	w.settle(o, err)
	w.hist.add(*o)
}

func (w *worker) start(ctx context.Context) {
	marker := w.name("w-")
	def := service(marker)
	withID := w.rng.IntN(10) < 7
	for attempt := 0; attempt < 3; attempt++ {
		o := &op{Kind: "start", Marker: marker}
		if withID {
			o.RequestID = marker
		}
		w.call(ctx, o, 15*time.Second, func(ctx context.Context) error {
			var info *v1.WorkloadInfo
			var err error
			if withID {
				info, _, err = w.cl.StartOnce(ctx, def, marker)
			} else {
				info, err = w.cl.StartWorkload(ctx, def)
			}
			if info != nil {
				o.WID = info.ID
			}
			return err
		})
		if o.OK {
			w.live = append(w.live, *o)
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
	o := &op{Kind: "stop", Marker: s.Marker, WID: s.WID}
	w.call(ctx, o, 15*time.Second, func(ctx context.Context) error {
		_, err := w.cl.StopWorkload(ctx, s.WID, v1.StopRequest{})
		return err
	})
	if o.OK || o.Code == v1.CodeNotFound {
		w.live = append(w.live[:i], w.live[i+1:]...)
	}
}

func (w *worker) list(ctx context.Context) {
	o := &op{Kind: "list"}
	w.call(ctx, o, 15*time.Second, func(ctx context.Context) error {
		l, missing, err := w.cl.ListReport(ctx, v1.ListRequest{NoMetadata: true})
		o.Listed, o.Missing = len(l), len(missing)
		return err
	})
}

// info asks after a live workload: "not found" of one that runs is a lie.
func (w *worker) info(ctx context.Context) {
	if len(w.live) == 0 {
		return
	}
	s := w.live[w.rng.IntN(len(w.live))]
	w.call(ctx, &op{Kind: "info", Marker: s.Marker, WID: s.WID}, 15*time.Second, func(ctx context.Context) error {
		_, err := w.cl.WorkloadInfo(ctx, s.WID)
		return err
	})
}

// clone starts a copy of a live workload under a name of its own.
func (w *worker) clone(ctx context.Context) {
	if len(w.live) == 0 {
		return
	}
	s := w.live[w.rng.IntN(len(w.live))]
	o := &op{Kind: "clone", Marker: w.name("c-"), Of: s.WID}
	w.call(ctx, o, 15*time.Second, func(ctx context.Context) error {
		info, err := w.cl.CloneWorkload(ctx, s.WID, client.CloneOptions{Name: o.Marker})
		if info != nil {
			o.WID = info.ID
		}
		return err
	})
	if o.OK {
		w.live = append(w.live, *o)
	}
}

// startOnce starts def once, its name its request ID, and records the call as kind.
func (w *worker) startOnce(ctx context.Context, kind string, def v1.WorkloadDefinition) *op {
	o := &op{Kind: kind, Marker: def.Name, RequestID: def.Name}
	w.call(ctx, o, 15*time.Second, func(ctx context.Context) error {
		info, _, err := w.cl.StartOnce(ctx, def, def.Name)
		if info != nil {
			o.WID = info.ID
		}
		return err
	})
	return o
}

// job runs a short job, or removes one that ran: a removed workload is never listed again.
func (w *worker) job(ctx context.Context) {
	if len(w.jobs) > 0 && w.rng.IntN(2) == 0 {
		j := w.jobs[0]
		o := &op{Kind: "rm", Marker: j.Marker, WID: j.WID}
		w.call(ctx, o, 15*time.Second, func(ctx context.Context) error {
			_, err := w.cl.RemoveWorkload(ctx, j.WID)
			return err
		})
		if o.OK || o.Code == v1.CodeNotFound || (time.Since(j.End) > time.Minute && !o.ambiguous()) {
			w.jobs = w.jobs[1:]
		}
		return
	}
	name := w.name("j-")
	def := v1.WorkloadDefinition{Name: name, Namespace: "chaos", Type: "native", Lifecycle: v1.LifecycleJob,
		StartRequest: json.RawMessage(`{"uri":"file:///bin/sh","argv":["-c","sleep 0.2; : ` + name + `"]}`)}
	o := w.startOnce(ctx, "job", def)
	if o.OK {
		w.jobs = append(w.jobs, *o)
	}
}

// trigger sends a request to the worker's function (started first if there is none): a
// reply that is not the function's answer to this request is a lie.
func (w *worker) trigger(ctx context.Context) {
	if w.fn == nil {
		name := w.name("f-")
		def := v1.WorkloadDefinition{Name: name, Namespace: "chaos", Type: "native", Lifecycle: v1.LifecycleFunction,
			StartRequest: json.RawMessage(`{"uri":"file:///bin/sh","argv":["-c","echo hello $(cat)"],"triggers":["chaos.fn.` + name + `"]}`)}
		o := w.startOnce(ctx, "function", def)
		if o.OK {
			w.fn = o
		}
		return
	}
	payload := w.name("t-")
	o := &op{Kind: "trigger", Marker: w.fn.Marker, WID: w.fn.WID, Want: "hello " + payload}
	w.call(ctx, o, 15*time.Second, func(ctx context.Context) error {
		m, err := w.nc.RequestWithContext(ctx, "chaos.fn."+w.fn.Marker, []byte(payload))
		if err == nil {
			o.Reply = strings.TrimSpace(string(m.Data))
		}
		return err
	})
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

// runSeed is this run's seed: the names of its workloads carry it, so two runs at once
// count, and kill, only their own processes.
var runSeed uint64

// ours says whether a workload name is one of this run's: chaos<kind>-<seed>-...
func ours(name string) bool {
	rest, ok := strings.CutPrefix(name, markerPrefix)
	if !ok || len(rest) < 2 {
		return false
	}
	return strings.HasPrefix(rest[2:], strconv.FormatUint(runSeed, 10)+"-")
}

// services lists this run's running service processes, by its workload's name
// (NEX_WORKLOAD_NAME in the process's environment; the command line's name if that
// cannot be read).
func services() map[string][]int {
	out := map[string][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmd := string(b)
		i := strings.Index(cmd, procMark+markerPrefix)
		if i < 0 {
			continue
		}
		name := strings.TrimRight(cmd[i+len(procMark):], "\x00")
		if env, err := os.ReadFile("/proc/" + e.Name() + "/environ"); err == nil {
			for _, kv := range strings.Split(string(env), "\x00") {
				if v, ok := strings.CutPrefix(kv, v1.EnvWorkloadName+"="); ok {
					name = v
				}
			}
		}
		if pid, err := strconv.Atoi(e.Name()); err == nil && ours(name) {
			out[name] = append(out[name], pid)
		}
	}
	return out
}

// whoRuns names the running processes of the workloads whose names start with prefix:
// pid, workload ID and the server it was given (which machine), for a violation's report.
func whoRuns(prefix string) string {
	var out []string
	for name, pids := range services() {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for _, pid := range pids {
			env, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			var wid, url string
			for _, kv := range strings.Split(string(env), "\x00") {
				if v, ok := strings.CutPrefix(kv, v1.EnvWorkloadID+"="); ok {
					wid = v
				} else if v, ok := strings.CutPrefix(kv, v1.EnvNATSURL+"="); ok {
					url = v
				}
			}
			out = append(out, fmt.Sprintf("pid %d workload %s at %s", pid, wid, url))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, "; ") + ")"
}

// markers counts this run's running service processes, by workload name.
func markers() map[string]int {
	out := map[string]int{}
	for name, pids := range services() {
		out[name] = len(pids)
	}
	return out
}

// ourPIDs lists the PIDs of this run's service processes.
func ourPIDs() []int {
	var out []int
	for _, pids := range services() {
		out = append(out, pids...)
	}
	sort.Ints(out)
	return out
}
