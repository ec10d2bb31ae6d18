package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/node/records"
)

// resumeRetry is how long a resumed update that failed waits before it is tried again.
const resumeRetry = time.Minute

// healthyFor is how long a new copy of an update must run, without a restart, before an
// old one is stopped.
const healthyFor = 2 * time.Second

// rollout is a rolling update under way, the actor's job for one group: g's copies of
// older versions replaced k at a time. k new copies start (one node may run up to k more
// than max_per_node meanwhile), run for healthyFor without a restart, and only then do k
// old copies stop.
type rollout struct {
	ctx       context.Context
	g         *records.Group
	k         int
	cl        *client.Client
	surge     records.Group                // g, with room for k more copies a node
	byNode    map[string][]*records.Record // the group's copies, as the update knows them
	olds      []*records.Record            // copies of older versions still running
	started   []string                     // the batch placed, proving itself
	healthyBy time.Time                    // when the batch has proved itself (zero: none placed)
	done      func(error)                  // how it ended, on the actor
	log       *zap.Logger
}

// update rolls group op.id over to the request's definition (see v1.GroupUpdate), as a
// job of the actor; the operation is answered when the job ends. A failed update puts
// the old definition back: the old copies run on, the new ones are stopped.
func (c *Coordinator) update(op groupOp) {
	ctx, ns, id, req := op.ctx, op.ns, op.id, op.req
	reply := func(st v1.GroupStatus, err error) { op.reply <- groupResult{st: st, err: err} }
	restart := req.Op == v1.GroupRestart
	if req.Definition == nil && !restart {
		reply(v1.GroupStatus{}, v1.BadRequest("an update needs a definition"))
		return
	}
	epoch := c.epoch.Load() // the lease this update runs under
	g, err := c.cs.Group(ctx, ns, id)
	if err != nil {
		reply(v1.GroupStatus{}, groupNotFound(err, ns, id))
		return
	}
	old := *g
	def := g.Definition // a restart: the same definition, a new version
	if !restart {
		def = *req.Definition
	}
	def.Namespace, def.Group, def.GroupVersion = ns, id, g.GroupVersion
	if same, _ := json.Marshal(def); !restart && string(same) == string(mustJSON(g.Definition)) {
		byNode, err := c.copiesOf(ctx, g)
		if err != nil || !hasOlder(byNode, g.GroupVersion) {
			reply(v1.GroupStatus{}, v1.BadRequest("update of %s: the definition is version %d's as it is; nothing to update", id, g.GroupVersion))
			return
		}
		// an update to this version was cut short (its coordinator lost): finish it
		c.startRollout(ctx, g, max(1, req.MaxParallel), func(err error) {
			if err != nil {
				reply(v1.GroupStatus{}, v1.Errorf(v1.CodeStartFailed, "update of %s to version %d (resumed) stopped, copies of older versions run on: %v", id, g.GroupVersion, err))
				return
			}
			reply(c.groupStatus(ctx, g, ""))
		})
		return
	}
	def.GroupVersion++
	if err := def.Validate(); err != nil {
		reply(v1.GroupStatus{}, err)
		return
	}
	g.Definition, g.GroupVersion = def, def.GroupVersion
	if err := c.cs.PutGroup(ctx, g); err != nil {
		reply(v1.GroupStatus{}, records.StorageError(err, "record group "+id))
		return
	}
	c.startRollout(ctx, g, max(1, req.MaxParallel), func(err error) {
		if err == nil {
			reply(c.groupStatus(ctx, g, ""))
			return
		}
		reply(v1.GroupStatus{}, c.updateFailed(ctx, g, old, epoch, err))
	})
}

// updateFailed puts g's old definition back after its update failed with err, and says
// what the caller is told.
func (c *Coordinator) updateFailed(ctx context.Context, g *records.Group, old records.Group, epoch uint64, err error) error {
	id := g.ID
	if !c.stillCoordinator(ctx, epoch) {
		// paused or cut off past its lease: the coordinator since resumes the update
		// from the group's record, and putting it back now would undo that (a test:
		// the old coordinator, running again, rolled the group back to version 1)
		return v1.Errorf(v1.CodeUnavailable, "update of %s: node %s stopped coordinating the cluster during it (paused, cut off or restarted): the group's record says version %d, which the coordinator now rolls out (%v)",
			id, c.cfg.NodeID, g.GroupVersion, err)
	}
	old.Revision = g.Revision
	if perr := c.cs.PutGroup(context.Background(), &old); perr != nil {
		// its record still says the new version, which the coordinator's rounds roll
		// out once the store answers: "the old copies run on" would be false (a chaos
		// run: version 2 ran after the update was answered "stopped")
		c.log.Error("put a group's definition back after a failed update", zap.String("group", id), zap.Error(perr))
		return v1.Errorf(v1.CodeStorageUnavailable, "update of %s stopped half-way (%v), and the group's record could not be put back to version %d (%v): it says version %d, which the coordinator rolls out once the store answers",
			id, err, old.GroupVersion, perr, g.GroupVersion)
	}
	c.log.Warn("replica group update stopped; the old copies run on", zap.String("group", id), zap.Error(err))
	if v1.IsCode(err, v1.CodeQuotaExceeded) || strings.Contains(err.Error(), "its quota is") {
		// as Kubernetes' surge pods against a ResourceQuota: a new copy starts before an
		// old one stops (a newcomer's walk: a namespace at its quota could not restart)
		err = fmt.Errorf("%w; an update starts each new copy before it stops an old one, so the namespace needs room for --max-parallel more workloads (scale the group down first, or stop another workload)", err)
	}
	return v1.Errorf(v1.CodeStartFailed, "update of %s stopped, the copies of version %d run on: %v", id, old.GroupVersion, err)
}

// resume finishes, as a job of the actor, an update that was cut short (its coordinator
// was lost mid-rollout): the group says version N, some copies run older ones. It ran
// mixed versions for good, and an update to the same definition said "nothing to update".
// One that failed is tried again after resumeRetry.
func (c *Coordinator) resume(ns, id string) {
	if _, busy := c.jobs[id]; busy {
		return
	}
	if failed, ok := c.resumes[id]; ok && time.Since(failed) < resumeRetry {
		return
	}
	failed := func(err error) {
		c.log.Warn("resume a replica group update; trying again later", zap.String("group", id), zap.Error(err))
		c.resumes[id] = time.Now()
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	g, err := c.cs.Group(ctx, ns, id)
	if err != nil {
		failed(err)
		return
	}
	byNode, err := c.copiesOf(ctx, g)
	if err != nil {
		failed(err)
		return
	}
	if !hasOlder(byNode, g.GroupVersion) {
		delete(c.resumes, id)
		return
	}
	c.log.Info("resuming a replica group update that was cut short", zap.String("group", id), zap.Int("version", g.GroupVersion))
	c.startRollout(c.ctx, g, 1, func(err error) {
		if err != nil {
			failed(err)
			return
		}
		delete(c.resumes, id)
	})
}

// startRollout begins the rollout of g, k copies at a time, as a job of the actor; done
// is called, on the actor, with how it ended (at once when nothing is to replace).
func (c *Coordinator) startRollout(ctx context.Context, g *records.Group, k int, done func(error)) {
	byNode, err := c.copiesOf(ctx, g)
	if err != nil {
		done(err)
		return
	}
	var olds []*records.Record
	var fresh []string
	have := 0
	for _, recs := range byNode {
		for _, r := range recs {
			have++
			if r.Definition.GroupVersion != g.GroupVersion {
				olds = append(olds, r)
			} else {
				fresh = append(fresh, r.WorkloadID)
			}
		}
	}
	if len(olds) == 0 {
		done(nil)
		return
	}
	cl, _ := client.On(c.cfg.Conn, g.Definition.Namespace)
	job := &rollout{ctx: ctx, g: g, k: k, cl: cl, surge: *g, byNode: byNode, olds: olds, done: done, log: c.log}
	job.surge.MaxPerNode += k
	c.jobs[g.ID] = job
	if extra := min(have-g.Replicas, len(fresh), len(olds)); extra > 0 {
		// copies of this version beyond the count: a batch an update cut short placed
		// (its coordinator paused mid-batch). It proves itself, and as many old copies
		// stop, before anything more is placed: placing a batch beside it ran the group
		// at its count plus two batches.
		job.started, job.healthyBy = fresh[:extra], time.Now().Add(healthyFor)
		return
	}
	c.stepRollout(job)
}

// stepJobs takes every rollout one step.
func (c *Coordinator) stepJobs() {
	jobs := make([]*rollout, 0, len(c.jobs))
	for _, job := range c.jobs {
		jobs = append(jobs, job)
	}
	for _, job := range jobs {
		c.stepRollout(job)
	}
}

// stepRollout takes job one step: the batch placed looked at, and once it has proved
// itself, as many old copies stopped and the next batch placed.
func (c *Coordinator) stepRollout(job *rollout) {
	if err := job.ctx.Err(); err != nil {
		c.endRollout(job, err)
		return
	}
	if !c.holds() {
		// paused or cut off past its lease: another node coordinates, and resumes the
		// update from the group's record, counting the batch placed; this one neither
		// places nor stops a copy more
		job.started = nil
		c.endRollout(job, errNotCoordinator)
		return
	}
	if !job.healthyBy.IsZero() {
		proved, err := job.proved()
		if err != nil {
			c.endRollout(job, err)
			return
		}
		if !proved {
			return
		}
		job.stopOlds()
		if len(job.olds) == 0 {
			c.endRollout(job, nil)
			return
		}
	}
	for range min(job.k, len(job.olds)) {
		node, wid, err := c.placeCopy(job.ctx, &job.surge, job.byNode)
		if err != nil {
			c.endRollout(job, err)
			return
		}
		job.started = append(job.started, wid)
		job.byNode[node] = append(job.byNode[node], &records.Record{WorkloadID: wid})
	}
	job.healthyBy = time.Now().Add(healthyFor)
}

// proved looks once at the batch placed: it has proved itself when every copy has run
// healthyFor (a copy with a health check counts from its first passing check); it fails
// when one is not running, or was restarted meanwhile (an unhealthy copy is restarted).
func (job *rollout) proved() (bool, error) {
	for _, wid := range job.started {
		w, err := job.cl.WorkloadInfo(job.ctx, wid)
		if err != nil {
			return false, fmt.Errorf("new copy %s: %w", wid, err)
		}
		if w.State == v1.StateStarting && w.Restarts == 0 {
			// a health check has not passed yet: the time to prove itself starts after
			job.healthyBy = time.Now().Add(healthyFor)
			continue
		}
		if w.State != v1.StateRunning || w.Restarts != 0 {
			why := []string{fmt.Sprintf("new copy %s is %s", wid, w.State)}
			if code := cmp.Or(w.ExitCode, w.LastExitCode); code != nil {
				why = append(why, fmt.Sprintf("exit code %d", *code))
			}
			if w.Error != "" {
				why = append(why, w.Error)
			}
			return false, errors.New(strings.Join(why, ", "))
		}
	}
	return time.Now().After(job.healthyBy), nil
}

// stopOlds stops as many old copies as the batch that proved itself placed: the batch
// is the group's now.
func (job *rollout) stopOlds() {
	batch := len(job.started)
	for _, r := range job.olds[:batch] {
		if _, err := job.cl.StopWorkload(job.ctx, r.WorkloadID, v1.StopRequest{}); err != nil && !v1.IsNotFound(err) {
			job.log.Warn("replica group update: stop an old copy", zap.String("workload_id", r.WorkloadID), zap.Error(err))
		}
		// a stopped copy no longer counts toward its node's max_per_node (it did, and the
		// next batch found a full node: an update of copies at max_per_node stopped)
		for node, recs := range job.byNode {
			job.byNode[node] = slices.DeleteFunc(recs, func(x *records.Record) bool { return x.WorkloadID == r.WorkloadID })
		}
	}
	job.olds = job.olds[batch:]
	job.started, job.healthyBy = nil, time.Time{}
}

// endRollout ends job: a failed one stops the batch it placed; then the operations that
// waited for the group run, in order.
func (c *Coordinator) endRollout(job *rollout, err error) {
	id := job.g.ID
	delete(c.jobs, id)
	if err != nil {
		for _, wid := range job.started {
			_, _ = job.cl.StopWorkload(job.ctx, wid, v1.StopRequest{})
		}
	}
	job.done(err)
	ops := c.waiting[id]
	delete(c.waiting, id)
	for _, op := range ops {
		c.groupOp(op)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
