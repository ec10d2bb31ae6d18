package natsconn

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveContext(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	ctxDir := filepath.Join(dir, "nats", "context")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "nex-dev.json"), []byte(`{"url":"nats://a:4222","user":"u","password":"p","inbox_prefix":"_INBOX_u"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Options{Context: "nex-dev"}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if r.URL() != "nats://a:4222" || r.User != "u" || r.Password != "p" || r.InboxPrefix != "_INBOX_u" {
		t.Fatalf("resolved %+v", r)
	}
	// flags win over the context
	r, err = Options{Context: "nex-dev", Servers: []string{"nats://b:1"}, User: "x"}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if r.URL() != "nats://b:1" || r.User != "x" {
		t.Fatalf("flags did not win: %+v", r)
	}
	// selected context is used when nothing is named
	if err := os.WriteFile(filepath.Join(dir, "nats", "context.txt"), []byte("nex-dev\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = Options{}.Resolve()
	if err != nil || r.Context != "nex-dev" {
		t.Fatalf("selected context not used: %+v %v", r, err)
	}
	if _, err := (Options{Context: "nope"}).Resolve(); !errors.Is(err, ErrContextNotFound) {
		t.Fatalf("want ErrContextNotFound, got %v", err)
	}
	if _, err := (Options{Context: "../etc"}).Resolve(); !errors.Is(err, ErrContextNotFound) {
		t.Fatalf("want ErrContextNotFound for traversal, got %v", err)
	}
}
