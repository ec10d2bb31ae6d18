package node

import "time"

// RenewCreds runs one round of workload credential renewal now.
func (n *Node) RenewCreds() { n.work.RenewCreds() }

// LeaseRanOut makes the coordinator's last renewal older than half a lease period, as a
// node paused past its lease finds it when it runs again, before its renewal loop has.
func (n *Node) LeaseRanOut() {
	if n.coord != nil {
		n.coord.LeaseRanOut()
	}
}

// WithRescan makes the coordinator of a node made with c look again at every record
// every d (see cluster.RescanEvery) instead of every 30 s.
func WithRescan(c Config, d time.Duration) Config {
	c.rescan = d
	return c
}
