package node

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/workloads"
)

// auctionBuckets are the upper bounds (seconds) of the auction latency histogram.
var auctionBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1}

// metrics are the node's own counters; nexlet figures arrive with their heartbeats.
type metrics struct {
	workloads.Counters // starts, failed starts and stops (the workloads room counts them)

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

// collector is the node's metrics, read from its state at each scrape.
type collector struct {
	n                                                       *Node
	workloads, desired, starts, startFailures, stops        *prometheus.Desc
	restarts, logLines, logDropped, nexletUp, lameduck, auc *prometheus.Desc
}

func newCollector(n *Node) *collector {
	node := prometheus.Labels{"node_id": n.cfg.NodeID, "node_name": n.cfg.Name}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, node)
	}
	return &collector{n: n,
		workloads:     d("nex_workloads", "Workloads by nexlet and state.", "nexlet", "state"),
		desired:       d("nex_workloads_desired", "Workloads the node keeps desired state for."),
		starts:        d("nex_workload_starts_total", "Workloads started by this node."),
		startFailures: d("nex_workload_start_failures_total", "Deploys that failed."),
		stops:         d("nex_workload_stops_total", "Workloads stopped through this node."),
		restarts:      d("nex_workload_restarts", "Restarts of the workloads that exist now, summed per nexlet.", "nexlet"),
		logLines:      d("nex_log_lines_total", "Workload output lines published, per nexlet.", "nexlet"),
		logDropped:    d("nex_log_lines_dropped_total", "Workload output lines dropped because NATS was too slow, per nexlet.", "nexlet"),
		nexletUp:      d("nex_nexlet_up", "1 when the nexlet is healthy.", "nexlet", "type", "health"),
		lameduck:      d("nex_node_lameduck", "1 while the node is in lameduck mode."),
		auc:           d("nex_auction_duration_seconds", "Time this node took to answer an auction."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.workloads, c.desired, c.starts, c.startFailures, c.stops, c.restarts, c.logLines, c.logDropped, c.nexletUp, c.lameduck, c.auc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one snapshot of the node per scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	now := time.Now()
	nexlets := n.nexlets.All(now)
	lameduck := n.auction.State() == v1.NodeLameduck
	desired := n.idx.Len()
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	m := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	for _, x := range nexlets {
		id := x.Reg.NexletID
		for state, count := range x.Stats.States {
			m(c.workloads, gauge, float64(count), id, state)
		}
		m(c.restarts, gauge, float64(x.Stats.Restarts), id)
		m(c.logLines, counter, float64(x.Stats.Counters["log_lines"]), id)
		m(c.logDropped, counter, float64(x.Stats.Counters["log_lines_dropped"]), id)
		m(c.nexletUp, gauge, b2f(x.Health == v1.HealthHealthy), id, x.Reg.RegisterType, x.Health)
	}
	m(c.desired, gauge, float64(desired))
	m(c.starts, counter, float64(n.metrics.Starts.Load()))
	m(c.startFailures, counter, float64(n.metrics.StartFailures.Load()))
	m(c.stops, counter, float64(n.metrics.Stops.Load()))
	m(c.lameduck, gauge, b2f(lameduck))
	n.metrics.mu.Lock()
	buckets := map[float64]uint64{}
	for i, b := range auctionBuckets {
		if i < len(n.metrics.auctionHist) {
			buckets[b] = n.metrics.auctionHist[i]
		} else {
			buckets[b] = 0
		}
	}
	count, sum := n.metrics.auctionN, n.metrics.auctionSum
	n.metrics.mu.Unlock()
	ch <- prometheus.MustNewConstHistogram(c.auc, count, sum, buckets)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MetricsHandler serves the node's metrics, and the process's and the Go runtime's, in
// the Prometheus exposition format.
func (n *Node) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector(), newCollector(n))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
