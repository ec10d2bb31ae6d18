package members

import (
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/zap"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Announcer is the node's side of the announcements: its own, on
// $NEX.NODE.v1.<node>.ANNOUNCE, and the others' it hears, which make the members.
type Announcer struct {
	Conn         *nats.Conn
	NodeID, Name string
	Members      *Members
	Log          *zap.Logger
	// XKeys are the curve keys of the node's nexlets, announced so that another node can
	// reseal a clone's sealed values for one of them.
	XKeys func() []string
	// Back is set when a node is heard again after a silence, and it did not restart:
	// this node may have been cut off from the cluster while its own server kept its
	// connection, and taken for lost.
	Back *atomic.Bool
}

// Announce announces the node (leaving: its departure).
func (a *Announcer) Announce(leaving bool) { a.As(v1.Announce{Leaving: leaving}) }

// As announces the node as ann says (starting, leaving).
func (a *Announcer) As(ann v1.Announce) {
	ann.NodeID, ann.Name = a.NodeID, a.Name
	ann.XKeys = a.XKeys()
	b, _ := json.Marshal(ann)
	_ = a.Conn.Publish(v1.AnnounceSubject(a.NodeID), b)
}

// Peers lists the nodes this node believes alive, itself included.
func (a *Announcer) Peers() []string { return a.Members.Live(a.NodeID) }

// Headers are the headers of an answer every node gives (a fan-out): the node, and the
// peers it knows, so the caller knows whom it still waits for.
func (a *Announcer) Headers() micro.Headers {
	return micro.Headers{
		v1.HeaderNodeID: []string{a.NodeID},
		v1.HeaderPeers:  []string{strings.Join(a.Peers(), ",")},
	}
}

// Hear takes another node's announcement: one published, by a node, on its own
// announcement subject. Tenants may not publish there, but JetStream hands a stored
// message to any subject a consumer's pull or a get names: a tenant's announcements of
// ghost nodes, stored in its bundle bucket, kept a killed node taken for alive (its
// workloads never moved), made fan-outs wait for 2,000 nodes, and lent a clone's
// reseal_for the tenant's own key (a review's walk). Such a message comes with a reply
// subject ($JS.ACK...) or a Nats-Stream header, or under another subject: dropped. (A get
// without headers is a publish like any other: tenants may make no direct get.)
func (a *Announcer) Hear(m *nats.Msg) {
	if m.Reply != "" || svc.DeliveredMsg(v1.AnnounceWildcard, m) {
		return
	}
	var ann v1.Announce
	if json.Unmarshal(m.Data, &ann) != nil || ann.NodeID == "" || ann.NodeID == a.NodeID || m.Subject != v1.AnnounceSubject(ann.NodeID) {
		return
	}
	known, back := a.Members.Heard(ann, time.Now())
	// A newcomer learns about us at once instead of after a full interval; so does a node
	// that restarted before we missed it (we know it, it does not know us).
	if (!known || ann.Starting) && !ann.Leaving {
		a.Announce(false)
	}
	if back && !ann.Starting && !ann.Leaving && a.Back.CompareAndSwap(false, true) {
		// Unheard for longer than a node is taken for alive, and not restarted: this node
		// may have been cut off from the cluster while its own server kept its connection
		// (no reconnect says so), and taken for lost. Chaos seed 67: a copy taken over
		// from a node cut off for 21 s, then stopped by its group's update, ran on at the
		// cut node for good once the cut healed; its watch of its records had missed both
		// changes. The node catches up at its next tick, once however many peers come back.
		a.Log.Info("heard a node again after a silence: checking this node's workloads against their records", zap.String("peer", ann.NodeID))
	}
}

// KnowsXKey says whether key is the public xkey of a nexlet registered with this node or
// with a node that announced itself.
func (a *Announcer) KnowsXKey(key string) bool {
	return slices.Contains(a.XKeys(), key) || a.Members.HasXKey(key)
}
