package asuser

import (
	"context"
	"net"
)

// Dial connects to addr, an IP address and port (no name: one address, so no goroutine
// dials for it), through a socket that id's user made: its file's credentials, which a
// firewall's owner match and /proc/net/tcp read, are that user's, so what the nexlet
// connects to for a workload (an artifact's server, its health check's port) is only
// what the workload's own processes may reach. A nil id dials as the nexlet.
func Dial(ctx context.Context, id *Identity, d *net.Dialer, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := Do(id, func() (err error) {
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}
