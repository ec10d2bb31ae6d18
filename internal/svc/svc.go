// Package svc is the one adapter between NATS micro requests and plain Go functions, and
// the matching request helpers: decode, validate, call, map the error.
package svc

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// ErrNoReply tells the adapter to stay silent: the request was meant for another responder.
var ErrNoReply = errors.New("no reply")

// Validator is implemented by request types that can check themselves.
type Validator interface{ Validate() error }

// Request is what a handler sees of a micro request.
type Request struct {
	Subject string
	Headers micro.Headers
}

// Options tune a handler.
type Options struct {
	// Headers, when set, are added to every reply (used for fan-out bookkeeping).
	Headers func() micro.Headers
	// OnError is called with every error reply (for logging).
	OnError func(subject string, e *v1.Error)
	// Concurrent runs each request in its own goroutine (at most this many at once),
	// so one slow request (a stop waiting out its grace period) does not hold up the
	// others queued on the same subscription. 0 handles requests one at a time.
	Concurrent int
	// Conn replies to requests handled concurrently (required with Concurrent): the reply
	// is published directly, not through micro's request, which micro reads again once the
	// handler has returned.
	Conn *nats.Conn
}

// Handler adapts fn into a micro.Handler. An empty body decodes as the zero Req.
func Handler[Req, Resp any](o Options, fn func(ctx context.Context, r Request, req *Req) (Resp, error)) micro.Handler {
	h := handle(o, fn)
	if o.Concurrent <= 0 {
		return micro.HandlerFunc(h)
	}
	if o.Conn == nil {
		panic("svc: Options.Concurrent needs Options.Conn")
	}
	sem := make(chan struct{}, o.Concurrent)
	return micro.HandlerFunc(func(mr micro.Request) {
		sem <- struct{}{}
		d := &detached{Request: mr, nc: o.Conn}
		go func() {
			defer func() { <-sem }()
			h(d)
		}()
	})
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

func handle[Req, Resp any](o Options, fn func(ctx context.Context, r Request, req *Req) (Resp, error)) func(micro.Request) {
	return func(mr micro.Request) {
		req := new(Req)
		var err error
		if len(mr.Data()) > 0 {
			if uerr := json.Unmarshal(mr.Data(), req); uerr != nil {
				err = v1.BadRequest("decode request: %v", uerr)
			}
		}
		if err == nil {
			if v, ok := any(req).(Validator); ok {
				err = v.Validate()
			}
		}
		var resp Resp
		if err == nil {
			resp, err = fn(context.Background(), Request{Subject: mr.Subject(), Headers: mr.Headers()}, req)
		}
		if errors.Is(err, ErrNoReply) {
			return
		}
		var hdr []micro.RespondOpt
		if o.Headers != nil {
			hdr = append(hdr, micro.WithHeaders(o.Headers()))
		}
		if err != nil {
			e := v1.AsError(err)
			if o.OnError != nil {
				o.OnError(mr.Subject(), e)
			}
			body, _ := json.Marshal(e)
			_ = mr.Error(e.HTTPCode(), e.Message, body, hdr...)
			return
		}
		if raw, ok := any(resp).(json.RawMessage); ok {
			_ = mr.Respond(raw, hdr...) // already JSON: no second encoding pass
			return
		}
		_ = mr.RespondJSON(resp, hdr...)
	}
}

// DecodeReply turns a reply message into resp, or into a *v1.Error when the responder
// sent a micro error.
func DecodeReply(header map[string][]string, data []byte, resp any) error {
	if h := first(header, micro.ErrorCodeHeader); h != "" {
		e := &v1.Error{}
		if json.Unmarshal(data, e) != nil || e.ErrorCode == "" {
			code, _ := strconv.Atoi(h)
			e = &v1.Error{Code: code, ErrorCode: v1.CodeInternal, Message: first(header, micro.ErrorHeader)}
		}
		return e
	}
	if resp == nil {
		return nil
	}
	if raw, ok := resp.(*json.RawMessage); ok { // passed through as is, not re-validated
		*raw = append((*raw)[:0], data...)
		return nil
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return v1.NewError(502, v1.CodeInternal, "decode reply: %v", err)
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
// returned (Options.Concurrent), which micro's own NumErrors cannot see. Stats is a micro
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
