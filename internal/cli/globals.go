// Package cli holds what the nex CLI's commands share: the global flags (Globals) and
// the NATS connection they make, the output helpers (tables, JSON, the list flags) and
// the resolution of what a user typed for a workload or a node into a whole ID. The
// commands themselves live in the packages below (workload, node, security) and in
// cmd/nex, which builds the kong tree from them.
package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kong"
	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/client"
	"github.com/nexrun/nex/pkg/natsconn"
)

// Globals are the flags every command takes.
type Globals struct {
	Namespace string           `name:"namespace" default:"system" env:"NEX_NAMESPACE" help:"Namespace to work in."`
	Config    string           `name:"config" type:"path" help:"Config file (default: first of /etc/nex/config.json, ~/.config/nex/config.json, ./config.json)."`
	JSON      bool             `name:"json" help:"Machine-readable JSON output."`
	Check     bool             `name:"check" help:"Print the resolved configuration and exit (for node up: exit 1 on a value the node would refuse)."`
	NATS      natsconn.Options `embed:"" prefix:"nats."`
	Version   kong.VersionFlag `help:"Print the version and exit."`

	configUsed string
	conns      []*nats.Conn
	stdout     io.Writer
	stderr     io.Writer
	color      bool // stdout is a terminal
}

// SetOutput sets where commands write; colours are on when stdout is a terminal and
// NO_COLOR is not set.
func (g *Globals) SetOutput(stdout, stderr io.Writer) {
	g.stdout, g.stderr = stdout, stderr
	g.color = IsTerminal(stdout) && os.Getenv("NO_COLOR") == ""
}

// SetConfigUsed records the config file the flags were read from.
func (g *Globals) SetConfigUsed(path string) { g.configUsed = path }

// ConfigUsed is the config file the flags were read from ("" for none).
func (g *Globals) ConfigUsed() string { return g.configUsed }

// Stdout is where a command writes its output.
func (g *Globals) Stdout() io.Writer { return g.stdout }

// Stderr is where a command writes what is not its output.
func (g *Globals) Stderr() io.Writer { return g.stderr }

// Color says whether output may be coloured.
func (g *Globals) Color() bool { return g.color }

// Connect dials NATS; the connection is closed when the command returns. It is watched
// (natsconn.Watch): a request the server denies fails at once, naming the permission.
func (g *Globals) Connect() (*natsconn.Conn, error) {
	nc, err := g.NATS.Connect("nex")
	if err != nil {
		return nil, err
	}
	g.conns = append(g.conns, nc)
	return natsconn.Watch(nc), nil
}

// CloseAll closes every connection the command opened.
func (g *Globals) CloseAll() {
	for _, nc := range g.conns {
		nc.Close()
	}
	g.conns = nil
}

// Client connects and returns a client for the --namespace.
func (g *Globals) Client() (*client.Client, error) {
	if err := v1.ValidateNamespace(g.Namespace); err != nil {
		return nil, err
	}
	nc, err := g.Connect()
	if err != nil {
		return nil, err
	}
	return client.On(nc, g.Namespace)
}

// ExitStatus is a command's exit code that is no error to print: the exit code of the
// workload it followed.
type ExitStatus int

func (e ExitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
