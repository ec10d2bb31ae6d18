package records

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nexrun/nex/internal/testutil"
)

// Nodes that open a new lease bucket at once all read it from its stream's leader, and
// the stream never has direct gets on. nats.go's CreateOrUpdateKeyValue turned them on,
// on an existing stream too, and a handle opened in that moment read with direct gets,
// which no server answered once they were off again: "no responders" from the
// coordinator lease for the node's life (TestGroupStopReachesASilentNodesCopy, once in a
// few runs; a chaos run's rolling updates failed so for minutes).
func TestBucketsOpenedAtOnceReadFromTheLeader(t *testing.T) {
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	direct, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for round := range 10 {
		bucket := fmt.Sprintf("race%d", round)
		var wg sync.WaitGroup
		kvs := make([]jetstream.KeyValue, 6)
		errs := make([]error, len(kvs))
		for i := range kvs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				js, _ := jetstream.New(testutil.Connect(t, s))
				kvs[i], errs[i] = openLeaderKV(ctx, js, jetstream.KeyValueConfig{Bucket: bucket, History: 1, TTL: 10 * time.Second})
			}()
		}
		wg.Wait()
		if _, err := kvs[0].Put(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		for i, kv := range kvs {
			if errs[i] != nil {
				t.Fatalf("round %d, opener %d: %v", round, i, errs[i])
			}
			// read through the handle as opened: no healing
			if _, err := kv.(*healingKV).KeyValue.Get(ctx, "k"); err != nil {
				t.Fatalf("round %d, opener %d read: %v", round, i, err)
			}
		}
	}
	if m, err := direct.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("a stream was updated (direct gets turned on or off): %s", m.Subject)
	}
}

// A handle that reads with direct gets, which are then turned off, is healed: its read
// finds no responder, opens the bucket again and reads from the leader.
func TestHandleReadingWithDirectGetsIsHealed(t *testing.T) {
	s := testutil.StartServer(t)
	js, _ := jetstream.New(testutil.Connect(t, s))
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "healed"}) // direct gets on, as nats.go makes it
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := openLeaderKV(ctx, js, jetstream.KeyValueConfig{Bucket: "healed"}); err != nil { // turns them off
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("the stale handle's read: %v, want no responders (else this test shows nothing)", err)
	}
	h := &healingKV{KeyValue: kv, js: js}
	if e, err := h.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("the healed read: %v", err)
	}
	if e, err := h.GetRevision(ctx, "k", 1); err != nil || string(e.Value()) != "v" {
		t.Fatalf("the healed read of a revision: %v", err)
	}
}
