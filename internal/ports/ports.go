// Package ports answers whether a TCP port is free on this host.
package ports

import (
	"net"
	"strconv"
)

// Probe tells whether a port can be listened on; tests replace it to see where it is
// called from (it binds a socket: never call it under a lock a request path needs).
var Probe = listenable

func listenable(port int) bool {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// InUse returns the ports of want that cannot be listened on.
func InUse(want []int) map[int]bool {
	if len(want) == 0 {
		return nil // most workloads expose none: nothing to probe, nothing to allocate
	}
	in := map[int]bool{}
	for _, p := range want {
		if !Probe(p) {
			in[p] = true
		}
	}
	return in
}
