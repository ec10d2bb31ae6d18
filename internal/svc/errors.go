package svc

import (
	"context"
	"errors"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// ErrNoReply tells the adapter to stay silent: the request was meant for another responder.
var ErrNoReply = errors.New("no reply")

// ErrStopped answers a request that arrives while the server is stopping.
var ErrStopped = v1.Errorf(v1.CodeUnavailable, "the service is shutting down")

// ErrNoResponders means nothing listens on a fan-out's subject: no node answered. A read
// must say so, never answer with an empty result.
var ErrNoResponders = errors.New("no responders")

// busy is the details of a 503 a namespace's budget gave (Endpoint.PerNamespace): the
// request was not carried out, and may be asked again once the namespace's others finish.
type busy struct {
	Busy bool `json:"busy"`
}

// Busy is the error a namespace over its budget of an endpoint is answered with.
func Busy(ns string, most int, verb string) *v1.Error {
	e := v1.Errorf(v1.CodeUnavailable, "namespace %s has %d %s requests in flight on this node, the most one namespace may have: try again once some have finished", ns, most, verb)
	e.Details = busy{Busy: true}
	return e
}

// AskAgain marks e, a 503 of a request that was not carried out and can be in a moment,
// as Busy: RetryBusy asks again.
func AskAgain(e *v1.Error) *v1.Error {
	e.Details = busy{Busy: true}
	return e
}

// IsBusy tells whether err is a Busy answer (as it came over NATS too): nothing was done.
func IsBusy(err error) bool {
	var e *v1.Error
	if !errors.As(err, &e) || e.ErrorCode != v1.CodeUnavailable {
		return false
	}
	switch d := e.Details.(type) {
	case busy:
		return d.Busy
	case map[string]any:
		b, _ := d["busy"].(bool)
		return b
	}
	return false
}

// RetryBusy calls f until it returns anything but a Busy answer, waiting 20 ms and then
// twice as long each time up to 500 ms between calls, for as long as ctx lasts (the
// last answer when it ends): a namespace at its budget is answered 503 at once, and its
// request is carried out once one of its others has finished.
func RetryBusy(ctx context.Context, f func() error) error {
	wait := 20 * time.Millisecond
	for {
		err := f()
		if !IsBusy(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}
