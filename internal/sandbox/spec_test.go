package sandbox_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nexrun/nex/internal/sandbox"
	"github.com/nexrun/nex/internal/testutil"
)

// awkward are strings a workload's argv and environment may hold: what the spec's
// framing uses, separators, empty ones, non-ASCII.
var awkward = []string{"", ",", ":", "3:abc,", "a b\tc\nd", "K=V=W", "ünïcødé", "%20", strings.Repeat("x", 70000)}

func TestSpecRoundTrip(t *testing.T) {
	s := sandbox.Spec{UID: 300200, GID: 4294967294, Path: "/bin/sh", Argv: append([]string{"sh"}, awkward...), Dir: "/tmp/w", Env: awkward, TmpSize: 1 << 40, Ready: true}
	got, err := sandbox.Decode(s.Encode())
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	p := sandbox.Spec{Probe: true, Dir: "/"}
	if got, err := sandbox.Decode(p.Encode()); err != nil || !got.Probe || got.Dir != "/" || len(got.Argv) != 0 {
		t.Fatalf("probe decoded %+v, %v", got, err)
	}
}

// A spec longer than one environment string may be (128 KiB) spans several.
func TestSpecSpansEnvironmentStrings(t *testing.T) {
	argv := []string{"sh"}
	for range 300 {
		argv = append(argv, strings.Repeat("a", 1000))
	}
	s := sandbox.Spec{UID: 1, GID: 1, Path: "/bin/sh", Argv: argv, Dir: "/"}
	env := s.Environ()
	joined := ""
	for i, e := range env {
		name, v, _ := strings.Cut(e, "=")
		want := sandbox.Env
		if i > 0 {
			want += "_" + strconv.Itoa(i)
		}
		if name != want || len(e) >= 128<<10 {
			t.Fatalf("part %d: %s, %d bytes", i, name, len(e))
		}
		joined += v
	}
	if len(env) != 3 || joined != s.Encode() {
		t.Fatalf("%d parts, joined equal: %v", len(env), joined == s.Encode())
	}
}

// badSpecs are specs neither helper may act on, each with what the refusal names.
func badSpecs() map[string]string {
	good := sandbox.Spec{UID: 1000, GID: 1000, Path: "/bin/true", Argv: []string{"true"}, Dir: "/"}.Encode()
	return map[string]string{
		"":                                      "version",
		"not a spec":                            "version",
		"13:nex-sandbox/2,":                     "version nex-sandbox/2",
		good[:len(good)-1]:                      "env",
		good + "0:,":                            "after its end",
		strings.Replace(good, "0:,", "1:x,", 1): "flag x",
		strings.Replace(good, "4:1000,", "10:4294967295,", 1):          "uid",
		strings.Replace(good, "4:1000,", "2:-1,", 1):                   "uid",
		strings.Replace(good, "9:/bin/true,", "4:true,", 1):            "absolute",
		strings.Replace(good, "1:1,4:true,", "9:999999999,4:true,", 1): "argv",
		strings.Replace(good, "1:/,", "99999999999999999999:/,", 1):    "workdir",
	}
}

func TestDecodeRefusesBadSpecs(t *testing.T) {
	for raw, want := range badSpecs() {
		if _, err := sandbox.Decode(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%.40q) = %v, want an error naming %q", raw, err, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sandbox.Spec{UID: 1, GID: 2, Path: "/x", Argv: []string{"x", ""}, Dir: "/", Env: []string{"A=B"}, Ready: true}.Encode())
	for raw := range badSpecs() {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := sandbox.Decode(raw)
		if err != nil {
			return
		}
		again, err := sandbox.Decode(s.Encode())
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("%q decoded to %+v, which encodes to what decodes to %+v, %v", raw, s, again, err)
		}
	})
}

// nexSandbox builds the C helper for a test, or skips where there is no C compiler
// (outside CI: build-sandbox.sh fails there).
func nexSandbox(t *testing.T) string {
	dir := t.TempDir()
	if err := testutil.BuildSandboxHelper("../..", dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, sandbox.Arg)
	if _, err := os.Stat(p); err != nil {
		t.Skip("no C compiler: nex-sandbox not built")
	}
	return p
}

// The C helper refuses what Decode refuses, before it mounts anything, and says so as the
// Go helper does; started otherwise than by the nexlet it says what it is for.
func TestNexSandboxRefusesBadSpecs(t *testing.T) {
	exe := nexSandbox(t)
	for raw, want := range badSpecs() {
		if raw == "" {
			continue // no spec at all: below
		}
		cmd := exec.Command(exe)
		cmd.Args, cmd.Env = []string{sandbox.Arg}, []string{sandbox.Env + "=" + raw}
		if os.Geteuid() == 0 { // were a bad spec taken, its mounts stay off the host's
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: sandbox.Flags}
		}
		out, err := cmd.CombinedOutput()
		if code := exitCode(err); code != 127 || !strings.HasPrefix(string(out), "nex sandbox: bad spec") || !strings.Contains(string(out), want) {
			t.Errorf("spec %.40q: exit %d, %q; want 127 and a bad spec naming %q", raw, code, out, want)
		}
	}
	for _, c := range []struct{ arg0, env string }{{sandbox.Arg, ""}, {"other", sandbox.Env + "=x"}} {
		cmd := exec.Command(exe)
		cmd.Args, cmd.Env = []string{c.arg0}, []string{c.env}
		out, err := cmd.CombinedOutput()
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), "started by nexlet-native only") {
			t.Errorf("argv[0] %s, env %q: exit %d, %q", c.arg0, c.env, code, out)
		}
	}
}

// What the nexlet encodes reaches the workload byte for byte through the C helper, as it
// does through the Go one: argv and environment with the spec's own framing in them.
func TestNexSandboxPassesArgvAndEnv(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the helper mounts: root only")
	}
	exe := nexSandbox(t)
	script := `for a in "$@"; do printf '[%s]' "$a"; done; printf '|'; printf '%s' "$K1"; printf '|'; printf '%s' "$K2"`
	s := sandbox.Spec{UID: 65534, GID: 65534, Path: "/bin/sh", Argv: append([]string{"sh", "-c", script, "sh"}, awkward[:8]...), Dir: "/",
		Env: []string{"K1=" + awkward[4], "K2=3:abc,"}}
	want := ""
	for _, a := range awkward[:8] {
		want += "[" + a + "]"
	}
	want += "|" + awkward[4] + "|3:abc,"
	for _, pidns := range []bool{true, false} { // the init starts it, or the helper becomes it
		cmd := exec.Command(exe)
		cmd.Args, cmd.Env = []string{sandbox.Arg}, s.Environ()
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: sandbox.Flags}
		if !pidns {
			cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNS
		}
		out, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok && strings.Contains(string(ee.Stderr), "operation not permitted") {
				t.Skipf("this machine refuses the namespaces: %s", ee.Stderr)
			}
			t.Fatalf("PID namespace %v: %v %s", pidns, err, out)
		}
		if string(out) != want {
			t.Errorf("PID namespace %v: the workload got\n%q\nwant\n%q", pidns, out, want)
		}
	}
	// an exec that fails names the program and the error
	s.Path = "/nonexistent/prog"
	cmd := exec.Command(exe)
	cmd.Args, cmd.Env = []string{sandbox.Arg}, s.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: sandbox.Flags}
	out, err := cmd.CombinedOutput()
	if code := exitCode(err); code != 127 || string(out) != "nex sandbox: exec /nonexistent/prog: no such file or directory\n" {
		t.Errorf("exec of a missing program: exit %d, %q", code, out)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
