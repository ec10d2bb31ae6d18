// Package workload is for programs nex runs, written in Go: it connects to NATS the way
// the node set the workload up, and keeps the connection across credential renewals.
package workload

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/natsconn"
)

// The environment a nexlet gives a workload that has credentials of its own.
const (
	EnvURL         = v1.EnvNATSURL
	EnvCreds       = v1.EnvNATSCreds
	EnvInboxPrefix = v1.EnvInboxPrefix
)

// ErrNoCredentials means the workload was started without credentials of its own (a
// node in development mode shares its connection with nobody: there is nothing to use).
var ErrNoCredentials = errors.New("no NATS credentials: " + EnvCreds + " is not set (the node mints none in development mode)")

// Connect connects with NATS_URL, the credentials file in NEX_NATS_CREDS and the inbox
// prefix in NEX_NATS_INBOX_PREFIX (replies to the workload's requests come there; it may
// not subscribe to _INBOX.>). The node renews the credentials at a third of their
// lifetime; Connect watches the file and moves the connection to the new ones at once
// (natsconn.Renewal: subscriptions and requests in flight carry over), long before the
// server would cut it off at the old ones' expiry. It follows the file until ctx ends or
// the connection is closed. opts come after nex's own and may override them.
func Connect(ctx context.Context, name string, opts ...nats.Option) (*nats.Conn, error) {
	path := os.Getenv(EnvCreds)
	if path == "" {
		return nil, ErrNoCredentials
	}
	r := natsconn.NewRenewal(path)
	all := append(r.Options(), nats.Name(name), nats.MaxReconnects(-1))
	if p := os.Getenv(EnvInboxPrefix); p != "" {
		all = append(all, nats.CustomInboxPrefix(p))
	}
	nc, err := nats.Connect(os.Getenv(EnvURL), append(all, opts...)...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	nc.SetClosedHandler(chain(nc.Opts.ClosedCB, cancel))
	go r.Follow(ctx, 250*time.Millisecond)
	return nc, nil
}

func chain(prev nats.ConnHandler, then func()) nats.ConnHandler {
	return func(nc *nats.Conn) {
		then()
		if prev != nil {
			prev(nc)
		}
	}
}
