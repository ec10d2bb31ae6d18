package secrets

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// A node without --secrets-key has no store: it serves no SECRET verb, passes a start
// request without references as it is, and refuses one with a reference, naming it.
func TestNoStoreRefusesReferences(t *testing.T) {
	s := New(nil, nil, nil, nil)
	if s != nil || len(s.Endpoints()) != 0 {
		t.Fatal("a node without a secrets key has a store, or serves its verbs")
	}
	plain := []byte(`{"uri":"file:///bin/true","environment":{"A":"x"}}`)
	if out, err := s.Resolve(context.Background(), "ns", plain, ""); err != nil || string(out) != string(plain) {
		t.Fatalf("a start request without references: %s, %v", out, err)
	}
	_, err := s.Resolve(context.Background(), "ns", []byte(`{"environment":{"TOKEN":"secret://api"}}`), "X")
	if !v1.IsCode(err, v1.CodeBadRequest) || !strings.Contains(err.Error(), "start_request.environment.TOKEN refers to secret://api, but this node has no --secrets-key") {
		t.Fatalf("a reference on a node without a store: %v", err)
	}
}
