// Package retry is how nex tries again: one doubling backoff for every loop that waits
// between tries, and the classifiers that tell a failure worth waiting out (a server not
// up yet, a stream electing its leader, a request with no answer in time) from one that
// waiting will not cure (credentials, permissions, a request the server refuses).
package retry

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Backoff is a pause between tries that starts at First and doubles up to Max.
// The zero value waits First = Max = 0 (no pause). It is not safe for concurrent use.
type Backoff struct {
	First, Max time.Duration
	next       time.Duration
}

// Next returns the pause before the next try and doubles the one after it.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = b.First
	}
	d := b.next
	b.next = min(2*b.next, b.Max)
	return d
}

// Peek is the pause Next would return, without taking it.
func (b *Backoff) Peek() time.Duration {
	if b.next == 0 {
		return b.First
	}
	return b.next
}

// Reset starts the pauses over from First (a try that succeeded, a run that was healthy).
func (b *Backoff) Reset() { b.next = 0 }

// Wait pauses for Next, or at most limit when limit is positive; it returns false, at
// once, when ctx ends first.
func (b *Backoff) Wait(ctx context.Context, limit time.Duration) bool {
	d := b.Next()
	if limit > 0 {
		d = min(d, limit)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Policy says how Do tries: each try bounded by Attempt (0: by ctx only), pauses from
// Backoff, no new try once Budget has passed (0: until ctx ends), and only failures
// Transient says may pass (nil: every failure).
type Policy struct {
	Backoff   Backoff
	Attempt   time.Duration
	Budget    time.Duration
	Transient func(error) bool
}

// Do runs op until it succeeds, fails for good, ctx ends, or the budget would be passed
// by the next pause; it returns op's last error.
func Do(ctx context.Context, p Policy, op func(context.Context) error) error {
	var until time.Time
	if p.Budget > 0 {
		until = time.Now().Add(p.Budget)
	}
	for {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if p.Attempt > 0 {
			actx, cancel = context.WithTimeout(ctx, p.Attempt)
		}
		err := op(actx)
		cancel()
		if err == nil || (p.Transient != nil && !p.Transient(err)) || ctx.Err() != nil {
			return err
		}
		if !until.IsZero() && time.Now().Add(p.Backoff.Peek()).After(until) {
			return err
		}
		if !p.Backoff.Wait(ctx, 0) {
			return err
		}
	}
}

// Transient tells a NATS or JetStream failure that may pass on its own within seconds:
// a request with no answer in time, nobody listening yet, a stream electing its leader.
func Transient(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrNoStreamResponse)
}

// JetStreamPermanent tells a JetStream failure that waiting will not cure (no
// permission, JetStream off, a request the server refuses) from one of a cluster that is
// not ready yet (no meta leader, a stream electing its leader, too few servers routed so
// far, no answer in time).
// jsNoSuitablePeers is JetStream's "no suitable peers for placement, peer offline"
// (10005): a stream of 3 replicas asked for while a server of a cluster booting at once
// is not up yet (TestClusterBootsAtOnce: a nexd gave up on it at start, 1 round in 10).
const jsNoSuitablePeers = 10005

func JetStreamPermanent(err error) bool {
	if errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, nats.ErrAuthorization) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		if apiErr.ErrorCode == jsNoSuitablePeers {
			return false // a 400, but a server still starting cures it
		}
		return apiErr.Code < 500 || apiErr.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled || apiErr.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabledForAccount
	}
	return false
}

// PermanentConn tells a connection failure that waiting will not cure (credentials,
// TLS) from a server that is not up yet (refused, unreachable, no answer in time).
func PermanentConn(err error) bool {
	var ne net.Error
	switch {
	case errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrTimeout), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return false
	}
	return true
}
