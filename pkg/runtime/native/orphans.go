package native

import (
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/proc"
)

// The parent-death signal ends a workload's main process when its nexlet dies, but not
// the children it forked. Every workload process carries NEX_NODE_ID and NEX_NEXLET_ID in
// its environment (inherited by its children), so a new nexlet of the same node and ID
// finds what its dead predecessor left behind in /proc and kills it, process group and
// all. This costs nothing per start, unlike a record on disk for every process.

// killOrphans kills the workload processes of a previous instance of this nexlet. It runs
// before this instance starts anything, so every match is an orphan.
func (d *Driver) killOrphans() {
	if pids := proc.KillTagged(d.opts.NodeID, d.opts.NexletID); len(pids) > 0 { // one line, not one per process
		d.log.Warn("killed the processes a previous nexlet left", zap.Int("processes", len(pids)), zap.Ints("pids", pids[:min(len(pids), 20)]))
	}
}
