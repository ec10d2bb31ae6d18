// Command relay is a tenant's service built to abuse NATS responses: each message on
// <ns>.relay it publishes, as its answer, to the message's reply subject (which the
// sender chose), with a reply subject of its own, <ns>.loot, and prints what comes back
// there. The server reports a publish it denied to the error handler: printed "DENIED".
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

func main() {
	ns := os.Getenv(v1.EnvNamespace)
	nc, err := nats.Connect(os.Getenv(v1.EnvNATSURL), nats.UserCredentials(os.Getenv(v1.EnvNATSCreds)),
		nats.CustomInboxPrefix(os.Getenv(v1.EnvInboxPrefix)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { fmt.Println("DENIED", err) }))
	if err != nil {
		fmt.Println("connect:", err)
		os.Exit(1)
	}
	_, _ = nc.Subscribe(ns+".loot", func(m *nats.Msg) {
		fmt.Println("LOOT", strings.ReplaceAll(string(m.Data), "\n", " "))
	})
	_, _ = nc.Subscribe(ns+".relay", func(m *nats.Msg) {
		_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Reply: ns + ".loot", Data: m.Data})
		fmt.Println("relayed to", m.Reply)
	})
	_ = nc.Flush()
	fmt.Println("relay ready")
	select {}
}
