// Package ports answers whether a TCP port is free on this host.
package ports

import (
	"net"
	"strconv"
)

// Free reports whether a TCP port can be listened on, on every interface.
func Free(port int) bool {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
