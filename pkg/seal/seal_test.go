package seal

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestSealOpenReseal(t *testing.T) {
	a, _ := nkeys.CreateCurveKeys()
	b, _ := nkeys.CreateCurveKeys()
	apub, _ := a.PublicKey()
	bpub, _ := b.PublicKey()
	sr := json.RawMessage(`{"uri":"file:///bin/true","environment":{"DB_PASSWORD":"hunter2","MODE":"x"}}`)
	sealed, err := Environment(sr, apub)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "hunter2") || !strings.Contains(string(sealed), Prefix) || !strings.Contains(string(sealed), `"uri":"file:///bin/true"`) {
		t.Fatalf("sealed %s", sealed)
	}
	env, err := OpenEnvironment(sealed, a)
	if err != nil || env["DB_PASSWORD"] != "hunter2" || env["MODE"] != "x" {
		t.Fatalf("opened %v %v", env, err)
	}
	if _, err := OpenEnvironment(sealed, b); !errors.Is(err, ErrSealed) {
		t.Fatalf("another key opened it: %v", err)
	}
	again, err := Reseal(sealed, a, bpub)
	if err != nil {
		t.Fatal(err)
	}
	if env, err := OpenEnvironment(again, b); err != nil || env["DB_PASSWORD"] != "hunter2" {
		t.Fatalf("resealed %v %v", env, err)
	}
	// sealing twice does not double-seal
	twice, _ := Environment(sealed, apub)
	if env, err := OpenEnvironment(twice, a); err != nil || env["DB_PASSWORD"] != "hunter2" {
		t.Fatalf("sealed twice %v %v", env, err)
	}
	for _, bad := range []string{Prefix + "nope", Prefix + apub + ":!!!", Prefix + apub + ":aGVsbG8="} {
		if _, err := Open(a, bad); !errors.Is(err, ErrSealed) {
			t.Errorf("Open(%q): %v", bad, err)
		}
	}
}
