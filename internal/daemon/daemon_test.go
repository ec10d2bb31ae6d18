package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nexrun/nex/internal/nodeflags"

	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nexrun/nex/internal/testutil"
	"github.com/nexrun/nex/pkg/natsconn"
	"github.com/nexrun/nex/pkg/node"
)

// With --disable-native-start, the credentials of the --agents nexlets are renewed all the
// same: they would expire otherwise.
func TestAgentCredentialsRenewedWithoutNative(t *testing.T) {
	acc, _ := nkeys.CreateAccount()
	pub, _ := acc.PublicKey()
	seed, _ := acc.Seed()
	dir := t.TempDir()
	o := Options{
		Embedded: true, EmbeddedListen: "127.0.0.1:-1", DataDir: dir, NodeName: "renew",
		DisableNativeStart: true, State: "memory", LogsHistory: false,
		Nexlets:    nodeflags.Nexlets{{Name: "other", URI: "file:///bin/sleep", Argv: []string{"3600"}}},
		IssuerNKey: pub, IssuerNKeySeed: string(seed),
		NexletCredsTTL: 1500 * time.Millisecond, WorkloadCredsTTL: time.Hour,
		NexletRestartLimit: 3, NexletWait: time.Second, ShutdownTimeout: 10 * time.Second, LogLevel: "info",
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, o, natsconn.Options{}, zap.NewNop(), func(*node.Node, string) { close(ready) }, nil)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		done <- nil // for the deferred wait
		t.Fatalf("Run ended before the node was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not become ready")
	}
	path := filepath.Join(dir, "other.creds")
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the agent got no credentials file: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the agent's credentials to be renewed", func() bool {
		now, err := os.ReadFile(path)
		return err == nil && len(now) > 0 && !bytes.Equal(now, first)
	})
}

// A nexlet-native that fails at every start is given up, and nexd says so at once, not
// after --nexlet-wait, and not as "will accept it when it does": nothing will register.
func TestNativeGivenUpIsSaid(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	o := Options{
		Embedded: true, EmbeddedListen: "127.0.0.1:-1", DataDir: t.TempDir(), NodeName: "fails",
		State: "memory", LogsHistory: false, NexletNativePath: "/bin/false", WorkloadUIDs: "none",
		NexletRestartLimit: 1, NexletWait: time.Minute, ShutdownTimeout: 10 * time.Second, LogLevel: "info",
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, o, natsconn.Options{}, zap.New(core), func(*node.Node, string) { close(ready) }, nil)
	}()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-ready:
	case err := <-done:
		done <- nil // for the deferred wait
		t.Fatalf("Run ended before the node was ready: %v", err)
	case <-time.After(30 * time.Second): // well before --nexlet-wait
		t.Fatal("the node did not become ready")
	}
	if n := logs.FilterMessageSnippet("nexlet-native failed at every start and was given up").Len(); n != 1 {
		t.Errorf("nexd said it gave nexlet-native up %d times, want once", n)
	}
	if n := logs.FilterMessageSnippet("will accept it when it does").Len(); n != 0 {
		t.Errorf("nexd said it would accept a nexlet-native it gave up")
	}
}
