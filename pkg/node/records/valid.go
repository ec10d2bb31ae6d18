package records

import (
	"encoding/json"
	"strings"

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
		for part := range strings.SplitSeq(string(value), "@") {
			if v1.ValidateToken("workload ID", part) != nil {
				return false
			}
		}
		return true
	}
	var r Record
	return json.Unmarshal(value, &r) == nil && validRecord(key, &r)
}
