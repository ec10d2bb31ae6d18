package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	"github.com/nexrun/nex/internal/words"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/schema"
	"github.com/nexrun/nex/pkg/seal"
)

// groupBound bounds a group request: placing or stopping every copy.
const groupBound = time.Minute

// groupNow carries out a GROUP operation other than an update, on the actor.
func (c *Coordinator) groupNow(ctx context.Context, ns, id string, req *v1.GroupRequest) (v1.GroupStatus, error) {
	readAll := func(ctx context.Context) (map[string][]*records.Record, error) {
		return c.allRecs.read(ctx, c.cs, c.cs.All)
	}
	switch req.Op {
	case v1.GroupCreate:
		if req.Definition == nil {
			return v1.GroupStatus{}, v1.BadRequest("a group needs a definition")
		}
		def := *req.Definition
		def.Namespace, def.Group, def.GroupVersion = ns, id, 1
		if err := def.Validate(); err != nil {
			return v1.GroupStatus{}, err
		}
		if req.Replicas < 0 || req.MaxPerNode < 0 || req.Replicas > v1.MaxReplicas || req.MaxPerNode > v1.MaxReplicas {
			return v1.GroupStatus{}, v1.BadRequest("replicas (%d) and max_per_node (%d) must be between 0 and %d", req.Replicas, req.MaxPerNode, v1.MaxReplicas)
		}
		if def.Lifecycle == v1.LifecycleJob {
			return v1.GroupStatus{}, v1.BadRequest("replica groups keep services and functions running; a job runs once (start it N times instead)")
		}
		if req.Spread != "" {
			if err := v1.ValidateToken("spread", req.Spread); err != nil {
				return v1.GroupStatus{}, err
			}
		}
		if _, err := c.cs.Group(ctx, ns, id); err == nil { // a retried create: the quota holds it already
			return v1.GroupStatus{}, v1.Errorf(v1.CodeConflict, "group %s exists", id)
		}
		if err := groupQuota(ctx, c.cfg.Quotas, ns, id, req.Replicas, c.listGroups, readAll); err != nil {
			return v1.GroupStatus{}, err
		}
		g := &records.Group{ID: id, Definition: def, Replicas: req.Replicas, MaxPerNode: max(1, req.MaxPerNode), Spread: req.Spread, GroupVersion: 1, CreatedAt: time.Now().UTC()}
		if err := c.cs.PutGroup(ctx, g); err != nil {
			if errors.Is(err, records.ErrConflict) {
				return v1.GroupStatus{}, v1.Errorf(v1.CodeConflict, "group %s exists", id)
			}
			c.forgetGroup(ns, id)
			return v1.GroupStatus{}, records.StorageError(err, "record group "+id+" (it is removed again if it was recorded after all; nothing was started)")
		}
		pending, err := c.reconcileGroup(ctx, g, nil)
		refused := v1.IsCode(err, v1.CodeSchemaInvalid) || v1.IsCode(err, v1.CodeStartFailed)
		if refused && strings.HasPrefix(pending, "0 of ") {
			// no copy runs, for a start request no node takes or a start the node tried
			// and refused (an executable that is not there): the group is refused, as
			// the same plain start is, rather than kept and auctioned again every round
			// (a walk's group of a missing executable said "created" and exited 0)
			if rerr := RemoveGroup(c.ctx, c.cs, ns, id); rerr != nil {
				c.forgetGroup(ns, id)
			}
			c.book.setWhy(ns, id, "")
			return v1.GroupStatus{}, v1.Errorf(v1.AsError(err).ErrorCode, "%s (the group was not created; nothing was started)", err.Error())
		}
		return c.groupStatus(ctx, g, pending)
	case v1.GroupScale:
		if req.Replicas < 0 || req.Replicas > v1.MaxReplicas {
			return v1.GroupStatus{}, v1.BadRequest("replicas (%d) must be between 0 and %d", req.Replicas, v1.MaxReplicas)
		}
		g, err := c.cs.Group(ctx, ns, id)
		if err != nil {
			return v1.GroupStatus{}, groupNotFound(err, ns, id)
		}
		if req.Replicas > g.Replicas {
			if err := groupQuota(ctx, c.cfg.Quotas, ns, id, req.Replicas, c.listGroups, readAll); err != nil {
				return v1.GroupStatus{}, err
			}
		}
		g.Replicas = req.Replicas
		if err := c.cs.PutGroup(ctx, g); err != nil {
			return v1.GroupStatus{}, records.StorageError(err, "record group "+id)
		}
		pending, _ := c.reconcileGroup(ctx, g, nil)
		return c.groupStatus(ctx, g, pending)
	case v1.GroupInfo:
		g, err := c.cs.Group(ctx, ns, id)
		if err != nil {
			return v1.GroupStatus{}, groupNotFound(err, ns, id)
		}
		return c.groupStatus(ctx, g, c.book.why(ns, id))
	case v1.GroupStop:
		g, err := c.cs.Group(ctx, ns, id)
		if err != nil {
			return v1.GroupStatus{}, groupNotFound(err, ns, id)
		}
		if err := RemoveGroup(c.ctx, c.cs, ns, id); err != nil {
			return v1.GroupStatus{}, records.StorageError(err, "remove group "+id+" (it may be removed all the same: nex workload info tells)")
		}
		return c.stopGroup(ctx, g)
	}
	return v1.GroupStatus{}, v1.BadRequest("group op %q is not one of create, scale, update, restart, info, stop", req.Op)
}

// groupQuota refuses a count of replicas for group id (a create, a scale up) that would
// take namespace ns past its quota of workloads: each of its groups holds its count of
// places, at least one, its copies placed or not, and every other workload the records
// keep holds one (as a deploy counts them: ended ones too). A group none of whose copies
// can be placed held nothing, and a tenant made 300 of them, each auctioned by the
// coordinator every round (a tenant's attack); one of no copy at all held nothing either,
// and a tenant's 1,204 of them slowed every tenant's group requests (a newcomer's walk).
// It runs on the actor: list and all are its own reads (listGroups, allRecs).
func groupQuota(ctx context.Context, quotas map[string]v1.Quota, ns, id string, replicas int,
	list func(context.Context) ([]*records.Group, error), readAll func(context.Context) (map[string][]*records.Record, error)) error {
	q, ok := v1.QuotaOf(quotas, ns)
	if !ok || q.Workloads == 0 {
		return nil
	}
	groups, err := list(ctx)
	if err != nil {
		return records.StorageError(err, "count namespace "+ns+"'s replica groups for its quota")
	}
	all, err := readAll(ctx)
	if err != nil {
		return records.StorageError(err, "count namespace "+ns+"'s workloads for its quota")
	}
	copies := map[string]int{} // the namespace's group ID -> its copies the records keep
	for _, g := range groups {
		if g.Definition.Namespace == ns {
			copies[g.ID] = 0
		}
	}
	copies[id] = 0
	others := 0 // workloads that are no copy of a group of the namespace
	for _, recs := range all {
		for _, r := range recs {
			if holds, _ := r.QuotaHold(); !holds || r.Definition.Namespace != ns {
				continue
			}
			if _, ok := copies[r.Definition.Group]; ok && r.Definition.Group != "" {
				copies[r.Definition.Group]++
			} else {
				others++
			}
		}
	}
	asked := 0 // the places the namespace's other groups hold
	for _, g := range groups {
		if g.Definition.Namespace == ns && g.ID != id {
			asked += max(g.Replicas, copies[g.ID], 1)
		}
	}
	holds := max(replicas, copies[id], 1) // a group of no copy is a record the coordinator keeps and reads all the same
	if asked+others+holds > q.Workloads {
		return v1.Errorf(v1.CodeQuotaExceeded, "namespace %s has a quota of %s: its other replica groups hold %s and its other workloads %d, so a group of %s would pass it (a group holds its count of places, at least one, its copies placed or not) (nexd --namespace-quota %s=%s)",
			ns, words.Count(q.Workloads, "workload", "workloads"), words.Count(asked, "place", "places"), others, words.Count(holds, "copy", "copies"), ns, q)
	}
	return nil
}

// groupDeleter removes a group's record (a records.ClusterStore).
type groupDeleter interface {
	DeleteGroup(ctx context.Context, ns, id string) error
}

// RemoveGroup removes the record of group id, trying again for records.RetryBudget
// while the store does not answer: a removal is the same however often it is done, and
// one whose answer was lost may have taken effect (chaos seed 65: a stop answered
// storage_unavailable, "did not answer", and the group was gone all the same, its copy
// stopped as an orphan 30 s later).
func RemoveGroup(ctx context.Context, kv groupDeleter, ns, id string) error {
	ctx, cancel := context.WithTimeout(ctx, records.RetryBudget)
	defer cancel()
	return records.Retry(ctx, func(actx context.Context) error { return kv.DeleteGroup(actx, ns, id) })
}

// stopGroup stops every copy of g (whose record is removed already) that the records
// hold, on every node: a node that answers stops its copy; the record of a copy whose
// node does not answer (cut off, paused, lost) is marked stopping, so no takeover starts
// it elsewhere and its node stops it when it hears of the mark. (A chaos run: a stop
// that stopped only the listed copies left a cut-off node's copy running, and it was
// taken over and ran on for good after the stop was acknowledged.)
func (c *Coordinator) stopGroup(ctx context.Context, g *records.Group) (v1.GroupStatus, error) {
	st, _ := c.groupStatus(ctx, g, "")
	st.Replicas = 0
	// the group is removed: it is stopped, whatever follows. Copies this cannot reach now
	// are stopped as orphans by the coordinator's rounds (stopOrphans); saying the stop
	// failed would be false (a chaos run: "failed" of a group whose copies then stopped).
	byNode, err := c.copiesOf(ctx, g)
	if err != nil {
		st.Pending = "its copies are stopped as the coordinator reaches them: " + records.StorageError(err, "read the copies").Error()
		return st, nil
	}
	cl, _ := client.On(c.cfg.Conn, g.Definition.Namespace)
	for node, recs := range byNode {
		for _, rec := range recs {
			_, err := cl.StopWorkload(ctx, rec.WorkloadID, v1.StopRequest{})
			if err == nil || v1.IsNotFound(err) {
				continue
			}
			if err := c.markStopping(ctx, node, rec.WorkloadID); err != nil {
				st.Pending = "some copies are stopped as the coordinator reaches them: " + err.Error()
			}
		}
	}
	for i := range st.Copies {
		st.Copies[i].State = v1.StateStopped
	}
	return st, nil
}

// markStopping records on node's record of wid that it is to stop (records.MarkStopping).
func (c *Coordinator) markStopping(ctx context.Context, node, wid string) error {
	rec, err := records.MarkStopping(ctx, c.cs, v1.SystemNamespace, node, wid, 0)
	if err == nil && rec != nil && rec.Desired == records.DesiredStopping {
		c.log.Info("replica group stopped: the copy's node did not answer, its record says stop", zap.String("workload_id", wid), zap.String("node", node))
	}
	return err
}

func groupNotFound(err error, ns, id string) error {
	if errors.Is(err, records.ErrNotStored) {
		return v1.NotFound("replica group %s not found in namespace %s", id, ns)
	}
	return records.StorageError(err, "read group "+id)
}

// copiesOf lists the group's running copies by node, from every node's records.
func (c *Coordinator) copiesOf(ctx context.Context, g *records.Group) (map[string][]*records.Record, error) {
	all, err := c.cs.All(ctx)
	if err != nil {
		return nil, err
	}
	return copiesIn(all, g), nil
}

// copiesIn picks g's running copies out of every node's records.
func copiesIn(all map[string][]*records.Record, g *records.Group) map[string][]*records.Record {
	out := map[string][]*records.Record{}
	for node, recs := range all {
		for _, r := range recs {
			if r.Definition.Group == g.ID && r.Definition.Namespace == g.Definition.Namespace && r.Desired == records.DesiredRunning {
				out[node] = append(out[node], r)
			}
		}
	}
	return out
}

// reconcileGroup starts or stops copies until the group has its count, and returns why
// copies are missing, if they are. all is every node's records (nil: read them).
func (c *Coordinator) reconcileGroup(ctx context.Context, g *records.Group, all map[string][]*records.Record) (string, error) {
	if all == nil {
		var err error
		if all, err = c.cs.All(ctx); err != nil {
			return err.Error(), err
		}
	}
	byNode := copiesIn(all, g)
	have := 0
	for _, recs := range byNode {
		have += len(recs)
	}
	pending := ""
	var perr error
	for ; have < g.Replicas; have++ {
		node, _, err := c.placeCopy(ctx, g, byNode)
		if err != nil {
			pending, perr = fmt.Sprintf("%d of %s placed: %v", have, words.Count(g.Replicas, "copy", "copies"), err), err
			break
		}
		byNode[node] = append(byNode[node], &records.Record{})
	}
	if have > g.Replicas {
		c.stopCopies(ctx, g, byNode, have-g.Replicas)
	}
	if ns := g.Definition.Namespace; pending != c.book.why(ns, g.ID) {
		if pending != "" {
			c.log.Warn("replica group short of copies", zap.String("group", g.ID), zap.String("reason", pending))
		}
		c.book.setWhy(ns, g.ID, pending)
	}
	return pending, perr
}

// placeCopy auctions one more copy of g and deploys it on the best bid: a node with
// fewer than MaxPerNode copies, on the value of the Spread tag with the fewest copies,
// else the node with the fewest; among equals, as every placement, the least loaded
// (client.RankBids). It returns the node.
func (c *Coordinator) placeCopy(ctx context.Context, g *records.Group, byNode map[string][]*records.Record) (node, wid string, err error) {
	def := g.Definition
	cl, err := client.On(c.cfg.Conn, def.Namespace)
	if err != nil {
		return "", "", err
	}
	res, err := def.WantedResources()
	if err != nil {
		return "", "", err
	}
	bids, declines, err := cl.Auction(ctx, v1.AuctionRequest{Type: def.Type, Lifecycle: def.Lifecycle, Tags: def.Tags, Ports: def.Ports(), Resources: res})
	if err != nil {
		return "", "", err
	}
	why := declined(declines, "")
	all := slices.Clone(bids)
	bids = slices.DeleteFunc(bids, func(b v1.Bid) bool {
		if len(byNode[b.NodeID]) >= g.MaxPerNode {
			why = append(why, fmt.Sprintf("node %s already runs %d of them (max_per_node %d)", b.NodeID, len(byNode[b.NodeID]), g.MaxPerNode))
			return true
		}
		return false
	})
	if len(bids) == 0 {
		sort.Strings(why)
		cl.ReleaseBids(ctx, all, "", res)
		return "", "", fmt.Errorf("no node can take another copy: %s", strings.Join(why, "; "))
	}
	score := func(b v1.Bid) int { return len(byNode[b.NodeID]) }
	if g.Spread != "" {
		tags := c.nodeTags(ctx)
		perValue := map[string]int{}
		for node, recs := range byNode {
			perValue[tags[node][g.Spread]] += len(recs)
		}
		score = func(b v1.Bid) int { return perValue[tags[b.NodeID][g.Spread]]*1000 + len(byNode[b.NodeID]) }
	}
	bids = client.RankBids(bids) // equal scores: the least loaded node (the first) wins
	best := bids[0]
	for _, b := range bids[1:] {
		if score(b) < score(best) {
			best = b
		}
	}
	if err := schema.Validate(best.StartRequestSchema, def.StartRequest); err != nil {
		// as the client checks a start for its bid: the node would refuse the deploy
		cl.ReleaseBids(ctx, all, "", res)
		return "", "", v1.Errorf(v1.CodeSchemaInvalid, "%s", err.Error())
	}
	cl.ReleaseBids(ctx, all, best.BidID, res)
	placed := def
	if seal.Contains(def.StartRequest) {
		if c.cfg.SecretsKey == nil {
			return "", "", errors.New("the group's environment is sealed for the cluster's secrets key, and this node has no --secrets-key")
		}
		if placed.StartRequest, err = seal.Reseal(def.StartRequest, c.cfg.SecretsKey, best.XKey, def.Namespace); err != nil {
			return "", "", err
		}
	}
	var info v1.WorkloadInfo
	epoch := c.epoch.Load()
	if epoch == 0 {
		return "", "", errNotCoordinator
	}
	req := v1.DeployRequest{Workload: placed, Coordinator: c.cfg.NodeID, Epoch: epoch} // the node checks the lease is still ours
	if err := svc.Call(ctx, c.cfg.Conn, v1.ControlSubject(def.Namespace, v1.VerbDeploy, best.BidID), req, &info); err != nil {
		return "", "", fmt.Errorf("node %s: %w", best.NodeID, err)
	}
	c.log.Info("replica group: copy started", zap.String("group", g.ID), zap.String("workload_id", info.ID), zap.String("node", best.NodeID))
	return best.NodeID, info.ID, nil
}

// errNotCoordinator: this node lost the coordinator lease during a group operation.
var errNotCoordinator = v1.Errorf(v1.CodeUnavailable, "this node no longer holds the coordinator lease: the copies placed so far stay, the new coordinator places the rest")

// stopCopies stops n copies of g, from the nodes that run the most.
func (c *Coordinator) stopCopies(ctx context.Context, g *records.Group, byNode map[string][]*records.Record, n int) {
	cl, _ := client.On(c.cfg.Conn, g.Definition.Namespace)
	for ; n > 0; n-- {
		most := ""
		for node, recs := range byNode {
			if most == "" || len(recs) > len(byNode[most]) {
				most = node
			}
		}
		if most == "" || len(byNode[most]) == 0 {
			return
		}
		victim := byNode[most][len(byNode[most])-1]
		byNode[most] = byNode[most][:len(byNode[most])-1]
		if victim.WorkloadID == "" {
			continue
		}
		if _, err := cl.StopWorkload(ctx, victim.WorkloadID, v1.StopRequest{}); err != nil && !v1.IsNotFound(err) {
			c.log.Warn("replica group: stop a copy", zap.String("group", g.ID), zap.String("workload_id", victim.WorkloadID), zap.Error(err))
		}
	}
}

// nodeTags are the live nodes' tags, by node ID.
func (c *Coordinator) nodeTags(ctx context.Context) map[string]map[string]string {
	cl, _ := client.On(c.cfg.Conn, v1.SystemNamespace)
	nodes, _ := cl.ListNodes(ctx)
	out := map[string]map[string]string{}
	for _, n := range nodes {
		out[n.NodeID] = n.Tags
	}
	return out
}

// groupStatus describes g with its copies as the nodes list them.
func (c *Coordinator) groupStatus(ctx context.Context, g *records.Group, pending string) (v1.GroupStatus, error) {
	def := g.Definition
	st := v1.GroupStatus{ID: g.ID, Namespace: g.Definition.Namespace, Name: g.Definition.Name, Replicas: g.Replicas,
		MaxPerNode: g.MaxPerNode, Spread: g.Spread, Version: g.GroupVersion, Definition: &def, Copies: []v1.WorkloadInfo{}, Pending: pending}
	cl, _ := client.On(c.cfg.Conn, g.Definition.Namespace)
	list, err := cl.ListWorkloads(ctx, "")
	if err != nil {
		return st, err
	}
	listed := map[string]bool{}
	live := map[string]bool{c.cfg.NodeID: true}
	for _, id := range c.cfg.Members.Live(c.cfg.NodeID) {
		live[id] = true
	}
	for _, w := range list {
		// a silent node's copy (listed from its records, unknown) is a missing copy
		if w.Group == g.ID && (live[w.NodeID] || w.State != v1.StateUnknown) {
			st.Copies = append(st.Copies, w)
			listed[w.ID] = true
		}
	}
	sort.Slice(st.Copies, func(i, j int) bool { return st.Copies[i].ID < st.Copies[j].ID })
	if st.Pending == "" && len(st.Copies) < g.Replicas {
		st.Pending = c.missingCopies(ctx, g, listed)
	}
	return st, nil
}

// missingCopies says why copies the records hold are not listed: their nodes are lost and
// the copies wait to be moved (with the coordinator's reason when it could not place them).
func (c *Coordinator) missingCopies(ctx context.Context, g *records.Group, listed map[string]bool) string {
	byNode, err := c.copiesOf(ctx, g)
	if err != nil {
		return ""
	}
	var why []string
	for node, recs := range byNode {
		for _, r := range recs {
			if listed[r.WorkloadID] {
				continue
			}
			reason := "its node " + node + " does not answer (lost, or being taken over)"
			if p := c.pending[r.WorkloadID]; p != "" {
				reason = p
			}
			why = append(why, "copy "+r.WorkloadID+": "+reason)
		}
	}
	sort.Strings(why)
	return strings.Join(why, "; ")
}

// groupsEvery is how often the coordinator checks every group's count.
const groupsEvery = 3 * time.Second

// reconcileGroups keeps every group at its count (a copy that ended, or a group scaled
// while copies were being moved).
func (c *Coordinator) reconcileGroups(ctx context.Context) {
	if time.Since(c.groupsAt) < groupsEvery {
		return
	}
	c.groupsAt = time.Now()
	groups, err := c.listGroups(ctx)
	if err != nil {
		// said, once a minute: groups not kept at their counts for as long as this lasts
		if time.Since(c.listFailedAt) > time.Minute {
			c.listFailedAt = time.Now()
			c.log.Warn("cannot read the replica groups: their counts are not kept until it can", zap.Error(err))
		}
		return
	}
	if len(groups) > 0 {
		c.groupsSeen = time.Now()
	} else if time.Since(c.groupsSeen) > c.rescan && time.Since(c.orphansAt) < c.rescan {
		// no group to count, and none for a while: only a copy of a group that is gone
		// could need stopping, which a read of every record now and then finds (reading
		// them all every 3 s was most of an idle node's work: 100 gets every 3 s at 100
		// services). Just after the last group went, its copies are looked for as often
		// as before.
		return
	}
	all, err := c.allRecs.read(ctx, c.cs, c.cs.All) // once for every group
	if err != nil {
		return
	}
	c.orphansAt = time.Now()
	c.stopOrphans(ctx, groups, all)
	for _, g := range groups {
		if _, busy := c.jobs[g.ID]; busy {
			continue // its update keeps its copies, and their count
		}
		c.reconcileGroup(ctx, g, all)
		if hasOlder(copiesIn(all, g), g.GroupVersion) {
			c.resume(g.Definition.Namespace, g.ID)
		}
	}
}

// sinceWrite is what the coordinator read of the state (every record, or which nodes hold
// records), kept with the state's revision (records.StateRevision) before it was read:
// while the revision stays the same, so does what was read, and it is not read again (at
// idle, one request where reading it all is one per record).
type sinceWrite[T any] struct {
	rev  uint64
	val  T // shared with the coordinator: nothing else holds it
	held bool
}

// read returns what load reads, or what it read last when nothing in the state was
// written since.
func (s *sinceWrite[T]) read(ctx context.Context, cs records.ClusterStore, load func(context.Context) (T, error)) (T, error) {
	rev, err := cs.StateRevision(ctx)
	if err == nil && rev != 0 && s.held && rev == s.rev {
		return s.val, nil
	}
	v, err2 := load(ctx)
	if err2 != nil {
		return v, err2
	}
	s.val, s.rev, s.held = v, rev, err == nil // the revision unknown: read it again next time
	return v, nil
}

// listGroups lists every group, from the store when a group's record was written since
// the last listing (or this is a new term as coordinator), else as that listing found
// them: one read of the last write's sequence every groupsEvery, where a listing costs a
// consumer. The revision is read before the listing, so a write the listing may have
// missed changes it.
func (c *Coordinator) listGroups(ctx context.Context) ([]*records.Group, error) {
	rev, err := c.cs.GroupsRevision(ctx, "")
	if err != nil {
		return nil, err
	}
	if groups, ok := c.book.at(rev); ok && c.groupsListed.After(c.since()) {
		return groups, nil
	}
	groups, err := c.cs.Groups(ctx, "")
	if err != nil {
		return nil, err
	}
	c.groupsListed = time.Now()
	c.book.listed(rev, groups)
	return groups, nil
}

// forgetGroup removes, in the background, the record of a group whose create failed: a
// write whose answer was lost may have been stored, and the group would then start copies
// later, after its creator was told it failed. Copies placed meanwhile are stopped as
// orphans once it is gone.
func (c *Coordinator) forgetGroup(ns, id string) {
	c.cfg.WG.Add(1)
	go func() {
		defer c.cfg.WG.Done()
		for range 60 {
			ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
			err := c.cs.DeleteGroup(ctx, ns, id)
			cancel()
			if err == nil || c.ctx.Err() != nil {
				return
			}
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
}

// stopOrphans stops the copies of groups that no longer exist: a copy taken over from a
// lost node while its group was being stopped started again after the stop had passed
// its node, and ran on for good (a chaos run: a group stopped, acknowledged, and one copy
// running). A copy's group is recorded before any copy is placed, so a copy without one
// is left over.
func (c *Coordinator) stopOrphans(ctx context.Context, groups []*records.Group, all map[string][]*records.Record) {
	exists := map[string]bool{}
	for _, g := range groups {
		exists[g.Definition.Namespace+"/"+g.ID] = true
	}
	for node, recs := range all {
		for _, r := range recs {
			d := r.Definition
			if d.Group == "" || r.Desired != records.DesiredRunning || exists[d.Namespace+"/"+d.Group] {
				continue
			}
			cl, _ := client.On(c.cfg.Conn, d.Namespace)
			if _, err := cl.StopWorkload(ctx, r.WorkloadID, v1.StopRequest{}); err != nil && !v1.IsNotFound(err) {
				if err := c.markStopping(ctx, node, r.WorkloadID); err != nil {
					c.log.Warn("stop a copy of a group that is gone", zap.String("workload_id", r.WorkloadID), zap.Error(err))
					continue
				}
			}
			c.log.Info("stopped a copy of a replica group that is gone (stopped while the copy moved)", zap.String("group", d.Group), zap.String("workload_id", r.WorkloadID), zap.String("node", node))
		}
	}
}

// hasOlder says whether any of the copies runs a version other than version.
func hasOlder(byNode map[string][]*records.Record, version int) bool {
	for _, recs := range byNode {
		for _, r := range recs {
			if r.Definition.GroupVersion != version {
				return true
			}
		}
	}
	return false
}

// stillCoordinator says whether this node still holds the coordinator lease at epoch, as
// the lease's stream leader says (a node paused past its lease learns it only there).
func (c *Coordinator) stillCoordinator(ctx context.Context, epoch uint64) bool {
	lease := c.lease.Load()
	if lease == nil || epoch == 0 {
		return false
	}
	node, current, err := lease.Holder(ctx)
	return err == nil && node == c.cfg.NodeID && current == epoch
}
