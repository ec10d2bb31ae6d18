package nexlet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/nexlet/memory"
)

// Heartbeats carry what changed: a finished workload is listed in the heartbeats until
// one is answered, then only in the first after each registration (a node restarted is
// told everything) and in a full one every FullHeartbeatEvery. A heartbeat listed every
// finished workload the nexlet kept, as often as every 50 ms while jobs ended.
func TestHeartbeatsCarryChanges(t *testing.T) {
	f := newFakeNode(t, time.Hour, 30) // no periodic full heartbeat in this test
	next := f.waitFor(0, "a first heartbeat listing the 30 finished jobs", func(hb v1.Heartbeat) bool { return len(hb.Finished) == 30 && len(hb.Ended) == 30 })
	quiet := f.waitFor(next+2, "three heartbeats more", func(v1.Heartbeat) bool { return true })
	for _, hb := range f.since(next)[:quiet-next] {
		if len(hb.Finished)+len(hb.Ended) > 0 {
			t.Fatalf("a heartbeat with nothing new lists %d finished, %d ended", len(hb.Finished), len(hb.Ended))
		}
	}
	f.finish(30)
	next = f.waitFor(quiet, "a heartbeat listing the job that ended", func(hb v1.Heartbeat) bool { return len(hb.Finished) > 0 })
	if hb := f.since(next - 1)[0]; len(hb.Finished) != 1 || hb.Finished[0] != "job30" || len(hb.Ended) != 1 {
		t.Fatalf("the heartbeat after one more job ended lists %v (ended %d), want job30 alone", hb.Finished, len(hb.Ended))
	}
	// the node forgets the nexlet (restarted): told everything again, once registered anew
	f.forget()
	f.waitFor(next, "a heartbeat after the registration listing all 31", func(hb v1.Heartbeat) bool { return len(hb.Finished) == 31 })
}

// Every FullHeartbeatEvery a heartbeat lists every finished workload: a record the node
// failed to write is written again.
func TestFullHeartbeatPeriodically(t *testing.T) {
	f := newFakeNode(t, 500*time.Millisecond, 5)
	next := f.waitFor(0, "a first heartbeat listing the 5 finished jobs", func(hb v1.Heartbeat) bool { return len(hb.Finished) == 5 })
	next = f.waitFor(next, "a heartbeat with nothing new", func(hb v1.Heartbeat) bool { return len(hb.Finished) == 0 })
	f.waitFor(next, "a full heartbeat again", func(hb v1.Heartbeat) bool { return len(hb.Finished) == 5 && len(hb.Ended) == 0 })
}

// fakeNode answers a memory nexlet's registrations and heartbeats as a node would, and
// keeps the heartbeats.
type fakeNode struct {
	t     *testing.T
	node  *nats.Conn
	rt    *memory.Runtime
	mu    sync.Mutex
	beats []v1.Heartbeat
	regs  int
	hbSub *nats.Subscription
}

const fakeNodeID = "NODE"

// newFakeNode runs a memory nexlet that holds finished jobs job0... and registers with
// a fake node.
func newFakeNode(t *testing.T, fullEvery time.Duration, finished int) *fakeNode {
	s := testutil.StartServer(t)
	f := &fakeNode{t: t, node: testutil.Connect(t, s), rt: memory.New("mem", nil)}
	if _, err := f.node.Subscribe(v1.RegisterSubject(fakeNodeID), func(m *nats.Msg) {
		f.mu.Lock()
		f.regs++
		f.mu.Unlock()
		b, _ := json.Marshal(v1.RegisterReply{NodeID: fakeNodeID, HeartbeatInterval: v1.Duration(50 * time.Millisecond)})
		_ = m.Respond(b)
	}); err != nil {
		t.Fatal(err)
	}
	f.listen()
	for i := range finished {
		f.finish(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	nc := testutil.Connect(t, s)
	go func() {
		done <- nexlet.Serve(ctx, nc, nexlet.Config{NodeID: fakeNodeID, NexletID: "mem", RegisterType: "memory", Lifecycles: []string{"job"},
			StartRequestSchema: []byte(memory.Schema), FullHeartbeatEvery: fullEvery}, f.rt)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *fakeNode) listen() {
	sub, err := f.node.Subscribe(v1.HeartbeatSubject(fakeNodeID, "mem"), func(m *nats.Msg) {
		var hb v1.Heartbeat
		_ = json.Unmarshal(m.Data, &hb)
		f.mu.Lock()
		f.beats = append(f.beats, hb)
		f.mu.Unlock()
		_ = m.Respond([]byte("{}"))
	})
	if err != nil {
		f.t.Fatal(err)
	}
	_ = f.node.Flush()
	f.hbSub = sub
}

// finish starts job<i> and ends it.
func (f *fakeNode) finish(i int) {
	id := fmt.Sprint("job", i)
	if _, err := f.rt.Start(context.Background(), v1.StartWorkloadRequest{WorkloadID: id,
		Definition: v1.WorkloadDefinition{Namespace: "a", Name: "j", Type: "memory", Lifecycle: v1.LifecycleJob}}); err != nil {
		f.t.Fatal(err)
	}
	f.rt.Finish(id, 0)
}

// forget answers no heartbeat until the nexlet has registered again.
func (f *fakeNode) forget() {
	f.mu.Lock()
	regs := f.regs
	f.mu.Unlock()
	_ = f.hbSub.Unsubscribe()
	_ = f.node.Flush()
	testutil.Eventually(f.t, 10*time.Second, "the nexlet to register again", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.regs > regs
	})
	f.listen()
}

// since returns a copy of the heartbeats from the i-th on.
func (f *fakeNode) since(i int) []v1.Heartbeat {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]v1.Heartbeat(nil), f.beats[min(i, len(f.beats)):]...)
}

// waitFor waits for a heartbeat from the from-th on for which want holds, and returns
// the index of the one after it.
func (f *fakeNode) waitFor(from int, what string, want func(v1.Heartbeat) bool) int {
	f.t.Helper()
	at := -1
	testutil.Eventually(f.t, 10*time.Second, what, func() bool {
		for i, hb := range f.since(from) {
			if want(hb) {
				at = from + i
				return true
			}
		}
		return false
	})
	return at + 1
}
