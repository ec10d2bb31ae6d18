// Package hostid names the machine a process runs on, so a node can tell its local
// nexlets from remote ones.
package hostid

import (
	"os"
	"strings"
)

// Get returns /etc/machine-id (or /var/lib/dbus/machine-id), else the host name.
func Get() string {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(p); err == nil {
			if id := strings.TrimSpace(string(b)); id != "" {
				return id
			}
		}
	}
	h, _ := os.Hostname()
	return h
}
