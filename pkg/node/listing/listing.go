// Package listing is the room of the LIST verb on one node: each nexlet's list passed
// through undecoded (a thousand workloads cost one encode at the nexlet, one scan here
// and one decode at the client), what the node's records add that no nexlet listed, and,
// on the coordinator, the records of the nodes it no longer hears from.
package listing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/index"
	"github.com/nexrun/nex/pkg/node/members"
	"github.com/nexrun/nex/pkg/node/records"
	"github.com/nexrun/nex/pkg/node/registry"
	"go.uber.org/zap"
)

// Host is what the room asks of its node.
type Host interface {
	// ListNexlet asks one local nexlet for its list, without waiting for one that is
	// between processes.
	ListNexlet(ctx context.Context, nexletID string, req v1.NexletListRequest, out *json.RawMessage) error
	// IsCoordinator says whether the node holds the coordinator lease now.
	IsCoordinator() bool
	// Unplaced is why the coordinator could not place a lost node's workload elsewhere
	// at its last try, as its unplaced event said ("" when it knows of no reason).
	Unplaced(workloadID string) string
}

// Config wires a Lister.
type Config struct {
	Log     *zap.Logger
	NodeID  string
	Nexlets *registry.Registry
	Index   *index.Index
	Members *members.Members
	Cluster records.ClusterStore // the records the cluster shares; nil on a node whose records are its own
	Host    Host
}

// Lister is the room; it keeps no state of its own.
type Lister struct{ Config }

// New returns the room.
func New(cfg Config) *Lister { return &Lister{Config: cfg} }

// List answers LIST for namespace ns: it asks each nexlet for its list and passes their workloads into the reply
// without decoding them into values (a thousand workloads cost one encode at the nexlet,
// one scan here and one decode at the client), then adds from the node's records what no
// nexlet listed: workloads that ended for good and that a restarted nexlet no longer has,
// and those of a nexlet that does not answer (restarting), with their last known state.
func (l *Lister) List(ctx context.Context, ns string, req *v1.ListRequest) (json.RawMessage, error) {
	if req.Type != "" {
		if err := v1.ValidateToken("type", req.Type); err != nil {
			return nil, err
		}
	}
	filter := ns
	if ns == v1.SystemNamespace {
		filter = ""
	}
	var ids []string
	for _, e := range l.Nexlets.All(time.Now()) {
		id := e.Reg.NexletID
		// a registering nexlet's workloads are not indexed yet: what a list shows, a stop must find
		if e.Ready && (req.Type == "" || e.Reg.RegisterType == req.Type) {
			ids = append(ids, id)
		}
	}
	parts := make([][]byte, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			var list json.RawMessage
			// not waiting for a nexlet that is between processes: its workloads are
			// listed from their records as unknown at once
			if err := l.Host.ListNexlet(cctx, id, v1.NexletListRequest{Namespace: filter, NoMetadata: req.NoMetadata}, &list); err != nil {
				l.Log.Warn("list nexlet", zap.String("nexlet_id", id), zap.Error(err))
				return
			}
			parts[i] = list
		}()
	}
	wg.Wait()
	reply := nodeList{NodeID: l.NodeID, Workloads: []json.RawMessage{}}
	listed := map[string]bool{}
	for i, p := range parts {
		if len(p) == 0 {
			continue
		}
		items, err := splitArray(p) // each workload stays as its nexlet encoded it
		if err != nil {
			l.Log.Warn("list nexlet: not a JSON array", zap.String("nexlet_id", ids[i]), zap.Error(err))
			continue
		}
		for _, it := range items {
			listed[itemID(it)] = true
		}
		reply.Workloads = append(reply.Workloads, items...)
	}
	// a silent node's records first, this node's index after: a takeover indexes its
	// copy before it marks the lost node's record moved, so a workload it moves while the
	// list runs is in one or the other (it was in neither, in a CI run)
	silent := l.ofSilentNodes(ctx, filter, req)
	for _, info := range append(l.fromRecords(filter, req, listed), silent...) {
		b, err := json.Marshal(info)
		if err == nil {
			reply.Workloads = append(reply.Workloads, b)
		}
	}
	return reply.encode()
}

// splitArray checks that p is valid JSON (one scan) and, when it is an array, returns its
// elements as they are, without copying or decoding them.
func splitArray(p []byte) ([]json.RawMessage, error) {
	if !json.Valid(p) {
		return nil, errors.New("invalid JSON")
	}
	p = bytes.TrimSpace(p)
	if len(p) < 2 || p[0] != '[' {
		return nil, errors.New("not an array")
	}
	var items []json.RawMessage
	depth, start, inString, escaped := 0, -1, false, false
	for i := 1; i < len(p)-1; i++ {
		c := p[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case c == ',' && depth == 0:
			items = append(items, bytes.TrimSpace(p[start:i]))
			start = -1
			continue
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		items = append(items, bytes.TrimSpace(p[start:len(p)-1]))
	}
	return items, nil
}

// itemID reads the "id" of one listed workload: at once when it comes first, as
// encoding/json writes a v1.WorkloadInfo, else by decoding it.
func itemID(item json.RawMessage) string {
	const prefix = `{"id":"`
	if bytes.HasPrefix(item, []byte(prefix)) {
		rest := item[len(prefix):]
		if end := bytes.IndexByte(rest, '"'); end >= 0 && bytes.IndexByte(rest[:end], '\\') < 0 {
			return string(rest[:end])
		}
	}
	var w struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(item, &w)
	return w.ID
}

// fromRecords describes the indexed workloads of namespace ns (all for "") that no nexlet
// listed: a finished one as it ended, any other with state unknown.
func (l *Lister) fromRecords(ns string, req *v1.ListRequest, listed map[string]bool) []v1.WorkloadInfo {
	var out []v1.WorkloadInfo
	for _, w := range l.Index.All(nil) {
		d := w.Rec.Definition
		if listed[w.Rec.WorkloadID] || (ns != "" && d.Namespace != ns) || (req.Type != "" && d.Type != req.Type) || w.Rec.Desired == records.DesiredStopping {
			continue
		}
		out = append(out, RecordInfo(l.NodeID, w.Rec, req.NoMetadata))
	}
	return out
}

// RecordInfo is what the record tells of a workload its nexlet does not (or no longer)
// report: how it ended, or state unknown with what the node wants of it.
func RecordInfo(nodeID string, rec records.Record, noMetadata bool) v1.WorkloadInfo {
	if rec.Final != nil {
		info := *rec.Final
		if noMetadata {
			info.Metadata = nil
		}
		return info
	}
	d := rec.Definition
	info := v1.WorkloadInfo{ID: rec.WorkloadID, Namespace: d.Namespace, Name: d.Name, Description: d.Description, Type: d.Type,
		Lifecycle: d.Lifecycle, Tags: d.Tags, State: v1.StateUnknown, NodeID: nodeID, NexletID: rec.NexletID, StartedAt: rec.CreatedAt, Group: d.Group, GroupVersion: d.GroupVersion,
		Restarts: rec.Restarts}
	if !noMetadata {
		info.Metadata = map[string]string{"desired": rec.Desired, "restarts": strconv.FormatUint(rec.Restarts, 10),
			"note": "nexlet " + rec.NexletID + " did not list it (restarting?); state from the node's record"}
	}
	return info
}

// nodeList is a node's LIST reply with its nexlets' workloads passed through undecoded.
type nodeList struct {
	NodeID    string            `json:"node_id"`
	Workloads []json.RawMessage `json:"workloads"`
}

// encode writes the reply as {"node_id":...,"workloads":[...]}. Each workload is valid
// JSON already (json.Unmarshal checked every nexlet's array, or json.Marshal wrote it),
// so they are joined as they are instead of being scanned once more by json.Marshal.
func (l nodeList) encode() (json.RawMessage, error) {
	id, err := json.Marshal(l.NodeID)
	if err != nil {
		return nil, err
	}
	size := len(id) + 32
	for _, w := range l.Workloads {
		size += len(w) + 1
	}
	buf := make([]byte, 0, size)
	buf = append(buf, `{"node_id":`...)
	buf = append(buf, id...)
	buf = append(buf, `,"workloads":[`...)
	for i, w := range l.Workloads {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, w...)
	}
	return append(buf, "]}"...), nil
}

// ofSilentNodes is what the coordinator lists of the nodes it no longer hears from (its
// records in the KV state, as unknown), so that a list between a node's silence and the
// takeover of its workloads does not leave them out without a word (a chaos run: 502 of
// 752 listed, exit 0). Only the coordinator answers for them; clients keep one entry per
// workload, the one that is not unknown when two nodes name it.
func (l *Lister) ofSilentNodes(ctx context.Context, ns string, req *v1.ListRequest) []v1.WorkloadInfo {
	cs := l.Cluster
	if cs == nil || !l.Host.IsCoordinator() {
		return nil
	}
	silent := l.Members.Silent(l.NodeID)
	var out []v1.WorkloadInfo
	for node, at := range silent {
		recs, err := cs.RecordsOf(ctx, node)
		if err != nil {
			continue
		}
		for _, rec := range recs {
			d := rec.Definition
			if rec.Desired == records.DesiredMoved || rec.Desired == records.DesiredStopping || (ns != "" && d.Namespace != ns) || (req.Type != "" && d.Type != req.Type) {
				continue
			}
			info := RecordInfo(l.NodeID, *rec, req.NoMetadata)
			info.NodeID = node
			if rec.Final == nil && !req.NoMetadata {
				note := "its services move to other nodes once the node-loss window has passed"
				if why := l.Host.Unplaced(rec.WorkloadID); why != "" {
					// a walk: "move" of a workload that never could (sealed for that node)
					note = why
				}
				info.Metadata["note"] = "node " + node + " not heard from since " + at.UTC().Format(time.RFC3339) + "; " + note
			}
			out = append(out, info)
		}
	}
	return out
}
