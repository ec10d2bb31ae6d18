// Package console is the web console of `nex ui`: an HTTP server in the CLI's process
// that shows the cluster live and acts on it through pkg/client, with the user's own NATS
// connection. It adds no NATS endpoint: what the user may not do, the console cannot do.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/natsconn"
)

//go:embed web
var webFS embed.FS

// Config is what a console works with.
type Config struct {
	// Conn is the user's NATS connection; every request goes through pkg/client on it.
	Conn *natsconn.Conn
	// Namespace is the namespace the console works in (system: every namespace).
	Namespace string
	// Version is shown in the page's header.
	Version string
}

// Server is one console: its session secrets, its live-update hub and its handlers.
type Server struct {
	cfg   Config
	cl    *client.Client
	hub   *Hub
	token string // the CSRF token: in the page, sent back on every POST
	key   string // the session key: in the URL nex ui prints, then sent by the page (KeyHeader)
	page  string // the page's path, /<random>/: see Page
	hosts map[string]bool
	index []byte

	mu      sync.Mutex
	clients map[string]*client.Client // per namespace, for its feeds
	spaces  map[string]bool           // namespaces whose events are followed
	bump    chan struct{}             // a namespace was added to spaces
}

// New returns a console for a server that will listen on addr (host:port, the port
// known: the Host check compares with it).
func New(cfg Config, addr string) (*Server, error) {
	cl, err := client.On(cfg.Conn, cfg.Namespace)
	if err != nil {
		return nil, err
	}
	hosts, _, err := allowedHosts(addr)
	if err != nil {
		return nil, fmt.Errorf("console address %q: %w", addr, err)
	}
	s := &Server{
		cfg: cfg, cl: cl, hub: NewHub(), token: randomHex(), key: randomHex(), hosts: hosts, page: "/" + randomHex()[:32] + "/",
		clients: map[string]*client.Client{cfg.Namespace: cl}, spaces: map[string]bool{cfg.Namespace: true},
		bump: make(chan struct{}, 1),
	}
	if cfg.Namespace == v1.SystemNamespace {
		s.spaces[defaultNamespace] = true // where workloads go when none is named
	}
	page, err := fs.ReadFile(webFS, "web/index.html")
	if err != nil {
		return nil, err
	}
	s.index = bytes.Replace(page, []byte("{{TOKEN}}"), []byte(s.token), 1)
	return s, nil
}

// defaultNamespace is followed too by a console of the system namespace.
const defaultNamespace = "default"

func randomHex() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Hub is the console's live-update hub.
func (s *Server) Hub() *Hub { return s.hub }

// Token is the session's CSRF token (tests send it as a page would).
func (s *Server) Token() string { return s.token }

// Key is the session key; URL carries it.
func (s *Server) Key() string { return s.key }

// URL is the address to open: the overview, the session key in its fragment, which the
// browser keeps from every server and the page keeps in its origin's storage.
func (s *Server) URL(addr string) string { return "http://" + URLHost(addr) + s.page + "#key=" + s.key }

// Page is the path of the page and its script, random for each console: a listener on
// the console's port before it ran served "/" cacheable for a year, and the operator's
// browser later showed that page, in the console's origin, for the URL nex ui printed;
// it read the key from the fragment and drove the console (a review). No page of a
// path the listener could know is ever the console's.
func (s *Server) Page() string { return s.page }

// Close stops the feeds' readers.
func (s *Server) Close() {
	s.hub.Close()
}

// Handler is the console's HTTP handler, its checks included.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(static)
	mux.HandleFunc("GET "+s.page+"{$}", s.serveIndex)
	mux.Handle("GET "+s.page+"app.js", http.StripPrefix(s.page[:len(s.page)-1], files))
	mux.Handle("GET "+s.page+"style.css", http.StripPrefix(s.page[:len(s.page)-1], files))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		refuse(w, http.StatusNotFound, "not_found", "open the URL `nex ui` printed: the console's page is at a path of its own")
	})
	mux.HandleFunc("GET /api/session", s.getSession)
	mux.HandleFunc("GET /api/nodes", s.getNodes)
	mux.HandleFunc("GET /api/nodes/{id}", s.getNode)
	mux.HandleFunc("GET /api/workloads", s.getWorkloads)
	mux.HandleFunc("GET /api/workloads/{id}", s.getWorkload)
	mux.HandleFunc("GET /api/workloads/{id}/events", s.getWorkloadEvents)
	mux.HandleFunc("GET /api/workloads/{id}/logs", s.getLogs)
	mux.HandleFunc("GET /api/groups/{id}", s.getGroup)
	mux.HandleFunc("GET /api/events", s.getRecentEvents)
	mux.HandleFunc("GET /api/live/events", s.liveEvents)
	mux.HandleFunc("GET /api/live/logs/{ns}/{id}", s.liveLogs)
	mux.HandleFunc("POST /api/workloads/{id}/stop", s.postStop)
	mux.HandleFunc("POST /api/workloads/{id}/clone", s.postClone)
	mux.HandleFunc("POST /api/workloads/{id}/remove", s.postRemove)
	mux.HandleFunc("POST /api/groups/{id}/scale", s.postScale)
	mux.HandleFunc("POST /api/nodes/{id}/lameduck", s.postLameduck)
	return s.guard(mux)
}

// Serve serves the console on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// requests end with ctx: the live streams return, and Shutdown does not wait for them
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		s.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(s.index)
}

// clientFor is the client of namespace ns: the console's own, or (from system) one of ns.
func (s *Server) clientFor(ns string) (*client.Client, error) {
	if ns == "" || ns == s.cfg.Namespace {
		return s.cl, nil
	}
	if err := v1.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if s.cfg.Namespace != v1.SystemNamespace {
		return nil, v1.Errorf(v1.CodeForbidden, "this console works in namespace %s, not %s", s.cfg.Namespace, ns)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[ns]; ok {
		return c, nil
	}
	c, err := client.On(s.cfg.Conn, ns)
	if err == nil {
		s.clients[ns] = c
	}
	return c, err
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is the body of every error answer: the API's own error code and message when
// the error came from the cluster.
type apiError struct {
	Code      int    `json:"code"`
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
}

func refuse(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: status, ErrorCode: code, Message: msg})
}

// fail answers err: an API error with its own code and message, anything else as 502
// (the cluster could not be asked).
func fail(w http.ResponseWriter, err error) {
	var e *v1.Error
	switch {
	case errors.As(err, &e):
		status := e.Code
		if status < 400 || status > 599 {
			status = http.StatusBadGateway
		}
		writeJSON(w, status, apiError{Code: e.Code, ErrorCode: e.ErrorCode, Message: err.Error()})
	case errors.Is(err, v1.ErrInvalidToken):
		refuse(w, http.StatusBadRequest, v1.CodeInvalidToken, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		refuse(w, http.StatusGatewayTimeout, v1.CodeTimeout, err.Error())
	default:
		refuse(w, http.StatusBadGateway, v1.CodeUnavailable, err.Error())
	}
}
