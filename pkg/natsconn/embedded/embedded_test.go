package embedded

import (
	"testing"

	"github.com/nexrun/nex/pkg/natsconn"
)

func TestEmbeddedConnect(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	s, err := Start(Options{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	nc, err := natsconn.Options{Servers: []string{s.ClientURL()}}.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream is off")
	}
}
