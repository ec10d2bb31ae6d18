// Package events publishes what happens on a node: a workload's lifecycle events on its
// namespace's feed ($NEX.FEED.<ns>.event.<wid>), and the node's own events (started,
// stopped, a nexlet registered or lost, lameduck) on the system namespace's.
package events

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Publisher publishes the events of one node; it keeps no state.
type Publisher struct {
	Conn   *nats.Conn
	NodeID string
}

// Workload publishes a workload event on its feed.
func (p Publisher) Workload(ev v1.Event) {
	b, _ := json.Marshal(ev)
	_ = p.Conn.Publish(v1.EventSubject(ev.Namespace, ev.WorkloadID), b)
}

// Node publishes a node event.
func (p Publisher) Node(ev v1.Event) {
	b, _ := json.Marshal(ev)
	_ = p.Conn.Publish(v1.NodeEventSubject(p.NodeID), b)
}

// Of publishes a node event of type typ, about nexlet nexletID when one is named.
func (p Publisher) Of(typ, nexletID, msg string) {
	ev := v1.Event{Type: typ, Namespace: v1.SystemNamespace, NodeID: p.NodeID, Time: time.Now().UTC(), Message: msg}
	if nexletID != "" {
		ev.Data = map[string]any{"nexlet_id": nexletID}
	}
	p.Node(ev)
}

// Unplaced publishes that workload wid of namespace ns could not be placed, and why.
func (p Publisher) Unplaced(ns, wid, why string) {
	p.Workload(v1.Event{Type: v1.EventUnplaced, WorkloadID: wid, Namespace: ns, NodeID: p.NodeID, Time: time.Now().UTC(), Message: why})
}
