package node

import (
	"context"
	"time"
)

// RenewCreds runs one round of workload credential renewal now.
func (n *Node) RenewCreds() { n.renewCreds() }

// LeaseRanOut makes the coordinator's last renewal older than half a lease period, as a
// node paused past its lease finds it when it runs again, before its renewal loop has.
func (n *Node) LeaseRanOut() {
	if c := n.coord.Load(); c != nil {
		c.goodUntil.Store(time.Now().Add(-time.Second).UnixNano())
	}
}

// RemoveGroup is removeGroup: a group's record removed, tried again while the store does
// not answer.
func RemoveGroup(ctx context.Context, kv interface {
	DeleteGroup(ctx context.Context, ns, id string) error
}, ns, id string) error {
	return removeGroup(ctx, kv, ns, id)
}
