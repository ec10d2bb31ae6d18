package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/seal"
)

// The coordinator is one actor: one goroutine (work) runs its rounds (lost nodes'
// workloads moved, groups kept at their counts) and every GROUP operation, which reach it
// as messages, and it alone touches the coordinator's state. The lease is renewed by
// another goroutine (Run), which never waits for it. A rolling update is a job the actor
// steps: it places a batch of new copies, comes back every rolloutStep to see whether they
// have proved healthy, then stops as many old ones; between steps it runs rounds and
// other groups' operations, so a long update holds nothing up. Operations on a group
// whose update is under way wait for it, in order.

// groupOp is one GROUP request, to the actor.
type groupOp struct {
	ctx    context.Context // the request's: a queued operation whose caller left is dropped
	ns, id string
	req    *v1.GroupRequest
	reply  chan groupResult // buffered: the actor never waits for the caller
}

type groupResult struct {
	st  v1.GroupStatus
	err error
}

// rolloutStep is how often the actor looks at an update's new copies.
const rolloutStep = 200 * time.Millisecond

// HandleGroup serves a GROUP request: the coordinator acknowledges, hands it to its
// actor and answers with what the actor did; the other nodes say they are not it.
func (c *Coordinator) HandleGroup(ctx context.Context, r *svc.Request, req *v1.GroupRequest) (v1.GroupStatus, error) {
	if !c.holds() {
		return v1.GroupStatus{}, v1.NotFound("node %s is not the coordinator", c.cfg.NodeID)
	}
	r.Ack(time.Now().Add(groupBound)) // from here on, only this node's answer counts
	if !validGroupID(r.ID) {
		// (a key the state store would refuse was answered "the state store did not answer")
		return v1.GroupStatus{}, v1.BadRequest("replica group ID %q is not %q and %d base-62 characters, as clients make them", r.ID, v1.GroupIDPrefix, v1.IDLen)
	}
	ns := r.Namespace
	if ns == v1.SystemNamespace && req.Op != v1.GroupCreate {
		owner, err := c.book.namespace(ctx, r.ID)
		switch {
		case err != nil:
			return v1.GroupStatus{}, err
		case owner != "" && owner != ns && req.Definition != nil:
			return v1.GroupStatus{}, v1.BadRequest("group %s is namespace %s's: update it from there (nex --namespace %s ...), its values sealed for that namespace", r.ID, owner, owner)
		case owner != "":
			ns = owner
		}
	}
	if req.Definition != nil {
		if err := checkSealed(ctx, c.cs, c.cfg.SecretsKey, ns, r.ID, req); err != nil {
			return v1.GroupStatus{}, err
		}
	}
	op := groupOp{ctx: ctx, ns: ns, id: r.ID, req: req, reply: make(chan groupResult, 1)}
	select {
	case c.ops <- op:
	case <-ctx.Done():
		return v1.GroupStatus{}, v1.Errorf(v1.CodeTimeout, "the coordinator did not take the group operation in time")
	case <-c.ctx.Done():
		return v1.GroupStatus{}, svc.ErrStopped
	}
	select {
	case res := <-op.reply:
		return res.st, res.err
	case <-ctx.Done():
		return v1.GroupStatus{}, v1.Errorf(v1.CodeTimeout, "group %s: the operation is still under way at the coordinator", r.ID)
	case <-c.ctx.Done():
		return v1.GroupStatus{}, svc.ErrStopped
	}
}

// validGroupID says whether id is a group's ID as clients make them: GroupIDPrefix and a
// v1.NewID.
func validGroupID(id string) bool {
	rest, ok := strings.CutPrefix(id, v1.GroupIDPrefix)
	return ok && len(rest) == v1.IDLen && strings.Trim(rest, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == ""
}

// HandleGroups serves GROUPS: the coordinator acknowledges and answers with the
// namespace's replica groups (every namespace's from system) as their records hold them,
// each with why copies are missing when the coordinator knows; not their copies (a
// LIST names each copy's group). The other nodes say they are not it. It is answered
// beside the actor, never waiting for a group operation under way. A group whose copies
// cannot be placed has none to list, and was seen by its ID only as it was created (a
// tenant's attack: 300 of them, unseen and not stoppable by name).
func (c *Coordinator) HandleGroups(ctx context.Context, r *svc.Request) ([]v1.GroupStatus, error) {
	if !c.holds() {
		return nil, v1.NotFound("node %s is not the coordinator", c.cfg.NodeID)
	}
	r.Ack(time.Now().Add(groupBound))
	of := r.Namespace
	if of == v1.SystemNamespace {
		of = "" // every namespace's
	}
	groups, err := c.book.now(ctx, of)
	if err != nil {
		return nil, err
	}
	list := []v1.GroupStatus{}
	for _, g := range groups {
		if ns := g.Definition.Namespace; r.Namespace == v1.SystemNamespace || ns == r.Namespace {
			list = append(list, v1.GroupStatus{ID: g.ID, Namespace: ns, Name: g.Definition.Name, Replicas: g.Replicas,
				MaxPerNode: g.MaxPerNode, Spread: g.Spread, Version: g.GroupVersion, Pending: c.book.why(ns, g.ID)})
		}
	}
	slices.SortFunc(list, func(a, b v1.GroupStatus) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return list, nil
}

// checkSealed refuses a group definition whose sealed values are not the namespace's own
// (sealed for another namespace, or for none: a legacy value, except one an update keeps
// from the group's recorded definition), rather than keep a group whose copies are never
// placed.
func checkSealed(ctx context.Context, cs records.ClusterStore, key nkeys.KeyPair, ns, id string, req *v1.GroupRequest) error {
	startRequest := req.Definition.StartRequest
	var before json.RawMessage
	if req.Op == v1.GroupUpdate && seal.LegacyValue(startRequest) != "" {
		if g, err := cs.Group(ctx, ns, id); err == nil {
			before = g.Definition.StartRequest
		}
	}
	if err := seal.CheckNew(startRequest, before); err != nil {
		return v1.BadRequest("%v", err)
	}
	if key == nil || !seal.Contains(startRequest) {
		return nil
	}
	if _, err := seal.OpenEnvironment(startRequest, key, ns); err != nil {
		return v1.BadRequest("start_request.%v", err)
	}
	return nil
}

// work is the actor. It runs a round after each renewal that found the lease held (every
// renewEvery), and every second while a node is silent (no longer taken for alive) and
// its window about to pass: lost nodes' workloads taken over, groups brought to their
// counts. A round that finds every node alive reads nothing; while every node answers it
// runs with the renewal, so an idle coordinator wakes once a renewal, and a node that
// falls silent is found lost within a second of the window passing all the same (when
// peers stop taking it for alive before its window passes, as at the defaults: three
// announcements, 6 s, against 10 s; else at the next renewal, within renewEvery).
func (c *Coordinator) work(kick <-chan struct{}) {
	defer c.cfg.WG.Done()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	defer soon.Stop()
	step := time.NewTimer(time.Hour)
	step.Stop()
	defer step.Stop()
	stepping := false // step is set
	defer c.endJobs()
	for {
		rounds := false
		select {
		case <-c.ctx.Done():
			return
		case <-kick:
			rounds = true
		case <-soon.C:
			rounds = true
		case op := <-c.ops:
			c.groupOp(op)
		case <-step.C:
			stepping = false
			c.stepJobs()
		}
		if rounds && c.holds() {
			ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
			c.round(ctx)
			c.reconcileGroups(ctx)
			cancel()
			if c.watchful(time.Now()) {
				soon.Reset(time.Second)
			}
		}
		if len(c.jobs) > 0 && !stepping {
			step.Reset(rolloutStep)
			stepping = true
		}
	}
}

// groupOp carries out one GROUP operation, or queues it behind its group's update.
func (c *Coordinator) groupOp(op groupOp) {
	if op.ctx.Err() != nil {
		return // its caller was answered already (a timeout)
	}
	if !c.holds() {
		op.reply <- groupResult{err: v1.NotFound("node %s is not the coordinator", c.cfg.NodeID)}
		return
	}
	if _, busy := c.jobs[op.id]; busy && op.req.Op != v1.GroupInfo {
		c.waiting[op.id] = append(c.waiting[op.id], op)
		return
	}
	c.groupsSeen = time.Now() // its copies are counted, and looked for once it is gone, every round
	if op.req.Op == v1.GroupUpdate || op.req.Op == v1.GroupRestart {
		c.update(op)
		return
	}
	st, err := c.groupNow(op.ctx, op.ns, op.id, op.req)
	op.reply <- groupResult{st: st, err: err}
}

// endJobs answers, as the node stops, the operations still under way or waiting.
func (c *Coordinator) endJobs() {
	for id, job := range c.jobs {
		delete(c.jobs, id)
		job.done(svc.ErrStopped)
	}
	for id, ops := range c.waiting {
		delete(c.waiting, id)
		for _, op := range ops {
			op.reply <- groupResult{err: svc.ErrStopped}
		}
	}
}
