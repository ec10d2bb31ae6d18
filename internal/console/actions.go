package console

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// actionTimeout bounds an action: a stop waits for its grace period (10 s by default;
// longer ones are a CLI matter).
const actionTimeout = 2 * time.Minute

// maxBody bounds an action's JSON body.
const maxBody = 4 << 10

// readBody decodes a POST's JSON body into v (an empty body leaves v as it is); it must be
// application/json, which a plain HTML form cannot send.
func readBody(r *http.Request, v any) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return v1.BadRequest("Content-Type %q: want application/json", r.Header.Get("Content-Type"))
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && err != io.EOF {
		return v1.BadRequest("request body: %v", err)
	}
	return nil
}

// act runs one action with the request's JSON body in req and answers its result.
func act[T any](w http.ResponseWriter, r *http.Request, req *T, do func(ctx context.Context) (any, error)) {
	if err := readBody(r, req); err != nil {
		fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	out, err := do(ctx)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

type noBody struct{}

func (s *Server) postStop(w http.ResponseWriter, r *http.Request) {
	act(w, r, &noBody{}, func(ctx context.Context) (any, error) {
		info, err := s.cl.StopWorkload(ctx, r.PathValue("id"), v1.StopRequest{})
		if err != nil {
			return nil, err
		}
		return masked(info), nil
	})
}

func (s *Server) postRemove(w http.ResponseWriter, r *http.Request) {
	act(w, r, &noBody{}, func(ctx context.Context) (any, error) {
		info, err := s.cl.RemoveWorkload(ctx, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		return masked(info), nil
	})
}

type cloneBody struct {
	Name string `json:"name"`
}

func (s *Server) postClone(w http.ResponseWriter, r *http.Request) {
	var b cloneBody
	act(w, r, &b, func(ctx context.Context) (any, error) {
		if b.Name != "" {
			if err := v1.ValidateToken("name", b.Name); err != nil {
				return nil, err
			}
		}
		info, err := s.cl.CloneWorkload(ctx, r.PathValue("id"), client.CloneOptions{Name: b.Name})
		if err != nil {
			return nil, err
		}
		return masked(info), nil
	})
}

type scaleBody struct {
	Replicas *int `json:"replicas"`
}

// postScale scales replica group {id} of namespace ?ns=.
func (s *Server) postScale(w http.ResponseWriter, r *http.Request) {
	var b scaleBody
	act(w, r, &b, func(ctx context.Context) (any, error) {
		if b.Replicas == nil || *b.Replicas < 0 || *b.Replicas > v1.MaxReplicas {
			return nil, v1.BadRequest("replicas: want a number from 0 to %d", v1.MaxReplicas)
		}
		cl, err := s.clientFor(r.URL.Query().Get("ns"))
		if err != nil {
			return nil, err
		}
		st, err := cl.Group(ctx, r.PathValue("id"), v1.GroupRequest{Op: v1.GroupScale, Replicas: *b.Replicas})
		if err != nil {
			return nil, err
		}
		st.Definition = maskDefinition(st.Definition)
		for i := range st.Copies {
			st.Copies[i].Definition, st.Copies[i].Metadata = nil, nil
		}
		return st, nil
	})
}

type lameduckBody struct {
	Delay string `json:"delay"`
}

func (s *Server) postLameduck(w http.ResponseWriter, r *http.Request) {
	b := lameduckBody{Delay: "30s"}
	act(w, r, &b, func(ctx context.Context) (any, error) {
		d, err := time.ParseDuration(b.Delay)
		if err != nil || d < 0 {
			return nil, v1.BadRequest("delay %q: want a duration such as 30s", b.Delay)
		}
		return s.cl.Lameduck(ctx, r.PathValue("id"), d)
	})
}
