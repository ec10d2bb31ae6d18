package proc_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nexrun/nex/internal/proc"
	"github.com/nexrun/nex/internal/testutil"
	"github.com/nexrun/nex/pkg/natsconn"
)

// silentProxy forwards TCP to a server until it falls silent: from then on the
// connections it had carry nothing either way and stay open, as a server behind a cut
// cable looks (new connections are forwarded again).
type silentProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	silent  map[net.Conn]bool // the client side of each connection: true once silenced
	holding chan struct{}     // closed at the test's end: what is held lets go
}

func newSilentProxy(t *testing.T, to string) *silentProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentProxy{ln: ln, silent: map[net.Conn]bool{}, holding: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		close(p.holding)
		p.mu.Lock()
		for c := range p.silent {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.silent[c] = false
			p.mu.Unlock()
			wg.Go(func() { p.pipe(c, up, c) })
			wg.Go(func() { p.pipe(c, c, up) })
		}
	})
	return p
}

// pipe copies src to dst, holding what it read once client's connection is silenced.
func (p *silentProxy) pipe(client, src, dst net.Conn) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		silent := p.silent[client]
		p.mu.Unlock()
		if silent {
			<-p.holding
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *silentProxy) silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.silent {
		p.silent[c] = true
	}
}

// A server that falls silent without closing the connection is left for another within
// a PingEvery, PingWait and the recheck (4.5-6.5 s), by CheckConns' pings on its ticks:
// nats.go's own, every 30 s now, would take a minute or more. A request in flight when it
// is left gets its reply after the reconnect (a review: ForceReconnect failed it with
// "nats: server is disconnected", where a store write is to ride the reconnect out).
func TestSilentServerIsLeft(t *testing.T) {
	s := testutil.StartServer(t)
	p := newSilentProxy(t, s.Addr().String())
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(core)
	sock := natsconn.NewSocket(0)
	nc, err := nats.Connect("nats://"+p.ln.Addr().String(), append(proc.ConnLogging(log), sock.Option(), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		proc.CheckConns(ctx, "node", log, proc.Checked{Conn: nc, Socket: sock}, proc.Checked{})
	}()
	defer func() { cancel(); <-done }()

	// a responder on a connection of its own answers after the connection has moved
	rc := testutil.Connect(t, s)
	asked := make(chan struct{}, 1)
	answer := make(chan struct{})
	defer close(answer)
	if _, err := rc.Subscribe("slow", func(m *nats.Msg) {
		asked <- struct{}{}
		go func() {
			select {
			case <-answer:
			case <-time.After(10 * time.Second):
			}
			_ = m.Respond([]byte("late"))
		}()
	}); err != nil {
		t.Fatal(err)
	}
	if err := rc.Flush(); err != nil {
		t.Fatal(err)
	}
	replied := make(chan error, 1)
	go func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer rcancel()
		m, err := nc.RequestWithContext(rctx, "slow", nil)
		if err == nil && string(m.Data) != "late" {
			err = errors.New("the reply is " + string(m.Data))
		}
		replied <- err
	}()
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach its responder")
	}
	p.silence()
	silenced := time.Now()
	testutil.Eventually(t, proc.PingEvery+proc.PingWait+3*time.Second, "the connection to leave its silent server", func() bool {
		return nc.Stats().Reconnects > 0 && nc.IsConnected()
	})
	took := time.Since(silenced)
	if err := nc.FlushTimeout(time.Second); err != nil { // its subscriptions are back at the server
		t.Fatalf("after the reconnect: %v", err)
	}
	answer <- struct{}{}
	if err := <-replied; err != nil {
		t.Fatalf("the request in flight as the connection moved: %v", err)
	}
	if logs.FilterMessage("NATS server did not answer two pings; connecting again").Len() == 0 {
		t.Errorf("no warning said why the connection was left: %v", logs.All())
	}
	t.Logf("left a silent server %v after it fell silent", took.Round(time.Millisecond))
}
