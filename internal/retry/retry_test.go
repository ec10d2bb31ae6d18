package retry_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/retry"
)

func TestBackoffDoublesUpToMaxAndResets(t *testing.T) {
	b := retry.Backoff{First: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses %v, want %v ms", got, want)
		}
	}
	b.Reset()
	if p, n := b.Peek(), b.Next(); p != 100*time.Millisecond || n != p {
		t.Fatalf("after Reset: peek %v, next %v, want 100ms", p, n)
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	b := retry.Backoff{First: time.Hour, Max: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx, 0) {
		t.Fatal("Wait returned true on a cancelled context")
	}
	if !b.Wait(context.Background(), time.Millisecond) {
		t.Fatal("Wait with a limit did not return true")
	}
}

func TestDo(t *testing.T) {
	fast := retry.Backoff{First: time.Millisecond, Max: time.Millisecond}
	t.Run("transient failures are tried again until success", func(t *testing.T) {
		tries := 0
		err := retry.Do(context.Background(), retry.Policy{Backoff: fast, Transient: retry.Transient}, func(context.Context) error {
			if tries++; tries < 3 {
				return nats.ErrTimeout
			}
			return nil
		})
		if err != nil || tries != 3 {
			t.Fatalf("err %v after %d tries, want nil after 3", err, tries)
		}
	})
	t.Run("a permanent failure ends it at once", func(t *testing.T) {
		tries := 0
		perm := errors.New("refused")
		err := retry.Do(context.Background(), retry.Policy{Backoff: fast, Transient: retry.Transient}, func(context.Context) error {
			tries++
			return perm
		})
		if !errors.Is(err, perm) || tries != 1 {
			t.Fatalf("err %v after %d tries, want %v after 1", err, tries, perm)
		}
	})
	t.Run("the budget bounds it", func(t *testing.T) {
		tries := 0
		err := retry.Do(context.Background(), retry.Policy{Backoff: retry.Backoff{First: 20 * time.Millisecond, Max: 20 * time.Millisecond},
			Budget: 50 * time.Millisecond}, func(context.Context) error {
			tries++
			return nats.ErrTimeout
		})
		if !errors.Is(err, nats.ErrTimeout) || tries < 2 || tries > 4 {
			t.Fatalf("err %v after %d tries, want a timeout after 2 to 4", err, tries)
		}
	})
	t.Run("each try is bounded by Attempt", func(t *testing.T) {
		err := retry.Do(context.Background(), retry.Policy{Backoff: fast, Attempt: time.Millisecond, Budget: time.Millisecond}, func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want the try's deadline", err)
		}
	})
}

func TestClassifiers(t *testing.T) {
	for _, c := range []struct {
		err                              error
		transient, jsPermanent, connPerm bool
	}{
		{nats.ErrTimeout, true, false, false},
		{fmt.Errorf("put: %w", context.DeadlineExceeded), true, false, false},
		{jetstream.ErrNoStreamResponse, true, false, true},
		{fmt.Errorf("put: %w", nats.ErrNoStreamResponse), true, false, true}, // the older JetStream API's
		{nats.ErrNoResponders, true, false, true},
		{syscall.ECONNREFUSED, false, false, false},
		{nats.ErrNoServers, false, false, false},
		{nats.ErrAuthorization, false, true, true},
		{nats.ErrPermissionViolation, false, true, true},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamNameInUse}, false, true, true},
		{&jetstream.APIError{Code: 503, ErrorCode: jetstream.JSErrCodeJetStreamNotEnabled}, false, true, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008}, false, false, true}, // cluster not ready
		{&jetstream.APIError{Code: 400, ErrorCode: 10005}, false, false, true}, // no peers yet: a server still starting
	} {
		if got := retry.Transient(c.err); got != c.transient {
			t.Errorf("Transient(%v) = %v", c.err, got)
		}
		if got := retry.JetStreamPermanent(c.err); got != c.jsPermanent {
			t.Errorf("JetStreamPermanent(%v) = %v", c.err, got)
		}
		if got := retry.PermanentConn(c.err); got != c.connPerm {
			t.Errorf("PermanentConn(%v) = %v", c.err, got)
		}
	}
}
