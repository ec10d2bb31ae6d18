package svc_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
)

// A workload that moves while the nodes answer a lookup (one names as its holder a node
// that said 404 already) is looked up again: the lookup said "not found" of a workload
// that ran on (a chaos run: a stop during a takeover).
func TestLookupOfAWorkloadThatMoved(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	var round atomic.Int32
	notFound := func(m *nats.Msg, node, owner string, delay time.Duration) {
		time.AfterFunc(delay, func() {
			r := nats.NewMsg(m.Reply)
			r.Header.Set(v1.HeaderNodeID, node)
			r.Header.Set(v1.HeaderPeers, "NA,NB")
			r.Header.Set("Nats-Service-Error-Code", "404")
			r.Header.Set("Nats-Service-Error", "not found")
			r.Data = []byte(`{"code":404,"error_code":"not_found","message":"not found","details":{"owner":"` + owner + `","owner_alive":"true"}}`)
			_ = m.RespondMsg(r)
		})
	}
	subA, _ := nc.Subscribe("test.one", func(m *nats.Msg) {
		if round.Add(1) == 1 {
			notFound(m, "NA", "NB", 0) // before the move: NB holds it
			return
		}
		r := nats.NewMsg(m.Reply) // after it: NA has it
		r.Header.Set(v1.HeaderNodeID, "NA")
		r.Data = []byte(`{"id":"w1"}`)
		_ = m.RespondMsg(r)
	})
	defer subA.Unsubscribe()
	subB, _ := nc.Subscribe("test.one", func(m *nats.Msg) {
		if round.Load() == 1 {
			notFound(m, "NB", "NA", 50*time.Millisecond) // after the move: NA holds it
		} else {
			notFound(m, "NB", "NA", 200*time.Millisecond)
		}
	})
	defer subB.Unsubscribe()
	var got struct{ ID string }
	if err := svc.Lookup(context.Background(), natsconn.Plain(nc), "test.one", nil, &got, 0, nil); err != nil || got.ID != "w1" {
		t.Fatalf("a lookup of a workload that moved meanwhile: %+v %v", got, err)
	}
}
