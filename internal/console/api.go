package console

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// readTimeout bounds a read the page asked for.
const readTimeout = 10 * time.Second

// session is what the page learns about the console when it loads.
type session struct {
	Namespace  string   `json:"namespace"`
	Version    string   `json:"version"`
	Namespaces []string `json:"namespaces"`
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, session{Namespace: s.cfg.Namespace, Version: s.cfg.Version, Namespaces: s.followed()})
}

func (s *Server) getNodes(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	nodes, err := s.cl.ListNodes(ctx)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nodes)
}

// nodePage is a node's page: its info and the workloads it runs.
type nodePage struct {
	Node          *v1.NodeInfo      `json:"node"`
	Workloads     []v1.WorkloadInfo `json:"workloads"`
	WorkloadError string            `json:"workload_error,omitempty"`
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	ni, err := s.cl.NodeInfo(ctx, r.PathValue("id"))
	if err != nil {
		fail(w, err)
		return
	}
	for i := range ni.Nexlets {
		ni.Nexlets[i].StartRequestSchema = nil // long, and not what this page is for
	}
	page := nodePage{Node: ni, Workloads: []v1.WorkloadInfo{}}
	list, err := s.cl.List(ctx, v1.ListRequest{NoMetadata: true})
	if err != nil {
		page.WorkloadError = err.Error()
	}
	for _, wl := range list {
		if wl.NodeID == ni.NodeID {
			page.Workloads = append(page.Workloads, wl)
		}
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) getWorkloads(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	list, err := s.cl.List(ctx, v1.ListRequest{NoMetadata: true})
	if err != nil {
		fail(w, err)
		return
	}
	seen := map[string]bool{}
	for i := range list {
		list[i].Definition = nil
		seen[list[i].Namespace] = true
	}
	s.follow(seen)
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getWorkload(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	info, err := s.cl.WorkloadInfo(ctx, r.PathValue("id"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, masked(info))
}

// getGroup is a replica group of namespace ?ns= (groups are asked for under their own
// namespace, also from system).
func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	cl, err := s.clientFor(r.URL.Query().Get("ns"))
	if err != nil {
		fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	st, err := cl.Group(ctx, r.PathValue("id"), v1.GroupRequest{Op: v1.GroupInfo})
	if err != nil {
		fail(w, err)
		return
	}
	st.Definition = maskDefinition(st.Definition)
	for i := range st.Copies {
		st.Copies[i].Definition, st.Copies[i].Metadata = nil, nil
	}
	writeJSON(w, http.StatusOK, st)
}

// maxHistory bounds the events and log lines one page asks for.
const maxHistory = 5000

// tailParam reads ?tail= (default def, at most maxHistory).
func tailParam(r *http.Request, def int) (int, error) {
	v := r.URL.Query().Get("tail")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxHistory {
		return 0, v1.BadRequest("tail %q: want a number from 1 to %d", v, maxHistory)
	}
	return n, nil
}

func (s *Server) getWorkloadEvents(w http.ResponseWriter, r *http.Request) {
	cl, err := s.clientFor(r.URL.Query().Get("ns"))
	if err == nil {
		err = v1.ValidateToken("workload ID", r.PathValue("id"))
	}
	tail, terr := tailParam(r, 200)
	if err = errors.Join(err, terr); err != nil {
		fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	events := []v1.Event{}
	err = cl.Events(ctx, r.PathValue("id"), client.FeedOptions{Tail: tail}, func(ev v1.Event) error {
		events = append(events, ev)
		return nil
	})
	if err != nil && !errors.Is(err, client.ErrNoHistory) {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, events)
}

// getRecentEvents is the last events of every namespace the console follows, newest last.
func (s *Server) getRecentEvents(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	events := []v1.Event{}
	var errs []string
	for _, ns := range s.followed() {
		cl, err := s.clientFor(ns)
		if err == nil {
			err = cl.Events(ctx, "", client.FeedOptions{Tail: 50}, func(ev v1.Event) error {
				events = append(events, ev)
				return nil
			})
		}
		if err != nil && !errors.Is(err, client.ErrNoHistory) {
			errs = append(errs, "namespace "+ns+": "+err.Error())
		}
	}
	slices.SortStableFunc(events, func(a, b v1.Event) int { return a.Time.Compare(b.Time) })
	if len(events) > 100 {
		events = events[len(events)-100:]
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "errors": errs})
}

// logLine is a log line as the page shows it.
type logLine struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Line   string    `json:"line"`
}

func (s *Server) getLogs(w http.ResponseWriter, r *http.Request) {
	cl, err := s.clientFor(r.URL.Query().Get("ns"))
	tail, terr := tailParam(r, 200)
	if err = errors.Join(err, terr); err != nil {
		fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	lines := []logLine{}
	err = cl.Logs(ctx, r.PathValue("id"), client.FeedOptions{Tail: tail}, func(l client.LogLine) error {
		lines = append(lines, logLine{l.Time, l.Stream, l.Line})
		return nil
	})
	if err != nil && !errors.Is(err, client.ErrNoHistory) {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, lines)
}
