package node

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// auctionBuckets are the upper bounds (seconds) of the auction latency histogram.
var auctionBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1}

// metrics are the node's own counters; nexlet figures arrive with their heartbeats.
type metrics struct {
	starts        atomic.Uint64
	startFailures atomic.Uint64
	stops         atomic.Uint64

	mu          sync.Mutex
	auctionN    uint64
	auctionSum  float64
	auctionHist []uint64
}

func (m *metrics) observeAuction(d time.Duration) {
	s := d.Seconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.auctionHist == nil {
		m.auctionHist = make([]uint64, len(auctionBuckets))
	}
	m.auctionN++
	m.auctionSum += s
	for i, b := range auctionBuckets {
		if s <= b {
			m.auctionHist[i]++
		}
	}
}

// nexletStats is what the latest heartbeat of a nexlet said.
type nexletStats struct {
	states   map[string]int
	restarts uint64
	stats    map[string]uint64
}

// WriteMetrics writes the node's metrics in the Prometheus text format.
func (n *Node) WriteMetrics(w io.Writer) {
	now := time.Now()
	n.mu.Lock()
	type nx struct {
		id, typ, health string
		st              nexletStats
	}
	var nexlets []nx
	for id, e := range n.nexlets {
		nexlets = append(nexlets, nx{id, e.reg.RegisterType, n.health(e, now), e.stats})
	}
	lameduck := n.state == v1.NodeLameduck
	desired := len(n.workloads)
	n.mu.Unlock()
	sort.Slice(nexlets, func(i, j int) bool { return nexlets[i].id < nexlets[j].id })
	node := fmt.Sprintf(`node_id=%q,node_name=%q`, n.cfg.NodeID, n.cfg.Name)

	metric := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	metric("nex_workloads", "gauge", "Workloads by nexlet and state.")
	for _, x := range nexlets {
		states := make([]string, 0, len(x.st.states))
		for s := range x.st.states {
			states = append(states, s)
		}
		sort.Strings(states)
		for _, s := range states {
			fmt.Fprintf(w, "nex_workloads{%s,nexlet=%q,state=%q} %d\n", node, x.id, s, x.st.states[s])
		}
	}
	metric("nex_workloads_desired", "gauge", "Workloads the node keeps desired state for.")
	fmt.Fprintf(w, "nex_workloads_desired{%s} %d\n", node, desired)
	metric("nex_workload_starts_total", "counter", "Workloads started by this node.")
	fmt.Fprintf(w, "nex_workload_starts_total{%s} %d\n", node, n.metrics.starts.Load())
	metric("nex_workload_start_failures_total", "counter", "Deploys that failed.")
	fmt.Fprintf(w, "nex_workload_start_failures_total{%s} %d\n", node, n.metrics.startFailures.Load())
	metric("nex_workload_stops_total", "counter", "Workloads stopped through this node.")
	fmt.Fprintf(w, "nex_workload_stops_total{%s} %d\n", node, n.metrics.stops.Load())
	metric("nex_workload_restarts", "gauge", "Restarts of the workloads that exist now, summed per nexlet.")
	for _, x := range nexlets {
		fmt.Fprintf(w, "nex_workload_restarts{%s,nexlet=%q} %d\n", node, x.id, x.st.restarts)
	}
	metric("nex_log_lines_total", "counter", "Workload output lines published, per nexlet.")
	for _, x := range nexlets {
		fmt.Fprintf(w, "nex_log_lines_total{%s,nexlet=%q} %d\n", node, x.id, x.st.stats["log_lines"])
	}
	metric("nex_log_lines_dropped_total", "counter", "Workload output lines dropped because NATS was too slow, per nexlet.")
	for _, x := range nexlets {
		fmt.Fprintf(w, "nex_log_lines_dropped_total{%s,nexlet=%q} %d\n", node, x.id, x.st.stats["log_lines_dropped"])
	}
	metric("nex_nexlet_up", "gauge", "1 when the nexlet is healthy.")
	for _, x := range nexlets {
		up := 0
		if x.health == v1.HealthHealthy {
			up = 1
		}
		fmt.Fprintf(w, "nex_nexlet_up{%s,nexlet=%q,type=%q,health=%q} %d\n", node, x.id, x.typ, x.health, up)
	}
	metric("nex_node_lameduck", "gauge", "1 while the node is in lameduck mode.")
	ld := 0
	if lameduck {
		ld = 1
	}
	fmt.Fprintf(w, "nex_node_lameduck{%s} %d\n", node, ld)

	n.metrics.mu.Lock()
	hist := append([]uint64(nil), n.metrics.auctionHist...)
	count, sum := n.metrics.auctionN, n.metrics.auctionSum
	n.metrics.mu.Unlock()
	if hist == nil {
		hist = make([]uint64, len(auctionBuckets))
	}
	metric("nex_auction_duration_seconds", "histogram", "Time this node took to answer an auction.")
	for i, b := range auctionBuckets {
		fmt.Fprintf(w, "nex_auction_duration_seconds_bucket{%s,le=%q} %d\n", node, trimFloat(b), hist[i])
	}
	fmt.Fprintf(w, "nex_auction_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", node, count)
	fmt.Fprintf(w, "nex_auction_duration_seconds_sum{%s} %g\n", node, sum)
	fmt.Fprintf(w, "nex_auction_duration_seconds_count{%s} %d\n", node, count)
}

func trimFloat(f float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%f", f), "0"), ".")
}

// MetricsHandler serves WriteMetrics over HTTP.
func (n *Node) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		n.WriteMetrics(w)
	})
}
