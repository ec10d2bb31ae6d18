package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nexrun/nex/pkg/runtime/native/uids"
)

// TestInstallAndUnits runs `make install` into a scratch DESTDIR and checks the units
// with systemd-analyze verify where it exists.
func TestInstallAndUnits(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dest := t.TempDir()
	cmd := exec.Command("make", "install", "DESTDIR="+dest, "PREFIX=/opt/nex")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"opt/nex/bin/nex", "opt/nex/bin/nexd", "opt/nex/bin/nexlet-native",
		"etc/systemd/system/nexd.service", "etc/systemd/system/nexlet-native@.service", "etc/nex/config.json"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install did not put %s in place: %v", f, err)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/nexd.service"))
	if !strings.Contains(string(unit), "ExecStart=/opt/nex/bin/nexd ") {
		t.Errorf("installed unit does not point at PREFIX:\n%s", unit)
	}

	// the units keep what running workloads as users of their own, in sandboxes of their
	// own, needs, and no more
	for _, u := range []string{"nexd.service", "nexlet-native@.service"} {
		b, _ := os.ReadFile(filepath.Join("..", "deploy", "systemd", u))
		var bounding []string
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
				bounding = strings.Fields(v)
			}
		}
		needed := append(uids.RequiredCapabilities[:len(uids.RequiredCapabilities):len(uids.RequiredCapabilities)], uids.SandboxCapabilities...)
		for _, c := range needed {
			if !slices.Contains(bounding, c.Name) {
				t.Errorf("%s: CapabilityBoundingSet lacks %s", u, c.Name)
			}
		}
		if len(bounding) != len(needed) {
			t.Errorf("%s: CapabilityBoundingSet=%v, want exactly what workload users need", u, bounding)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not present: units not verified")
	}
	// verify needs the ExecStart binaries to exist: point the units at the built ones.
	dir := t.TempDir()
	for _, u := range []string{"nexd.service", "nexlet-native@.service"} {
		b, err := os.ReadFile(filepath.Join("..", "deploy", "systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/", binDir+"/")
		if err := os.WriteFile(filepath.Join(dir, u), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inst := filepath.Join(dir, "nexlet-native@NTEST.service")
	if err := os.Symlink(filepath.Join(dir, "nexlet-native@.service"), inst); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "nexd.service"), inst).CombinedOutput()
	// Complaints about the machine (no running systemd, users that do not exist here) are
	// not about the units; anything mentioning our files is.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) && !strings.Contains(line, "Failed to resolve user") && !strings.Contains(line, "Failed to resolve group") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	if err != nil {
		t.Logf("systemd-analyze exit: %v\n%s", err, out)
	}
}
