// Package embedded runs a nats-server inside nexd (--embedded). It is a package of its
// own so that what only connects to NATS (nexlet-native, nex) does not link the server:
// its initialisation alone cost nexlet-native megabytes of resident memory.
package embedded

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is where --embedded listens unless told otherwise.
const DefaultListen = "127.0.0.1:4222"

// Options configure the embedded nats-server.
type Options struct {
	Listen     string // host:port; port -1 picks a free one
	StoreDir   string // JetStream store
	ConfigFile string // a nats-server configuration file; when set, Listen is ignored
}

// Start starts a nats-server in this process with JetStream on and waits until it
// accepts connections.
func Start(eo Options) (*server.Server, error) {
	var opts *server.Options
	if eo.ConfigFile != "" {
		o, err := server.ProcessConfigFile(eo.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("load nats-server config %s: %w", eo.ConfigFile, err)
		}
		opts = o
	} else {
		listen := eo.Listen
		if listen == "" {
			listen = DefaultListen
		}
		host, portStr, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("embedded listen address %q: %w", listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("embedded listen port %q: %w", portStr, err)
		}
		opts = &server.Options{Host: host, Port: port}
		if port > 0 {
			// fail at once, and say why, rather than after waiting for readiness
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return nil, fmt.Errorf("embedded nats-server cannot listen on %s (another NATS server or node running? pick one with --embedded.listen): %w", listen, err)
			}
			_ = l.Close()
		}
	}
	if opts.ServerName == "" {
		opts.ServerName = "nexd-embedded"
	}
	opts.JetStream = true
	if opts.StoreDir == "" {
		opts.StoreDir = eo.StoreDir
	}
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("create embedded nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s:%d did not become ready (is the port taken?)", opts.Host, opts.Port)
	}
	return s, nil
}
