package records

import (
	"encoding/json"
	"strings"

	"github.com/nats-io/nkeys"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// A value in the state bucket is the node's own writing only if it says what its key
// says: JetStream writes its answer to a tenant's request over any key the tenant names
// as the reply subject, when the bucket is in the tenant's account (without
// --state.creds-file), and such an answer decoded as a record with no workload ID; an
// index keyed by request ID then took every start for a repeat of it, in every namespace
// (a review's walk). Readers skip what is not valid, and a move into the state account
// copies only what is.

// validRecord says whether r is a record of the workload key names.
func validRecord(key string, r *Record) bool {
	_, wid, ok := recordOfKey(key)
	return ok && r.WorkloadID == wid && v1.ValidateToken("workload ID", wid) == nil
}

// validGroup says whether g is the replica group key names.
func validGroup(key string, g *Group) bool {
	return g.ID != "" && key == groupKey(g.Definition.Namespace, g.ID)
}

// ValidState says whether value is something a node writes under key of the state
// bucket: a record of that workload, that replica group, or a request ID's claim (a
// workload ID).
func ValidState(key string, value []byte) bool {
	switch {
	case strings.HasPrefix(key, "groups."):
		var g Group
		return json.Unmarshal(value, &g) == nil && validGroup(key, &g)
	case strings.HasPrefix(key, "requests."):
		return validHolder(string(value))
	}
	var r Record
	return json.Unmarshal(value, &r) == nil && validRecord(key, &r)
}

// ClaimHolder is what a request ID's claim holds for workload wid on node: "wid@node".
func ClaimHolder(wid, node string) string { return wid + "@" + node }

// validHolder says whether a request ID's claim names a holder as a node writes it: a
// workload ID, "@", the node's ID (or a workload ID alone, as nodes wrote it before). An
// acknowledgement of a tenant's publish ({"stream":"OBJ_...","seq":1}) is a valid subject
// token, and held a predictable request ID of another namespace for good.
func validHolder(h string) bool {
	wid, node, withNode := strings.Cut(h, "@")
	if wid == "" || strings.ContainsFunc(wid, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_')
	}) {
		return false
	}
	return !withNode || nkeys.IsValidPublicServerKey(node)
}
