package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexrun/nex/internal/testutil"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// TestHostileInput throws a corpus of broken and hostile input at the CLI and straight
// at the node's endpoints. Each must get a clear error (non-zero exit, or an error
// reply), nothing may panic, and the running workload and the node's state must be
// untouched afterwards.
func TestHostileInput(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	url := s.ClientURL()
	n := startNexd(t, u, url, filepath.Join(u.home, "data"))
	out := u.mustNex("-s", url, "--namespace", "default", "workload", "start", "--type", "native", "--lifecycle", "service",
		"--name", "keeper", "--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)
	_, keeper := startedID(t, out)
	before := u.workloads(t, url)

	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.txt")
	os.WriteFile(plain, []byte("x"), 0o644)
	noProgram := filepath.Join(dir, "no-program") // execute bits, no program: text without #!
	os.WriteFile(noProgram, []byte("hello\n"), 0o755)
	_ = os.Chmod(dir, 0o755) // the workload's own user reaches it
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	big := `{"uri":"file:///bin/true","stdin":"` + strings.Repeat("x", 10<<20) + `"}`
	bigFile := filepath.Join(dir, "big.json")
	os.WriteFile(bigFile, []byte(`{"name":"big","type":"native","lifecycle":"job","start_request":`+big+`}`), 0o644)

	type cliCase struct {
		name string
		args []string
		file string // Nexfile content, passed with -f
		want string // in stderr
	}
	base := func(sr string) []string {
		return []string{"--type", "native", "--lifecycle", "job", "--name", "x", "--start-request", sr}
	}
	var cases []cliCase
	// Nexfiles that do not parse or do not describe a workload.
	for i, nf := range []string{
		"name: [", "name: {", ": :", "- a\n- b", "\t- tab", "name: x\n  bad: indent", "{", `{"name":`, "[1,2]", "null",
		`"just a string"`, "name: 5\ntype: native\nlifecycle: job",
		"tags: [a, b]", "tags: {a: {b: c}}", "nmae: typo", "start_requst: {}", "name: x\nname: y", "!!binary aGk=", "\x00\x01",
		`{"name":"x","type":"native","lifecycle":"job","start_request":{"uri":"file:///bin/true"},"extra":1}`,
		"name: x\ntype: native\nlifecycle: job", "type: native\nlifecycle: job\nstart_request: {uri: 'file:///bin/true'}",
	} {
		cases = append(cases, cliCase{name: fmt.Sprintf("nexfile-%d", i), file: nf, want: "Nexfile"})
	}
	cases = append(cases, cliCase{name: "nexfile start_request not an object", file: "name: x\ntype: native\nlifecycle: job\nstart_request: [1]", want: "start_request"})
	// Names, namespaces, types and tags that would break a subject.
	for _, bad := range []string{"a.b", "a b", "*", ">", "a*", "a>b", "tab\tname", "nl\nname", strings.Repeat("n", 300), "nbsp\u00a0x"} {
		cases = append(cases,
			cliCase{name: "name " + bad, args: append(base(`{"uri":"file:///bin/true"}`), "--name", bad), want: "name"},
			cliCase{name: "namespace " + bad, args: append([]string{"--namespace", bad}, base(`{"uri":"file:///bin/true"}`)...), want: "namespace"},
			cliCase{name: "tag " + bad, args: append(base(`{"uri":"file:///bin/true"}`), "--tags", "k="+bad), want: "tag"},
		)
	}
	for _, bad := range []string{"wa.sm", "*", ""} {
		cases = append(cases, cliCase{name: "type " + bad, args: []string{"--type", bad, "--lifecycle", "job", "--name", "x", "--start-request", `{"uri":"file:///bin/true"}`}, want: "type"})
	}
	for _, bad := range []string{"daemon", "", "SERVICE"} {
		cases = append(cases, cliCase{name: "lifecycle " + bad, args: []string{"--type", "native", "--lifecycle", bad, "--name", "x", "--start-request", `{"uri":"file:///bin/true"}`}, want: "lifecycle"})
	}
	// Start requests with wrong types, unknown fields, bad values.
	for _, c := range []struct{ sr, want string }{
		{`{`, "JSON"}, {`[]`, "start_request"}, {`"x"`, "start_request"}, {`{}`, "uri"}, {`{"uri":5}`, "start_request.uri"},
		{`{"uri":"/bin/true"}`, "start_request.uri"}, {`{"uri":"bin/true"}`, "start_request.uri"}, {`{"uri":"file://relative/x"}`, "start_request.uri"},
		{`{"uri":"file:///does/not/exist"}`, "not an executable"}, {`{"uri":"file:///tmp"}`, "not an executable"},
		{`{"uri":"file://` + plain + `"}`, "not an executable"}, {`{"uri":"http://x/y"}`, "start_request.uri"},
		{`{"uri":"file://` + noProgram + `"}`, "exec format error (not a program this machine can run"},
		{`{"uri":"file:///bin/true","argv":"a b"}`, "start_request.argv"}, {`{"uri":"file:///bin/true","argv":[1]}`, "start_request.argv.0"},
		{`{"uri":"file:///bin/true","environment":["A=b"]}`, "start_request.environment"}, {`{"uri":"file:///bin/true","environment":{"A":1}}`, "start_request.environment.A"},
		{`{"uri":"file:///bin/true","workdir":"relative"}`, "workdir"}, {`{"uri":"file:///bin/true","workdir":"/does/not/exist"}`, "workdir"},
		{`{"uri":"file:///bin/true","stdin":5}`, "start_request.stdin"}, {`{"uri":"file:///bin/true","expose_ports":[0]}`, "expose_ports.0"},
		{`{"uri":"file:///bin/true","expose_ports":[70000]}`, "expose_ports.0"}, {`{"uri":"file:///bin/true","expose_ports":[-1]}`, "expose_ports.0"},
		{`{"uri":"file:///bin/true","expose_ports":["80"]}`, "expose_ports.0"},
		{`{"uri":"file:///bin/true","artifacts":[{"uri":"file:///etc/hostname","sha256":"abc"}]}`, "sha256"},
		{`{"uri":"file:///bin/true","artifacts":[{"uri":"file:///etc/hostname","sha256":"` + strings.Repeat("0", 64) + `"}]}`, "sha256 mismatch"},
		{`{"uri":"file:///bin/true","artifacts":[{"uri":"ftp://x/y"}]}`, "artifacts.0.uri"},
		{`{"uri":"file:///bin/true","artifacts":[{"uri":"file:///etc/hostname","path":"../../escape"}]}`, "inside the workdir"},
		{`{"uri":"file:///bin/true","artifacts":[{"uri":"file:///etc/hostname","mode":"999"}]}`, "mode"},
		{`{"uri":"file:///bin/true","grace_period":"soon"}`, "grace_period"}, {`{"uri":"file:///bin/true","timeout":"-5s"}`, "timeout"},
		{`{"uri":"file:///bin/true","retries":-1}`, "retries"}, {`{"uri":"file:///bin/true","bogus":true}`, "bogus"},
		{`{"uri":"file:///bin/true","triggers":["x"]}`, "does not apply"}, {`{"uri":"file:///bin/true","restart":{"max_restarts":2}}`, "max_restarts"},
		{`{"uri":"nats://no-such-bucket/x"}`, "object store"}, {`{"uri":"nats://"}`, "uri"},
	} {
		cases = append(cases, cliCase{name: "start_request " + c.sr, args: base(c.sr), want: c.want})
	}
	cases = append(cases,
		cliCase{name: "10 MB start request", args: []string{"-f", bigFile}, want: "limit"},
		cliCase{name: "function without triggers", args: []string{"--type", "native", "--lifecycle", "function", "--name", "f", "--start-request", `{"uri":"file:///bin/cat"}`}, want: "trigger"},
		cliCase{name: "function with a $NEX trigger", args: []string{"--type", "native", "--lifecycle", "function", "--name", "f", "--start-request", `{"uri":"file:///bin/cat","triggers":["$NEX.SVC.v1.default.control.LIST"]}`}, want: "reserved"},
		cliCase{name: "function with a malformed trigger", args: []string{"--type", "native", "--lifecycle", "function", "--name", "f", "--start-request", `{"uri":"file:///bin/cat","triggers":["a..b"]}`}, want: "trigger"},
		cliCase{name: "missing Nexfile", args: []string{"-f", filepath.Join(dir, "nope.yaml")}, want: "nope.yaml"},
		cliCase{name: "Nexfile is a directory", args: []string{"-f", dir}, want: "nexfile"},
	)
	ran := 0
	for _, c := range cases {
		args := []string{"-s", url, "--namespace", "default", "workload", "start"}
		if c.file != "" {
			f := filepath.Join(dir, fmt.Sprintf("Nexfile-%d", ran))
			os.WriteFile(f, []byte(c.file), 0o644)
			args = append(args, "-f", f)
		}
		// a --namespace in the case's own args comes before the command
		if len(c.args) > 1 && c.args[0] == "--namespace" {
			args = append([]string{"-s", url, "--namespace", c.args[1], "workload", "start"}, c.args[2:]...)
		} else {
			args = append(args, c.args...)
		}
		_, errOut, code := u.nex(args...)
		ran++
		if code == 0 {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if strings.Contains(errOut, "panic") || !strings.Contains(strings.ToLower(errOut), strings.ToLower(c.want)) {
			t.Errorf("%s: error does not name %q: %s", c.name, c.want, strings.TrimSpace(errOut))
		}
	}

	// The other commands, given what is not there.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"workload", "trigger", "default.nobody", "x"}, "no function is listening on it"},
		{[]string{"workload", "trigger", "default.>", "x"}, "trigger"},
		{[]string{"workload", "logs", "NoSuchWorkload"}, "workload NoSuchWorkload not found"},
		{[]string{"workload", "logs", "NoSuchWorkload", "-f"}, "workload NoSuchWorkload not found"},
		{[]string{"workload", "info", "NoSuchWorkload"}, "not found"},
		{[]string{"workload", "stop", "NoSuchWorkload"}, "not found"},
		{[]string{"workload", "clone", "NoSuchWorkload"}, "not found"},
		{[]string{"workload", "stop", "a.b"}, "workload"},
		{[]string{"node", "info", "NOSUCHNODE"}, "NOSUCHNODE"},
		{[]string{"secret", "rm", "nosuch"}, "secret"},
	} {
		_, errOut, code := u.nex(append([]string{"-s", url, "--namespace", "default"}, c.args...)...)
		ran++
		if code == 0 || strings.Contains(errOut, "panic") || !strings.Contains(errOut, c.want) {
			t.Errorf("nex %s: exit %d, error does not name %q: %s", strings.Join(c.args, " "), code, c.want, strings.TrimSpace(errOut))
		}
	}

	// Straight at the node: malformed bodies, forged registrations, replayed bids.
	nc := testutil.Connect(t, s)
	raw := func(subject string, body []byte) (*nats.Msg, error) { return nc.Request(subject, body, 3*time.Second) }
	nodeID := before[0].NodeID
	var bid v1.AuctionReply
	m, err := raw(v1.ControlSubject("default", v1.VerbAuction), []byte(`{"type":"native","lifecycle":"job"}`))
	if err != nil || json.Unmarshal(m.Data, &bid) != nil || bid.Bid == nil {
		t.Fatalf("auction: %v", err)
	}
	okDeploy := []byte(`{"workload":{"name":"once","type":"native","lifecycle":"job","start_request":{"uri":"file:///bin/true"}}}`)
	if m, err := raw(v1.ControlSubject("default", v1.VerbDeploy, bid.Bid.BidID), okDeploy); err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
		t.Fatalf("first use of a bid failed: %v %v", err, m)
	}
	rawCases := []struct {
		name, subject string
		body          []byte
		want          string // error code
	}{
		{"replayed bid", v1.ControlSubject("default", v1.VerbDeploy, bid.Bid.BidID), okDeploy, "410"},
		{"auction: not JSON", v1.ControlSubject("default", v1.VerbAuction), []byte("{"), "400"},
		{"auction: bad tag", v1.ControlSubject("default", v1.VerbAuction), []byte(`{"type":"native","lifecycle":"job","tags":{"a":"b c"}}`), "400"},
		{"auction: bad lifecycle", v1.ControlSubject("default", v1.VerbAuction), []byte(`{"type":"native","lifecycle":"forever"}`), "400"},
		{"auction: bad port", v1.ControlSubject("default", v1.VerbAuction), []byte(`{"type":"native","lifecycle":"job","ports":[99999]}`), "400"},
		{"list: not JSON", v1.ControlSubject("default", v1.VerbList), []byte("]"), "400"},
		{"list: bad type", v1.ControlSubject("default", v1.VerbList), []byte(`{"type":"a.b"}`), "400"},
		{"stop: not JSON", v1.ControlSubject("default", v1.VerbStop, keeper), []byte("{"), "400"},
		{"stop: bad grace", v1.ControlSubject("default", v1.VerbStop, keeper), []byte(`{"grace_period":"soon"}`), "400"},
		{"lameduck: negative", v1.SystemSubject(v1.VerbLameduck, nodeID), []byte(`{"delay":"-5s"}`), "400"},
		{"register: no schema", v1.RegisterSubject(nodeID), []byte(`{"nexlet_id":"evil","register_type":"native","supported_lifecycles":["job"]}`), "400"},
		{"register: bad schema", v1.RegisterSubject(nodeID), []byte(`{"nexlet_id":"evil","register_type":"native","supported_lifecycles":["job"],"start_request_schema":{"type":12}}`), "400"},
		{"register: bad id", v1.RegisterSubject(nodeID), []byte(`{"nexlet_id":"a.b","register_type":"native","supported_lifecycles":["job"],"start_request_schema":{}}`), "400"},
		{"register: bad lifecycle", v1.RegisterSubject(nodeID), []byte(`{"nexlet_id":"evil","register_type":"native","supported_lifecycles":["forever"],"start_request_schema":{}}`), "400"},
		{"register: other machine", v1.RegisterSubject(nodeID), []byte(`{"nexlet_id":"evil","register_type":"native","supported_lifecycles":["job"],"start_request_schema":{},"host_id":"elsewhere"}`), "403"},
		{"heartbeat: unknown nexlet", v1.HeartbeatSubject(nodeID, "ghost"), []byte(`{}`), "404"},
	}
	for _, c := range rawCases {
		m, err := raw(c.subject, c.body)
		if err != nil {
			t.Errorf("%s: no reply: %v", c.name, err)
			continue
		}
		var e v1.Error
		if got := m.Header.Get("Nats-Service-Error-Code"); got != c.want || json.Unmarshal(m.Data, &e) != nil || e.Message == "" {
			t.Errorf("%s: reply %s %q, want code %s with a message", c.name, m.Header.Get("Nats-Service-Error-Code"), m.Data, c.want)
		}
		ran++
	}
	t.Logf("%d hostile inputs, each refused with a clear error", ran)
	if ran < 100 {
		t.Fatalf("only %d cases in the corpus", ran)
	}

	// Nothing already running was lost, and the node is well.
	after := u.workloads(t, url)
	var still *v1.WorkloadInfo
	for i := range after {
		if after[i].ID == keeper {
			still = &after[i]
		}
	}
	if still == nil || still.State != v1.StateRunning || still.Metadata["pid"] != before[0].Metadata["pid"] {
		t.Fatalf("the running workload was disturbed: before %+v, after %+v", before[0], still)
	}
	info := u.mustNex("-s", url, "node", "info", nodeID, "--json")
	var ni v1.NodeInfo
	if json.Unmarshal([]byte(info), &ni) != nil || len(ni.Nexlets) != 1 || ni.Nexlets[0].NexletID != "native" {
		t.Fatalf("the node's nexlets changed: %s", info)
	}
	if strings.Contains(n.bg.out.String(), "panic") {
		t.Fatalf("nexd panicked:\n%s", n.bg.out.String())
	}
}

// TestNexdRefusesBadFlags: nexd given a bad flag exits at once, non-zero, naming it.
func TestNexdRefusesBadFlags(t *testing.T) {
	s := testutil.StartServer(t)
	u := newUser(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--tags", "nex.os=x"}, "reserved: nex.os"},
		{[]string{"--tags", "a"}, "--tags"},
		{[]string{"--tags", "region=a.b"}, "region"},
		{[]string{"--node-name", "a b"}, "name"},
		{[]string{"--node-seed", "SNOTASEED"}, "--node-seed: a seed on the command line"},
		{[]string{"--secrets-key=SXAFOO"}, "$NEX_SECRETS_KEY"},
		{[]string{"--state", "bogus"}, "--state"},
		{[]string{"--issuer-nkey", "AFOO"}, "--issuer-nkey-seed"},
		{[]string{"--issuer-signing-key", "/nonexistent/key"}, "--issuer-signing-key"},
		{[]string{"--issuer-signing-key", "SAFOO"}, "--issuer-signing-key: a seed on the command line"},
		{[]string{"--secrets-key", "/nonexistent/key"}, "--secrets-key"},
		{[]string{"--nexlet-native-path", "/nonexistent/nexlet"}, "--nexlet-native-path"},
		{[]string{"--metrics.listen", "nonsense"}, "--metrics.listen"},
		{[]string{"--config", "/nonexistent/config.json"}, "/nonexistent/config.json"},
	}
	for i, c := range cases {
		args := append([]string{"-s", s.ClientURL(), "--data-dir", filepath.Join(u.home, fmt.Sprintf("d%d", i))}, c.args...)
		cmd := u.cmd("nexd", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		done := make(chan []byte, 1)
		go func() { out, _ := cmd.CombinedOutput(); done <- out }()
		select {
		case out := <-done:
			if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), c.want) || strings.Contains(string(out), "panic") {
				t.Errorf("nexd %s: exit %d, output does not name %q:\n%s", strings.Join(c.args, " "), cmd.ProcessState.ExitCode(), c.want, out)
			}
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Errorf("nexd %s: still running after 20 s", strings.Join(c.args, " "))
		}
	}
}
