package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
)

// cluster is three nodes sharing their records (--state kv) with services spread over
// them.
type cluster struct {
	e     *env
	names []string
	ids   map[string]string // name → node ID
	pids  map[string]int    // name → nexd's PID
	c     *client.Client
	on    map[string]string // workload ID → node ID
}

// newCluster starts three nodes with nexd's flags extra, and services /bin/sleep services.
func newCluster(e *env, services int, extra ...string) (*cluster, error) {
	cl := &cluster{e: e, names: []string{"r1", "r2", "r3"}, ids: map[string]string{}, pids: map[string]int{}, on: map[string]string{}}
	for _, n := range cl.names {
		id, pid, err := e.startNode(n, append([]string{"--state", "kv"}, extra...)...)
		if err != nil {
			return nil, err
		}
		cl.ids[n], cl.pids[n] = id, pid
	}
	cl.c = e.client("bench")
	for i := 0; i < services; i++ {
		w, err := cl.c.StartWorkload(context.Background(), service(fmt.Sprintf("svc%d", i), "/bin/sleep", "3600"))
		if err != nil {
			return nil, err
		}
		cl.on[w.ID] = w.NodeID
	}
	return cl, nil
}

// killBusiest kills the node running the most services outright (nexd, its nexlets and
// their processes) and measures how long until every service runs on another node.
func (cl *cluster) killBusiest() (took time.Duration, moved int, err error) {
	count := map[string]int{}
	for _, n := range cl.on {
		count[n]++
	}
	victim := cl.names[0]
	for _, n := range cl.names {
		if count[cl.ids[n]] > count[cl.ids[victim]] {
			victim = n
		}
	}
	nexlets := cl.e.daemonPids(cl.pids[victim], victim)
	t0 := time.Now()
	_ = syscall.Kill(-cl.pids[victim], syscall.SIGKILL)
	for _, p := range nexlets {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	for {
		if time.Since(t0) > 2*time.Minute {
			return 0, 0, fmt.Errorf("the lost node's services did not all run again within 2 minutes")
		}
		l, err := cl.c.ListWorkloads(context.Background(), "")
		running := 0
		if err == nil {
			for _, w := range l {
				if w.State == v1.StateRunning && w.NodeID != cl.ids[victim] {
					running++
				}
			}
		}
		if running == len(cl.on) {
			return time.Since(t0), count[cl.ids[victim]], nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// failover measures, at one node-loss window, what the window costs and gives: first how
// many times a live node is taken for lost while every core is kept busy (a process
// spinning per core, beside the nodes) for loadFor, then how long a node killed outright
// takes to have its services running elsewhere.
func failover(window time.Duration) func(*env) ([]Result, error) {
	const loadFor = 60 * time.Second
	return func(e *env) ([]Result, error) {
		cl, err := newCluster(e, 100, "--node-loss-window", window.String())
		if err != nil {
			return nil, err
		}
		var lost atomic.Int64
		sub, err := e.nc.Subscribe(v1.NodeEventSubject("*"), func(m *nats.Msg) {
			var ev v1.Event
			if json.Unmarshal(m.Data, &ev) == nil && ev.Type == v1.EventNodeLost {
				lost.Add(1)
			}
		})
		if err != nil {
			return nil, err
		}
		defer sub.Unsubscribe()
		var hogs []*exec.Cmd
		for range runtime.NumCPU() {
			h := exec.Command("sh", "-c", "while :; do :; done")
			h.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := h.Start(); err != nil {
				return nil, err
			}
			hogs = append(hogs, h)
		}
		time.Sleep(loadFor)
		for _, h := range hogs {
			_ = syscall.Kill(-h.Process.Pid, syscall.SIGKILL)
			_ = h.Wait()
		}
		_ = e.nc.Flush()
		falseLosses := lost.Load()
		took, moved, err := cl.killBusiest()
		if err != nil {
			return nil, err
		}
		w := fmt.Sprintf("window %s", window)
		return []Result{
			{Figure: "failover, " + w + ": node loss to all copies running again", Value: took.Seconds(), Unit: "s",
				Detail: fmt.Sprintf("%d of 100 services on the killed node, 3 nodes", moved), Target: "≤ 5 s at 3 s", Met: window > 3*time.Second || took <= 5*time.Second},
			{Figure: "failover, " + w + ": live nodes taken for lost under load", Value: float64(falseLosses), Unit: "times",
				Detail: fmt.Sprintf("%s with %d processes spinning, one per core, beside the 3 nodes", loadFor, len(hogs)), Target: "0", Met: falseLosses == 0},
		}, nil
	}
}
