package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nexrun/nex/internal/cli"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// SecretCmd manages the namespace's secret store.
type SecretCmd struct {
	Put  SecretPutCmd  `cmd:"" help:"Store a secret (sealed before it leaves this machine); refer to it as secret://NAME in environment values."`
	List SecretListCmd `cmd:"" aliases:"ls" help:"Name the namespace's secrets."`
	Rm   SecretRmCmd   `cmd:"" help:"Remove a secret."`
}

// SecretPutCmd stores a secret.
type SecretPutCmd struct {
	Name  string `arg:"" help:"Secret name."`
	Value string `arg:"" optional:"" help:"The value; omit it (or give -) to read it from standard input, so it stays out of shell history."`
}

// Run stores.
func (c *SecretPutCmd) Run(ctx context.Context, g *cli.Globals) error {
	value := c.Value
	if value == "" || value == "-" {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
		if err != nil {
			return err
		}
		value = strings.TrimSuffix(string(b), "\n")
	}
	cl, err := g.Client()
	if err != nil {
		return err
	}
	info, err := cl.Secrets().Put(ctx, c.Name, value)
	if err != nil {
		return err
	}
	if g.JSON {
		return cli.WriteJSON(g.Stdout(), info)
	}
	fmt.Fprintf(g.Stdout(), "Secret %s stored in namespace %s; use it as \"secret://%s\"\n", info.Name, info.Namespace, info.Name)
	return nil
}

// SecretListCmd lists secret names.
type SecretListCmd struct {
	cli.ListOutput `embed:""`
}

// Run lists.
func (c *SecretListCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Client()
	if err != nil {
		return err
	}
	list, err := cl.Secrets().List(ctx)
	if err != nil {
		return err
	}
	if done, err := cli.WriteList(g, c.ListOutput, list, func(s v1.SecretInfo) string { return s.Name }); done {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintf(g.Stdout(), "No secrets in namespace %s.\n", g.Namespace)
		return nil
	}
	t := cli.NewTable("NAME", "UPDATED")
	for _, s := range list {
		t.Row(s.Name, s.UpdatedAt.Local().Format(time.RFC3339))
	}
	return t.Write(g.Stdout())
}

// SecretRmCmd removes a secret.
type SecretRmCmd struct {
	Name string `arg:"" help:"Secret name."`
}

// Run removes.
func (c *SecretRmCmd) Run(ctx context.Context, g *cli.Globals) error {
	cl, err := g.Client()
	if err != nil {
		return err
	}
	if err := cl.Secrets().Rm(ctx, c.Name); err != nil {
		return err
	}
	fmt.Fprintf(g.Stdout(), "Secret %s removed\n", c.Name)
	return nil
}
