package records

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nkeys"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// What JetStream writes over a key (an answer to a tenant's request that named the key
// as its reply subject) is not the node's state; a record, group or claim that says what
// its key says is.
func TestValidState(t *testing.T) {
	rec, _ := json.Marshal(Record{WorkloadID: "w1", Definition: v1.WorkloadDefinition{Namespace: "b"}})
	grp, _ := json.Marshal(Group{ID: "g-1", Definition: v1.WorkloadDefinition{Namespace: "b"}})
	answer := []byte(`{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0}`)
	server, _ := nkeys.CreateServer()
	nodeID, _ := server.PublicKey()
	for _, c := range []struct {
		key   string
		value []byte
		want  bool
	}{
		{"N1.w1", rec, true},
		{"N1.w2", rec, false}, // another workload's record
		{"N1.w1", answer, false},
		{"N1.ZZZ", answer, false},
		{"groups.b.g-1", grp, true},
		{"groups.a.g-1", grp, false},
		{"groups.b.planted", answer, false},
		{"requests.b.0123", []byte("w1"), true},
		{"requests.b.0123", []byte("w1@NBIGNODEIDXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"), false},
		{"requests.b.0123", []byte("w1@" + nodeID), true},
		{"requests.b.0123", answer, false},
		{"requests.b.0123", []byte(`{"stream":"OBJ_NEX_BUNDLES_a","seq":1}`), false},
		{"requests.b.0123", []byte(""), false},
	} {
		if got := ValidState(c.key, c.value); got != c.want {
			t.Errorf("ValidState(%s, %.40s) = %v, want %v", c.key, c.value, got, c.want)
		}
	}
}
