package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/nexlet"
	"github.com/nexrun/nex/pkg/nexlet/memory"
	"github.com/nexrun/nex/pkg/node"
)

func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	out, _, code := runNex(t, "completion", "bash")
	if code != 0 {
		t.Fatal("completion bash failed")
	}
	script := filepath.Join(t.TempDir(), "nex.bash")
	os.WriteFile(script, []byte(out), 0o644)
	tests := []struct {
		words string
		cword int
		want  []string
	}{
		{"nex workload st", 2, []string{"start", "stop"}},
		{"nex w stop --gr", 3, []string{"--grace"}},
		{"nex node ", 2, []string{"up", "list", "ls", "info", "lameduck"}},
		{"nex completion ", 2, nil},
	}
	for _, tt := range tests {
		words := strings.Fields(tt.words)
		if strings.HasSuffix(tt.words, " ") {
			words = append(words, "")
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		cmd := exec.Command(bash, "-c", "source "+script+"; COMP_WORDS=("+strings.Join(quoted, " ")+"); COMP_CWORD="+
			itoa(tt.cword)+"; _nex; echo \"${COMPREPLY[@]}\"")
		cmd.Env = append(os.Environ(), "PATH=/nonexistent") // no live nex to ask
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("%q: %v", tt.words, err)
		}
		have := map[string]bool{}
		for _, f := range strings.Fields(string(got)) {
			have[f] = true
		}
		for _, w := range tt.want {
			if !have[w] {
				t.Errorf("%q completes to %q, missing %q", tt.words, strings.TrimSpace(string(got)), w)
			}
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestCompleteLiveIDs(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	s := testutil.StartServer(t)
	nc := testutil.Connect(t, s)
	kp, _ := nkeys.CreateServer()
	id, _ := kp.PublicKey()
	n, err := node.New(nc, node.Config{NodeID: id})
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	defer n.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_ = nexlet.Serve(ctx, nc, nexlet.Config{NodeID: id, NexletID: "mem", RegisterType: "memory", Lifecycles: []string{"job"}, StartRequestSchema: []byte(memory.Schema)}, memory.New("mem", nil))
		close(done)
	}()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := n.WaitForNexlet(wctx, "memory"); err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(nc, "default")
	w, err := c.StartWorkload(ctx, v1.WorkloadDefinition{Name: "x", Type: "memory", Lifecycle: "job", StartRequest: json.RawMessage(`{"value":"v"}`)})
	if err != nil {
		t.Fatal(err)
	}
	out, _, _ := runNex(t, "-s", s.ClientURL(), "--namespace", "default", "__complete", "workloads")
	if strings.TrimSpace(out) != w.ID {
		t.Fatalf("workload completion %q, want %s", out, w.ID)
	}
	out, _, _ = runNex(t, "-s", s.ClientURL(), "__complete", "nodes")
	if strings.TrimSpace(out) != id {
		t.Fatalf("node completion %q, want %s", out, id)
	}
	// no server: nothing, quickly, and no error output
	begin := time.Now()
	out, errs, _ := runNex(t, "-s", "nats://127.0.0.1:1", "__complete", "workloads")
	if out != "" || errs != "" || time.Since(begin) > 3*time.Second {
		t.Fatalf("completion without a server: %q %q after %s", out, errs, time.Since(begin))
	}
}
