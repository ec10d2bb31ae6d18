package uids

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// RequiredCapabilities are what running workloads as users of their own needs: switch to
// the UID (SETUID, SETGID), give it its files (CHOWN), end its processes (KILL), remove
// what it leaves (DAC_OVERRIDE, FOWNER: its files in the sticky /tmp). The bit is the
// capability's number (capability.h).
var RequiredCapabilities = []struct {
	Bit  uint
	Name string
}{{0, "CAP_CHOWN"}, {1, "CAP_DAC_OVERRIDE"}, {3, "CAP_FOWNER"}, {5, "CAP_KILL"}, {6, "CAP_SETGID"}, {7, "CAP_SETUID"}}

// SandboxCapabilities are what the sandbox of each workload needs besides: its mount and
// IPC namespaces and its mounts (spawn.Spec.Sandbox). Without them workloads run unsandboxed, and
// the node says so (nex.sandbox=none).
var SandboxCapabilities = []struct {
	Bit  uint
	Name string
}{{21, "CAP_SYS_ADMIN"}}

// CanSwitchUsers says whether this process can run workloads as other users, and if not,
// why: it must be root with the RequiredCapabilities (a root whose capabilities a
// systemd unit bounds keeps these).
func CanSwitchUsers() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("nexlet-native runs as UID %d, not root", os.Geteuid())
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return fmt.Errorf("read capabilities: %w", err)
		}
		for _, c := range RequiredCapabilities {
			if eff&(1<<c.Bit) == 0 {
				return fmt.Errorf("nexlet-native lacks %s", c.Name)
			}
		}
		return nil
	}
	return errors.New("no CapEff line in /proc/self/status")
}
