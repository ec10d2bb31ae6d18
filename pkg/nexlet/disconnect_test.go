package nexlet_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/nexlet/memory"
)

// A workload stopped because its nexlet was cut off (disconnect: stop) is never told
// to the node as finished: the node would record it finished for good, and never start
// it again once the nexlet is back. The heartbeat its stop set off during the cut waits
// in the connection's buffer and reaches the node after the reconnect (TestDisconnectStopRunsOneCopy
// failed so, once: the service did not come back on its node after a short cut).
func TestCutOffStopNeverToldFinished(t *testing.T) {
	s := testutil.StartServer(t)
	p := newCutProxy(t, s.Addr().String())
	node := testutil.Connect(t, s)
	var mu sync.Mutex
	var beats []v1.Heartbeat
	regs := 0
	subscribe := func(subj string, f func(m *nats.Msg) any) {
		if _, err := node.Subscribe(subj, func(m *nats.Msg) {
			b, _ := json.Marshal(f(m))
			_ = m.Respond(b)
		}); err != nil {
			t.Fatal(err)
		}
	}
	subscribe(v1.RegisterSubject(fakeNodeID), func(*nats.Msg) any {
		mu.Lock()
		regs++
		mu.Unlock()
		return v1.RegisterReply{NodeID: fakeNodeID, HeartbeatInterval: v1.Duration(time.Hour), DisconnectStopAfter: v1.Duration(100 * time.Millisecond)}
	})
	subscribe(v1.HeartbeatSubject(fakeNodeID, "mem"), func(m *nats.Msg) any {
		var hb v1.Heartbeat
		_ = json.Unmarshal(m.Data, &hb)
		mu.Lock()
		beats = append(beats, hb)
		mu.Unlock()
		return struct{}{}
	})
	rt := &stopSeen{Runtime: memory.New("mem", nil), listed: make(chan struct{}, 1)}
	nc, err := nats.Connect("nats://"+p.addr(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- nexlet.Serve(ctx, nc, nexlet.Config{NodeID: fakeNodeID, NexletID: "mem", RegisterType: "memory", Lifecycles: []string{v1.LifecycleService},
			StartRequestSchema: []byte(memory.Schema)}, rt)
	}()
	t.Cleanup(func() { cancel(); <-done })
	registered := func() int { mu.Lock(); defer mu.Unlock(); return regs }
	testutil.Eventually(t, 10*time.Second, "the nexlet to register", func() bool { return registered() > 0 })
	def := v1.WorkloadDefinition{Namespace: "a", Name: "s", Type: "memory", Lifecycle: v1.LifecycleService, StartRequest: json.RawMessage(`{}`), Disconnect: v1.DisconnectStop}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := svc.Call(ctx2, natsconn.Watch(node), v1.NexletSubject(fakeNodeID, "mem", v1.NexletStart, "svc1"), v1.StartWorkloadRequest{Definition: def}, nil); err != nil {
		t.Fatal(err)
	}

	// a job that ends pokes a heartbeat (the node's are an hour apart), which lists it
	toldEnded := func(id, what string) {
		t.Helper()
		job := def
		job.Name = id
		if _, err := rt.Start(context.Background(), v1.StartWorkloadRequest{WorkloadID: id, Definition: job}); err != nil {
			t.Fatal(err)
		}
		rt.Finish(id, 0)
		testutil.Eventually(t, 10*time.Second, what, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(beats) > 0 && slices.Contains(beats[len(beats)-1].Finished, id)
		})
	}
	// a heartbeat before the cut: the nexlet's registration is done, and its watch of the
	// connection runs (both before its first heartbeat)
	toldEnded("warm", "a heartbeat before the cut")
	p.cut(true)
	select {
	case <-rt.stopped():
	case <-time.After(30 * time.Second):
		t.Fatal("the cut-off nexlet did not stop its disconnect: stop workload")
	}
	before := registered()
	p.cut(false)
	testutil.Eventually(t, 10*time.Second, "the nexlet to register again once back", func() bool { return registered() > before })
	toldEnded("other", "a heartbeat once back") // after the registration
	mu.Lock()
	defer mu.Unlock()
	for _, hb := range beats {
		if slices.Contains(hb.Finished, "svc1") {
			t.Fatalf("a heartbeat told the node that the workload stopped for the cut finished: %+v", hb)
		}
	}
}

// stopSeen is a memory runtime whose Stop ends the workload first, as a process ends,
// and forgets it only once the nexlet has listed it ended (as the native driver may).
type stopSeen struct {
	*memory.Runtime
	mu       sync.Mutex
	stopping bool
	listed   chan struct{}
	done     chan struct{}
}

func (r *stopSeen) stopped() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = make(chan struct{})
	}
	return r.done
}

func (r *stopSeen) Stop(ctx context.Context, id string, req v1.StopRequest) (v1.WorkloadInfo, error) {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	r.Finish(id, 0)
	select {
	case <-r.listed:
	case <-time.After(5 * time.Second):
	}
	info, err := r.Runtime.Stop(ctx, id, req)
	close(r.stopped())
	return info, err
}

func (r *stopSeen) List(ctx context.Context, ns string) ([]v1.WorkloadInfo, error) {
	list, err := r.Runtime.List(ctx, ns)
	r.mu.Lock()
	if r.stopping {
		select {
		case r.listed <- struct{}{}:
		default:
		}
	}
	r.mu.Unlock()
	return list, err
}

// cutProxy forwards TCP connections to a server until cut: then it closes them, and
// closes new ones at once, until healed.
type cutProxy struct {
	t     *testing.T
	ln    net.Listener
	to    string
	mu    sync.Mutex
	isCut bool
	conns []net.Conn
}

func newCutProxy(t *testing.T, to string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, to: to}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); p.cut(true); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.isCut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(up, c); up.Close() })
			wg.Go(func() { _, _ = io.Copy(c, up); c.Close() })
		}
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) cut(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = on
	if on {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}
