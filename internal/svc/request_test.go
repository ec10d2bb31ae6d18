package svc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
)

func unavailable(err error) bool {
	var e *v1.Error
	return errors.As(err, &e) && e.ErrorCode == v1.CodeUnavailable
}

// A peer between connections is waited for; one that is not there is reported at once.
func TestCallWaitingRidesOutAGap(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	peer := testutil.Connect(t, s)
	ctx := context.Background()

	if err := svc.Call(ctx, natsconn.Plain(nc), "peer.ping", nil, nil); !unavailable(err) {
		t.Fatalf("Call with nothing listening: %v, want unavailable", err)
	}
	if err := svc.CallWaiting(ctx, natsconn.Plain(nc), "peer.ping", nil, nil, 100*time.Millisecond); !unavailable(err) {
		t.Fatalf("CallWaiting past its bound: %v, want unavailable", err)
	}

	// the peer comes back while the request is waiting for it
	before := nc.Stats().OutMsgs
	done := make(chan error, 1)
	go func() {
		var got map[string]string
		err := svc.CallWaiting(ctx, natsconn.Plain(nc), "peer.ping", nil, &got, 10*time.Second)
		if err == nil && got["pong"] != "yes" {
			err = errors.New("wrong reply")
		}
		done <- err
	}()
	// only once the caller has been turned away at least once
	testutil.Eventually(t, 5*time.Second, "the caller to be turned away", func() bool {
		return nc.Stats().OutMsgs >= before+2
	})
	sub, err := peer.Subscribe("peer.ping", func(m *nats.Msg) { _ = m.Respond([]byte(`{"pong":"yes"}`)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("CallWaiting across the gap: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CallWaiting did not return after the peer came back")
	}
}
