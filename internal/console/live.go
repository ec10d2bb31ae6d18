package console

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// keepalive is how often an idle server-sent event stream carries a comment, so proxies
// and the browser keep it open (and a closed tab is noticed).
const keepalive = 20 * time.Second

// relistEvery is how often a console of the system namespace lists the workloads while a
// page follows events, to learn of namespaces whose events it does not follow yet.
const relistEvery = 30 * time.Second

// EventsTopic is the hub's topic of the cluster's events.
const EventsTopic = "events"

// LogsTopic is the hub's topic of workload wid's output.
func LogsTopic(ns, wid string) string { return "logs/" + ns + "/" + wid }

// followed is the namespaces whose events the console follows, sorted.
func (s *Server) followed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.spaces))
	for ns := range s.spaces {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out
}

// followsNamespace says whether ns's events are followed.
func (s *Server) followsNamespace(ns string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spaces[ns]
}

// follow adds the namespaces seen (in a listing) to those whose events are followed.
func (s *Server) follow(seen map[string]bool) {
	if s.cfg.Namespace != v1.SystemNamespace {
		return // a tenant's console sees its own namespace only
	}
	added := false
	s.mu.Lock()
	for ns := range seen {
		if !s.spaces[ns] && v1.ValidateNamespace(ns) == nil {
			s.spaces[ns] = true
			added = true
		}
	}
	s.mu.Unlock()
	if added {
		select {
		case s.bump <- struct{}{}:
		default:
		}
	}
}

// liveEvents streams the cluster's events, and each workload's info after its events.
func (s *Server) liveEvents(w http.ResponseWriter, r *http.Request) {
	s.stream(w, r, EventsTopic, s.eventsSource)
}

// liveLogs streams a workload's new output lines.
func (s *Server) liveLogs(w http.ResponseWriter, r *http.Request) {
	ns, wid := r.PathValue("ns"), r.PathValue("id")
	cl, err := s.clientFor(ns)
	if err == nil {
		err = v1.ValidateToken("workload ID", wid)
	}
	if err != nil {
		fail(w, err)
		return
	}
	s.stream(w, r, LogsTopic(ns, wid), func(ctx context.Context, emit func(string, any)) error {
		return cl.Logs(ctx, wid, client.FeedOptions{Follow: true, NewOnly: true}, func(l client.LogLine) error {
			emit("log", logLine{l.Time, l.Stream, l.Line})
			return nil
		})
	})
}

// stream relays topic key to the page as server-sent events until the page goes away.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, key string, src source) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, ": connected\n\n")
	if rc.Flush() != nil {
		return
	}
	ch, release := s.hub.Subscribe(key, src)
	defer release()
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			_, _ = io.WriteString(w, ": keepalive\n\n")
		case m := <-ch:
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.kind, m.data)
			for more := len(ch); more > 0; more-- { // what queued meanwhile, in one flush
				m = <-ch
				fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.kind, m.data)
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// eventsSource follows the events of every followed namespace (and, from system, the
// nodes' events), and after a workload's event sends its info, looked up once for all pages.
func (s *Server) eventsSource(ctx context.Context, emit func(string, any)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	look := newLookups(s, emit)
	wg.Add(1)
	go func() { defer wg.Done(); look.run(ctx) }()
	started := map[string]bool{}
	// events stored since a little before the topic opened are read too: a workload
	// started while its namespace's reader was being set up is not missed
	since := time.Now().Add(-2 * time.Second)
	tick := time.NewTicker(relistEvery)
	defer tick.Stop()
	if s.cfg.Namespace == v1.SystemNamespace {
		// a namespace's first event, as it happens: its stored events are then read
		// from since, so its first workload shows at once, not at the next listing
		sub, err := s.cfg.Conn.Subscribe(v1.EventSubject("*", "*"), func(m *nats.Msg) {
			if svc.DeliveredMsg(v1.EventSubject("*", "*"), m) {
				return // a tenant's stored message, handed here by JetStream: no namespace's event
			}
			if parts := strings.Split(m.Subject, "."); len(parts) > 2 && !s.followsNamespace(parts[2]) {
				s.follow(map[string]bool{parts[2]: true})
			}
		})
		if err == nil {
			defer func() { _ = sub.Unsubscribe() }()
		}
	}
	for {
		for _, ns := range s.followed() {
			if !started[ns] {
				started[ns] = true
				wg.Add(1)
				go func() { defer wg.Done(); s.readEvents(ctx, ns, since, emit, look) }()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.bump:
		case <-tick.C:
			if s.cfg.Namespace == v1.SystemNamespace {
				s.relist(ctx)
			}
		}
	}
}

// relist lists the workloads to learn of namespaces the console does not follow yet.
func (s *Server) relist(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	list, err := s.cl.List(lctx, v1.ListRequest{NoMetadata: true})
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, w := range list {
		seen[w.Namespace] = true
	}
	s.follow(seen)
}

// readAgainAfter is how long a reader of events waits before it reads again after its read ended.
const readAgainAfter = 3 * time.Second

// readEvents follows namespace ns's events until ctx ends; a failed read is reported to
// the pages and tried again a little later, unless it was refused.
func (s *Server) readEvents(ctx context.Context, ns string, since time.Time, emit func(string, any), look *lookups) {
	for ctx.Err() == nil {
		cl, err := s.clientFor(ns)
		if err == nil {
			err = cl.Events(ctx, "", client.FeedOptions{Follow: true, Since: since}, func(ev v1.Event) error {
				emit("event", ev)
				if ev.WorkloadID != "" && ev.Namespace != v1.SystemNamespace {
					look.add(ev.WorkloadID, ev.Type)
				}
				return nil
			})
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			emit("feed_error", map[string]string{"namespace": ns, "message": err.Error()})
			if v1.IsCode(err, v1.CodeForbidden) {
				return
			}
		}
		// the read ended (a failure, a consumer the server dropped): read again a little
		// later, from a little before now, so that nothing between is missed
		select {
		case <-ctx.Done():
		case <-time.After(readAgainAfter):
		}
		since = time.Now().Add(-readAgainAfter - 2*time.Second)
	}
}

// lookups fetch the info of workloads that had events, each once however many events
// came meanwhile, a few at a time. An event can come before its node has recorded what
// it says (a stop's "stopped" before the record is gone): a workload whose info still says
// it runs after an event that says it ended is looked up again, a little later.
type lookups struct {
	s     *Server
	emit  func(string, any)
	mu    sync.Mutex
	queue []string
	want  map[string]int // workload -> lookups still allowed after this one says it runs
	kick  chan struct{}
}

// lookupWorkers is how many lookups run at once.
const lookupWorkers = 4

// Looking again after an event that says a workload ended: how often, how long apart.
const (
	lookAgain      = 4
	lookAgainAfter = 250 * time.Millisecond
)

// ended are the events after which a workload does not run (until a restart says so).
var ended = map[string]bool{v1.EventStopped: true, v1.EventFailed: true, v1.EventExited: true}

func newLookups(s *Server, emit func(string, any)) *lookups {
	return &lookups{s: s, emit: emit, want: map[string]int{}, kick: make(chan struct{}, lookupWorkers)}
}

// add queues a lookup of wid after an event of type typ.
func (l *lookups) add(wid, typ string) {
	again := 0
	if ended[typ] {
		again = lookAgain
	}
	l.queueUp(wid, again)
}

func (l *lookups) queueUp(wid string, again int) {
	l.mu.Lock()
	if n, queued := l.want[wid]; !queued {
		l.want[wid] = again
		l.queue = append(l.queue, wid)
	} else {
		l.want[wid] = max(n, again)
	}
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *lookups) next() (string, int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		return "", 0, false
	}
	wid := l.queue[0]
	l.queue = l.queue[1:]
	again := l.want[wid]
	delete(l.want, wid)
	return wid, again, true
}

func (l *lookups) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range lookupWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-l.kick:
				}
				for wid, again, ok := l.next(); ok && ctx.Err() == nil; wid, again, ok = l.next() {
					l.lookup(ctx, wid, again)
				}
			}
		}()
	}
	wg.Wait()
}

func (l *lookups) lookup(ctx context.Context, wid string, again int) {
	ictx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	info, err := l.s.cl.WorkloadInfo(ictx, wid)
	switch {
	case err == nil:
		info.Definition, info.Metadata = nil, nil
		l.emit("workload", info)
		if again > 0 && !info.Finished() {
			select { // a worker waits: lookups after an end are few, and short
			case <-ctx.Done():
			case <-time.After(lookAgainAfter):
				l.queueUp(wid, again-1)
			}
		}
	case v1.IsNotFound(err):
		l.emit("gone", map[string]string{"id": wid})
	}
}
