package proc_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/nexrun/nex/internal/proc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// A process is taken for a node's nexlet only when nexd's tags are whole entries of its
// environment and it runs the nexlet's executable: a registration naming any other PID
// (a forged one, a reused one) names no nexlet.
func TestIsNexlet(t *testing.T) {
	start := func(env ...string) int {
		cmd := exec.Command("/bin/sleep", "60")
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd.Process.Pid
	}
	tagged := start(v1.EnvNodeID+"=N1", v1.EnvNexletID+"=native")
	suffix := start("X"+v1.EnvNodeID+"=N1", v1.EnvNexletID+"=native")
	other := start(v1.EnvNodeID+"=N2", v1.EnvNexletID+"=native")
	for _, c := range []struct {
		name string
		pid  int
		exe  string
		want bool
	}{
		{"tagged, its executable", tagged, "/bin/sleep", true},
		{"tagged, no executable asked", tagged, "", true},
		{"tagged, another executable", tagged, "/bin/true", false},
		{"a tag only as the end of another variable", suffix, "/bin/sleep", false},
		{"another node's", other, "/bin/sleep", false},
		{"untagged (this test)", os.Getpid(), "", false},
		{"PID 1", 1, "", false},
		{"no such process", 1 << 30, "", false},
	} {
		if got := proc.IsNexlet(c.pid, "N1", "native", c.exe); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
