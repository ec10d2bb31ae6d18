package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/seal"
)

// ErrNoCoordinator means no node answered a group request: groups need nodes with
// --state kv, one of which holds the coordinator lease.
var ErrNoCoordinator = errors.New("no coordinator answered: replica groups need nodes that keep their state in JetStream KV (--state kv); the coordinator may also be changing (try again in a few seconds)")

// StartGroup starts replicas copies of def as a replica group and returns it. Values in
// def's environment are sealed for the cluster's secrets key (every node's
// --secrets-key), so the coordinator can seal them for each copy's nexlet.
func (c *Client) StartGroup(ctx context.Context, def v1.WorkloadDefinition, replicas, maxPerNode int, spread string) (*v1.GroupStatus, error) {
	def.Namespace = c.ns
	if err := def.Validate(); err != nil {
		return nil, err
	}
	if replicas < 0 || maxPerNode < 0 {
		return nil, v1.BadRequest("replicas and max_per_node may not be negative")
	}
	if err := c.sealForCluster(ctx, &def); err != nil {
		return nil, err
	}
	return c.Group(ctx, v1.GroupIDPrefix+v1.NewID(), v1.GroupRequest{Op: v1.GroupCreate, Definition: &def, Replicas: replicas, MaxPerNode: maxPerNode, Spread: spread})
}

// UpdateGroup rolls a replica group over to def, maxParallel copies at a time (see
// v1.GroupUpdate); environment values are sealed for the cluster's secrets key.
func (c *Client) UpdateGroup(ctx context.Context, gid string, def v1.WorkloadDefinition, maxParallel int) (*v1.GroupStatus, error) {
	def.Namespace = c.ns
	if err := def.Validate(); err != nil {
		return nil, err
	}
	if err := c.sealForCluster(ctx, &def); err != nil {
		return nil, err
	}
	return c.Group(ctx, gid, v1.GroupRequest{Op: v1.GroupUpdate, Definition: &def, MaxParallel: maxParallel})
}

// sealForCluster seals the plain environment values of def for the cluster's secrets key.
func (c *Client) sealForCluster(ctx context.Context, def *v1.WorkloadDefinition) error {
	if !seal.HasPlainValues(def.StartRequest) {
		return nil
	}
	key, err := c.secretsKey(ctx)
	if errors.Is(err, ErrNoSecretsKey) {
		return v1.BadRequest("a replica group with environment values needs the same --secrets-key on every node (its values are sealed for it); no node has one")
	}
	if err != nil {
		return err
	}
	def.StartRequest, err = seal.Environment(def.StartRequest, key, c.ns)
	return err
}

// secretsKey is the cluster's secrets key, asked under the namespace's own subject
// (SECRET_KEY: no node administration rights needed); nodes that do not serve it (no
// --secrets-key, or older) leave ErrNoSecretsKey.
func (c *Client) secretsKey(ctx context.Context) (string, error) {
	var r v1.SecretKeyReply
	err := secretCall(ctx, c, v1.ControlSubject(c.ns, v1.VerbSecretKey), struct{}{}, &r)
	switch {
	case err == nil && r.XKey != "":
		return r.XKey, nil
	case svc.IsBusy(err):
		return "", err
	case err == nil, v1.IsCode(err, v1.CodeUnavailable), errors.Is(err, ErrNoSecretsKey):
		return "", ErrNoSecretsKey
	}
	return "", err
}

// coordinatorWait is how long a group request waits for a coordinator (one is chosen
// within a lease period of the last one going).
const coordinatorWait = 15 * time.Second

// RestartGroup replaces every copy of group gid with a new one of the same definition,
// maxParallel at a time, as an update does (v1.GroupRestart).
func (c *Client) RestartGroup(ctx context.Context, gid string, maxParallel int) (*v1.GroupStatus, error) {
	return c.Group(ctx, gid, v1.GroupRequest{Op: v1.GroupRestart, MaxParallel: maxParallel})
}

// Group sends a group request to the coordinator: every node hears it, the coordinator
// acknowledges and answers, the others say they are not it. With no coordinator (one
// is being chosen) it asks again until coordinatorWait has passed.
func (c *Client) Group(ctx context.Context, gid string, req v1.GroupRequest) (*v1.GroupStatus, error) {
	if err := v1.ValidateToken("replica group ID", gid); err != nil {
		return nil, err // a '.' made another subject, which nothing answered for 15 s
	}
	var st v1.GroupStatus
	created := false // by a try whose answer was lost
	err := c.askCoordinator(ctx, "group "+gid, v1.ControlSubject(c.ns, v1.VerbGroup, gid), req, &st, func(try int, err error) bool {
		// the ID is new, made for this create: a try that went unanswered created it
		created = try > 1 && req.Op == v1.GroupCreate && v1.IsCode(err, v1.CodeConflict)
		return created
	})
	switch {
	case created:
		return c.Group(ctx, gid, v1.GroupRequest{Op: v1.GroupInfo})
	case err != nil:
		return nil, err
	}
	return &st, nil
}

// Groups lists the namespace's replica groups (every namespace's from system) as the
// coordinator holds them: each group's definition's name, its count and version, and
// why copies are missing when the coordinator knows; not its copies (List names each
// copy's group). A group whose copies cannot be placed is found here, and only here.
// No node serving GROUPS at all (nodes older than this client) is 501 not_implemented,
// as nodes without groups answer, at once.
func (c *Client) Groups(ctx context.Context) ([]v1.GroupStatus, error) {
	var list []v1.GroupStatus
	none := false // no node serves GROUPS: every node answers it, the coordinator or not
	err := c.askCoordinator(ctx, "replica groups", v1.ControlSubject(c.ns, v1.VerbGroups), struct{}{}, &list, func(_ int, err error) bool {
		none = errors.Is(err, svc.ErrNoResponders)
		return none
	})
	if none {
		return nil, v1.Errorf(v1.CodeNotImplemented, "no node serves %s (nodes older than this client)", v1.VerbGroups)
	}
	return list, err
}

// askCoordinator sends req on subject and decodes the coordinator's answer into reply;
// while no node says it is the coordinator it asks again every 500 ms until
// coordinatorWait has passed (what names the request then). done, when given, ends the
// tries on an error it takes as an answer (returning nil).
func (c *Client) askCoordinator(ctx context.Context, what, subject string, req, reply any, done func(try int, err error) bool) error {
	giveUp := time.Now().Add(coordinatorWait)
	for try := 1; ; try++ {
		acked := false
		err := svc.Lookup(ctx, c.nc, subject, req, reply, c.Straggler, func(svc.Ack) { acked = true })
		switch {
		case err == nil:
			return nil
		case done != nil && done(try, err):
			return nil
		case acked, !v1.IsNotFound(err) && !errors.Is(err, svc.ErrNoResponders):
			return err
		case time.Now().After(giveUp):
			return fmt.Errorf("%s: %w", what, ErrNoCoordinator)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ErrNoCoordinator)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
