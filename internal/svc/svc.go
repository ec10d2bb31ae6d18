// Package svc is the one adapter between NATS micro requests and plain Go functions, and
// the matching request helpers: decode, validate, call, map the error. A Server owns a
// micro service and the handlers it runs: they get a context that ends when the server
// stops, detached handlers are waited for, and a panic becomes a 500 reply.
package svc

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/zap"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Validator is implemented by request types that can check themselves.
type Validator interface{ Validate() error }

// Request is what a handler sees of a micro request: its subject and headers, and the
// subject's tokens, parsed and validated once by the endpoint's Tokens.
type Request struct {
	Subject string
	Headers micro.Headers
	// Namespace is the <ns> token of a control subject ("" on other subjects).
	Namespace string
	// ID is the subject's trailing identifier (a workload, bid, node, nexlet or secret),
	// "" when the subject has none.
	ID string
	// ack, when the request asked for it (Nex-Ack), acknowledges it at once.
	ack func(deadline time.Time)
}

// Ack tells the requester, before the answer, that this responder owns what the request
// is about and will answer by deadline (see Lookup). It does nothing when the request did
// not ask for it, and acknowledges once.
func (r *Request) Ack(deadline time.Time) {
	if r.ack != nil {
		r.ack(deadline)
		r.ack = nil
	}
}

// Func is a handler: it decodes data itself (see Handle) and returns the reply value.
type Func func(ctx context.Context, r *Request, data []byte) (any, error)

// Handle adapts fn into a Func: an empty body decodes as the zero Req, a Validator is
// checked before fn runs.
func Handle[Req, Resp any](fn func(ctx context.Context, r *Request, req *Req) (Resp, error)) Func {
	return func(ctx context.Context, r *Request, data []byte) (any, error) {
		req := new(Req)
		if len(data) > 0 {
			if err := json.Unmarshal(data, req); err != nil {
				return nil, v1.BadRequest("decode request: %v", err)
			}
		}
		if v, ok := any(req).(Validator); ok {
			if err := v.Validate(); err != nil {
				return nil, err
			}
		}
		return fn(ctx, r, req)
	}
}

// Config describes a Server.
type Config struct {
	micro.Config
	// Logger logs panics and (through OnError's default) failed requests.
	Logger *zap.Logger
	// OnError is called with every error reply (default: 5xx logged as warnings).
	OnError func(subject string, e *v1.Error)
}

// Server is a micro service whose handlers live and die with it.
type Server struct {
	nc      *nats.Conn
	svc     micro.Service
	log     *zap.Logger
	onError func(subject string, e *v1.Error)
	errs    *ErrorCounts

	ctx    context.Context // handlers' context: ends when Stop gives up waiting
	cancel context.CancelFunc

	mu       sync.Mutex
	stopping bool
	running  sync.WaitGroup // handlers in flight, detached or not
	foreign  foreignReplies
}

// NewServer adds a micro service on nc.
func NewServer(nc *nats.Conn, cfg Config) (*Server, error) {
	s := &Server{nc: nc, log: cfg.Logger, onError: cfg.OnError, errs: &ErrorCounts{}}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.onError == nil {
		s.onError = func(subject string, e *v1.Error) {
			if e.Code >= 500 {
				s.log.Warn("request failed", zap.String("subject", subject), zap.String("error_code", e.ErrorCode), zap.String("error", e.Message))
			}
		}
	}
	mc := cfg.Config
	mc.StatsHandler = s.errs.Stats
	ms, err := micro.AddService(nc, mc)
	if err != nil {
		return nil, fmt.Errorf("add %s micro service: %w", mc.Name, err)
	}
	s.svc = ms
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Endpoint is one endpoint of a Server.
type Endpoint struct {
	Name    string
	Subject string
	Handler Func
	// Tokens parses the subject into the request's Namespace and ID (nil: none).
	Tokens func(subject string) (ns, id string, err error)
	// Concurrent runs each request in its own goroutine (at most this many at once),
	// so one slow request (a stop waiting out its grace period) does not hold up the
	// others queued on the same subscription. 0 handles requests one at a time.
	Concurrent int
	// PerNamespace, with Tokens, counts each namespace's requests apart instead (0: not):
	// one namespace has at most this many in flight, and the next is answered 503 at once,
	// so a tenant holding many slow requests (stops of a workload that ignores SIGTERM,
	// long execs) makes no other namespace's wait, the operator's included. Concurrent
	// still bounds requests whose subject names no namespace.
	PerNamespace int
	// Owns, with PerNamespace, says whether this instance has what a request is about
	// (nil: every request is its own): one it does not own is answered outside the budget.
	Owns func(ns, id string) bool
	// Headers, when set, are added to every reply (fan-out bookkeeping).
	Headers func() micro.Headers
	// EveryInstance disables micro's queue group: every instance answers.
	EveryInstance bool
	// FireAndForget takes requests without a reply subject too (published, not asked):
	// every other endpoint drops them, as it drops those whose reply is not an inbox
	// (InboxReply).
	FireAndForget bool
}

// Add serves ep, and returns once the server has its subscription.
func (s *Server) Add(ep Endpoint) error {
	opts := []micro.EndpointOpt{micro.WithEndpointSubject(ep.Subject), micro.WithEndpointMetadata(map[string]string{"api": v1.APIVersion})}
	if ep.EveryInstance {
		opts = append(opts, micro.WithEndpointQueueGroupDisabled())
	}
	if err := s.svc.AddEndpoint(ep.Name, s.errs.Count(ep.Name, s.handler(ep)), opts...); err != nil {
		return fmt.Errorf("add endpoint %s: %w", ep.Name, err)
	}
	// once Add returns the endpoint is reachable from any connection: its subscription
	// is at the server, not in this connection's buffer
	if err := s.nc.FlushTimeout(addFlushTimeout); err != nil {
		return fmt.Errorf("add endpoint %s: %w", ep.Name, err)
	}
	return nil
}

// StopGrace is how long a stopping server's owner (a node, a nexlet) lets requests in
// flight finish before their context ends.
const StopGrace = 5 * time.Second

// addFlushTimeout bounds the wait for the server to confirm a new endpoint.
const addFlushTimeout = 5 * time.Second

// Context ends when the server has stopped waiting for its handlers.
func (s *Server) Context() context.Context { return s.ctx }

// Stop stops taking requests, lets the ones in flight finish until ctx ends, then
// cancels their context and waits until every handler has returned. Requests that were
// already queued when it began are answered 503.
func (s *Server) Stop(ctx context.Context) {
	s.mu.Lock()
	already := s.stopping
	s.stopping = true
	s.mu.Unlock()
	if !already {
		_ = s.svc.Stop()
	}
	done := make(chan struct{})
	go func() {
		s.running.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		<-done
	}
	s.cancel()
}

// enter counts a request in, unless the server is stopping.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.running.Add(1)
	return true
}

func (s *Server) handler(ep Endpoint) micro.Handler {
	var sem chan struct{}
	if ep.Concurrent > 0 {
		sem = make(chan struct{}, ep.Concurrent)
	}
	var per *budget
	if sem != nil && ep.PerNamespace > 0 && ep.Tokens != nil {
		per = &budget{most: ep.PerNamespace, held: map[string]int{}, warned: map[string]time.Time{}}
	}
	return micro.HandlerFunc(func(mr micro.Request) {
		if Delivered(ep.Subject, mr.Subject(), mr.Headers()) {
			// JetStream delivered it here (a push consumer's deliver subject) with the
			// subject it was stored under: anyone allowed to create a consumer on any
			// stream of the account can aim one at an endpoint, but nobody but a publisher
			// to the endpoint's subject can make its request. Dropped, unanswered.
			s.log.Warn("dropped a message JetStream delivered to an endpoint (a push consumer aimed at it?)",
				zap.String("endpoint", ep.Name), zap.String("subject", mr.Subject()))
			return
		}
		if reply := mr.Reply(); !InboxReply(reply) && (reply != "" || !ep.FireAndForget) {
			s.foreign.drop(s.log, ep.Name, mr.Subject(), reply) // see reply.go
			return
		}
		if !s.enter() {
			s.reply(ep, mr, nil, ErrStopped)
			return
		}
		if sem == nil {
			defer s.running.Done()
			s.serve(ep, mr)
			return
		}
		// micro reads the request again once this returns: replies of a detached
		// handler go through the connection, reads stay micro's.
		d := &detached{Request: mr, nc: s.nc}
		if per != nil {
			if ns, id, err := ep.Tokens(mr.Subject()); err == nil { // else refused by serve
				s.budgeted(ep, per, d, ns, id)
				return
			}
		}
		sem <- struct{}{}
		go func() {
			defer s.running.Done()
			defer func() { <-sem }()
			s.serve(ep, d)
		}()
	})
}

// budgeted serves a request of namespace ns on an endpoint with a budget per namespace,
// without ever waiting here: the subscription's one goroutine must not block, since
// every namespace's requests, the operator's too, queue behind it. A request for what
// this node does not have (Owns) is answered at once, outside the budget: only the owner
// may answer "busy" (another node's 503 would be taken for the answer). Each namespace
// holds at most per.most requests in flight; the next is answered 503. The caller has
// entered the server.
func (s *Server) budgeted(ep Endpoint, per *budget, d *detached, ns, id string) {
	if ep.Owns != nil && !ep.Owns(ns, id) {
		go func() {
			defer s.running.Done()
			s.serve(ep, d)
		}()
		return
	}
	if !per.take(ns) {
		defer s.running.Done()
		if per.warn(ns, time.Now()) { // a flood is one line a minute, not one a request
			s.log.Warn("a namespace holds its share of an endpoint's requests: more are refused (503) until some finish",
				zap.String("namespace", ns), zap.String("endpoint", ep.Name), zap.Int("in_flight", per.most))
		}
		// answered, not logged as a failed request: warn said it once
		s.respondError(d, Busy(ns, per.most, ep.Name), replyHeaders(ep))
		return
	}
	go func() {
		defer s.running.Done()
		defer per.give(ns)
		s.serve(ep, d)
	}()
}

// budget counts each namespace's requests in flight on one endpoint, up to most each.
type budget struct {
	mu     sync.Mutex
	most   int
	held   map[string]int
	warned map[string]time.Time // when a refusal of the namespace was last logged
}

// warn says whether a refusal of ns is to be logged: the first in a minute.
func (b *budget) warn(ns string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.warned[ns]) < time.Minute {
		return false
	}
	b.warned[ns] = now
	return true
}

func (b *budget) take(ns string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[ns] >= b.most {
		return false
	}
	b.held[ns]++
	return true
}

func (b *budget) give(ns string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[ns]--; b.held[ns] <= 0 {
		delete(b.held, ns)
	}
}

// serve runs ep's handler for one request; a panic is logged with its stack and answered 500.
func (s *Server) serve(ep Endpoint, mr micro.Request) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panicked", zap.String("endpoint", ep.Name), zap.String("subject", mr.Subject()),
				zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			s.reply(ep, mr, nil, v1.Errorf(v1.CodeInternal, "internal error in %s (logged by the service)", ep.Name))
		}
	}()
	r := Request{Subject: mr.Subject(), Headers: mr.Headers()}
	if reply := mr.Reply(); reply != "" && r.Headers.Get(v1.HeaderAck) != "" {
		r.ack = func(deadline time.Time) {
			h := nats.Header{}
			if ep.Headers != nil {
				for k, v := range ep.Headers() {
					h[k] = v
				}
			}
			h.Set(v1.HeaderAck, deadline.UTC().Format(time.RFC3339Nano))
			_ = s.nc.PublishMsg(&nats.Msg{Subject: reply, Header: h})
		}
	}
	var err error
	if ep.Tokens != nil {
		r.Namespace, r.ID, err = ep.Tokens(r.Subject)
	}
	var resp any
	if err == nil {
		resp, err = ep.Handler(s.ctx, &r, mr.Data())
	}
	if errors.Is(err, ErrNoReply) {
		return
	}
	s.reply(ep, mr, resp, err)
}

// respondError answers e (reply logs it through onError first).
func (s *Server) respondError(mr micro.Request, e *v1.Error, hdr []micro.RespondOpt) {
	body, _ := json.Marshal(e)
	_ = mr.Error(e.HTTPCode(), e.Message, body, hdr...)
}

func replyHeaders(ep Endpoint) []micro.RespondOpt {
	if ep.Headers == nil {
		return nil
	}
	return []micro.RespondOpt{micro.WithHeaders(ep.Headers())}
}

func (s *Server) reply(ep Endpoint, mr micro.Request, resp any, err error) {
	hdr := replyHeaders(ep)
	if err != nil {
		e := v1.AsError(err)
		s.onError(mr.Subject(), e)
		s.respondError(mr, e, hdr)
		return
	}
	raw, ok := resp.(json.RawMessage) // already JSON: no second encoding pass
	if !ok {
		var err error
		if raw, err = json.Marshal(resp); err != nil {
			s.reply(ep, mr, nil, v1.Errorf(v1.CodeInternal, "encode reply: %v", err))
			return
		}
	}
	if len(raw) > compressAbove { // a list of thousands of workloads: JSON shrinks 10-20 times
		if z, err := gzipped(raw); err == nil {
			raw = z
			h := micro.Headers{v1.HeaderEncoding: []string{"gzip"}}
			if ep.Headers != nil {
				for k, v := range ep.Headers() {
					h[k] = v
				}
			}
			hdr = []micro.RespondOpt{micro.WithHeaders(h)}
		}
	}
	_ = mr.Respond(raw, hdr...)
}

// compressAbove is the size of a reply above which it is sent gzipped: a NATS message
// holds at most max_payload (1 MiB by default).
const compressAbove = 64 << 10

// maxReplyBytes bounds a reply once unzipped.
const maxReplyBytes = 512 << 20

// gzipped and gunzipped use klauspost/compress's gzip (the same format as the standard
// library's, which nats-server and nats.go use already): about twice as fast to compress
// a list of workloads (BenchmarkGzipList).
func gzipped(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b)/8 + 64)
	w, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gunzipped(b []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	// the trailer's size (mod 2^32) sizes the buffer once: no more than deflate can expand
	// these bytes to (1,032 times), nor than the bound
	var out bytes.Buffer
	if n := len(b); n >= 4 {
		out.Grow(int(min(uint64(binary.LittleEndian.Uint32(b[n-4:])), 1032*uint64(n), maxReplyBytes)) + bytes.MinRead)
	}
	if _, err := out.ReadFrom(io.LimitReader(r, maxReplyBytes+1)); err != nil {
		return nil, err
	}
	if out.Len() > maxReplyBytes {
		return nil, fmt.Errorf("reply larger than %d bytes", maxReplyBytes)
	}
	return out.Bytes(), nil
}

// ControlTokens parses a control subject ($NEX.SVC.v1.<ns>.control.<VERB>[.<id>]): the
// namespace, and the trailing ID validated as idName ("workload ID", "bid ID").
func ControlTokens(idName string) func(string) (string, string, error) {
	return func(subject string) (string, string, error) {
		ns, id, err := v1.ParseControlSubject(subject)
		if err != nil {
			return "", "", err
		}
		if err := v1.ValidateNamespace(ns); err != nil {
			return "", "", err
		}
		if idName != "" {
			if err := v1.ValidateToken(idName, id); err != nil {
				return "", "", err
			}
		}
		return ns, id, nil
	}
}

// LastToken parses the last token of a subject as the ID, validated as idName.
func LastToken(idName string) func(string) (string, string, error) {
	return func(subject string) (string, string, error) {
		id := subject
		for i := len(subject) - 1; i >= 0; i-- {
			if subject[i] == '.' {
				id = subject[i+1:]
				break
			}
		}
		return "", id, v1.ValidateToken(idName, id)
	}
}

// detached is a request answered after micro's handler has returned. micro's own error
// count does not see its error replies; ErrorCounts (through the request it wraps) and
// OnError do. Reading the request (data, headers, subjects) stays micro's; only the
// replies go around it.
type detached struct {
	micro.Request
	nc *nats.Conn
}

func (d *detached) Respond(data []byte, opts ...micro.RespondOpt) error {
	reply := d.Reply()
	if reply == "" {
		return nil
	}
	m := &nats.Msg{Subject: reply, Data: data}
	for _, o := range opts {
		o(m)
	}
	return d.nc.PublishMsg(m)
}

func (d *detached) RespondJSON(v any, opts ...micro.RespondOpt) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return d.Respond(b, opts...)
}

func (d *detached) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	if c, ok := d.Request.(interface{ countError(string) }); ok {
		c.countError(description)
	}
	hdr := func(m *nats.Msg) {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(micro.ErrorHeader, description)
		m.Header.Set(micro.ErrorCodeHeader, code)
	}
	return d.Respond(data, append(opts, hdr)...)
}

// DecodeReply turns a reply message into resp, or into a *v1.Error when the responder
// sent a micro error.
func DecodeReply(header map[string][]string, data []byte, resp any) error {
	if resp == nil {
		return replyError(header, data)
	}
	body, err := ReplyBody(header, data)
	if err != nil {
		return err
	}
	if raw, ok := resp.(*json.RawMessage); ok { // passed through as is, not re-validated
		*raw = append((*raw)[:0], body...)
		return nil
	}
	if err := json.Unmarshal(body, resp); err != nil {
		return v1.Errorf(v1.CodeInternal, "decode reply: %v", err)
	}
	return nil
}

// ReplyBody is a reply's JSON (unzipped when it came gzipped), or the error it carries.
func ReplyBody(header map[string][]string, data []byte) ([]byte, error) {
	if err := replyError(header, data); err != nil {
		return nil, err
	}
	if first(header, v1.HeaderEncoding) == "gzip" {
		body, err := gunzipped(data)
		if err != nil {
			return nil, v1.Errorf(v1.CodeInternal, "decode reply: %v", err)
		}
		return body, nil
	}
	return data, nil
}

// replyError is the error a micro error reply carries (nil for any other reply).
func replyError(header map[string][]string, data []byte) error {
	if h := first(header, micro.ErrorCodeHeader); h != "" {
		e := &v1.Error{}
		if json.Unmarshal(data, e) != nil || e.ErrorCode == "" {
			code, _ := strconv.Atoi(h)
			e = &v1.Error{Code: code, ErrorCode: v1.CodeInternal, Message: first(header, micro.ErrorHeader)}
		}
		return e
	}
	return nil
}

func first(h map[string][]string, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// ErrorCounts counts the error replies of requests answered after micro's handler has
// returned (Endpoint.Concurrent), which micro's own NumErrors cannot see. Stats is a micro
// StatsHandler: `nats micro info` and `nats micro stats --json` show the counts as each
// endpoint's data.
type ErrorCounts struct {
	mu sync.Mutex
	m  map[string]*EndpointErrors
}

// EndpointErrors is one endpoint's count of error replies, and the last one.
type EndpointErrors struct {
	Errors    uint64 `json:"errors"`
	LastError string `json:"last_error,omitempty"`
}

// Count wraps the handler of endpoint name so that its detached error replies are counted.
func (c *ErrorCounts) Count(name string, h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) { h.Handle(&counted{Request: r, c: c, name: name}) })
}

// Stats reports the counts of one endpoint (nil when it has answered no error).
func (c *ErrorCounts) Stats(e *micro.Endpoint) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if x, ok := c.m[e.Name]; ok {
		return *x
	}
	return nil
}

func (c *ErrorCounts) add(name, desc string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*EndpointErrors{}
	}
	x, ok := c.m[name]
	if !ok {
		x = &EndpointErrors{}
		c.m[name] = x
	}
	x.Errors++
	x.LastError = desc
}

type counted struct {
	micro.Request
	c    *ErrorCounts
	name string
}

func (r *counted) countError(desc string) { r.c.add(r.name, desc) }

// Delivered says whether a message that reached a subscription on pattern was not
// published to it but delivered by JetStream: a push consumer's stored message (under the
// subject it was stored with), or its idle heartbeat or flow control request (a status
// message, header Status, sent to the deliver subject itself). Anyone who may create a
// consumer on a stream of the account can aim one at any subject; only a publisher to the
// subject can make a real request.
//
// A stored message JetStream hands out otherwise (a pull consumer's, to the reply subject
// of a MSG.NEXT the tenant chose; a direct get's answer) carries the Nats-Stream header
// or a $JS.ACK reply subject: delivered too. (A direct get asked for without headers
// carries neither: tenants may not make direct gets, creds.TenantPermissions.)
func Delivered(pattern, subject string, header interface{ Get(string) string }) bool {
	return header.Get("Status") != "" || header.Get("Nats-Stream") != "" || !SubjectMatches(pattern, subject)
}

// DeliveredMsg is Delivered for a message that reached a subscription on pattern: one
// whose reply subject is a JetStream acknowledgement's was handed out by a consumer too,
// and JetStream's own JSON (JetStreamJSON) is no one's message.
func DeliveredMsg(pattern string, m *nats.Msg) bool {
	return strings.HasPrefix(m.Reply, "$JS.ACK.") || Delivered(pattern, m.Subject, m.Header) ||
		(m.Reply == "" && JetStreamJSON(m.Header, m.Data))
}

var (
	// jsAnswerPrefix starts every JetStream API answer: the server marshals its type first.
	jsAnswerPrefix = []byte(`{"type":"io.nats.jetstream.api.v1.`)
	// pubAckPrefix starts every acknowledgement of a publish to a stream, and
	// pubNakPrefix every refusal of one (whose description may hold the publisher's
	// text: "wrong last msg ID: <its own Nats-Msg-Id>").
	pubAckPrefix = []byte(`{"stream":"`)
	pubNakPrefix = []byte(`{"error":{`)
)

// JetStreamJSON says whether a message without headers is JetStream's answer to an API
// request or its acknowledgement of a publish. JetStream sends them, unchecked, to the
// reply subject their asker chose: a tenant who asked about its own bucket, or published
// to it, with another namespace's function trigger, log or history subject as the reply
// subject, ran that function on the answer, or had it shown, with text of its own (a
// consumer's description), as that namespace's workload's output.
func JetStreamJSON(h nats.Header, data []byte) bool {
	return len(h) == 0 && (bytes.HasPrefix(data, jsAnswerPrefix) || bytes.HasPrefix(data, pubAckPrefix) || bytes.HasPrefix(data, pubNakPrefix))
}

// SubjectMatches says whether subject is one that pattern (with * and > wildcards)
// subscribes to.
func SubjectMatches(pattern, subject string) bool {
	p, t := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(t) > i
		}
		if i >= len(t) || (tok != "*" && tok != t[i]) {
			return false
		}
	}
	return len(p) == len(t)
}
