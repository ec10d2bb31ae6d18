package client

import (
	"context"

	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/seal"
)

// Secrets are the namespace's secrets (SECRET_PUT, SECRET_LIST, SECRET_RM).
type Secrets struct{ c *Client }

// Secrets is the client's way to the namespace's secrets.
func (c *Client) Secrets() Secrets { return Secrets{c} }

// Put stores a secret of the namespace. The value is sealed here for the nodes'
// secrets key, so it crosses NATS and rests in KV encrypted; workloads refer to it as
// secret://name in their environment.
func (s Secrets) Put(ctx context.Context, name, value string) (*v1.SecretInfo, error) {
	if err := v1.ValidateToken("secret name", name); err != nil {
		return nil, err
	}
	c := s.c
	key, err := c.secretsKey(ctx)
	if err != nil {
		return nil, err
	}
	sender, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, err
	}
	sealed, err := seal.Value(sender, value, key, c.ns)
	if err != nil {
		return nil, err
	}
	if len(sealed) > seal.MaxSecretBytes {
		return nil, v1.Errorf(v1.CodeTooLarge, "secret %s is %d bytes, %d sealed (a value grows by a third when sealed); the limit is %d sealed, about %d bytes of value", name, len(value), len(sealed), seal.MaxSecretBytes, (seal.MaxSecretBytes-200)*3/4)
	}
	var info v1.SecretInfo
	if err := secretCall(ctx, c, v1.ControlSubject(c.ns, v1.VerbSecretPut, name), v1.SecretPutRequest{Value: sealed}, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// List names the namespace's secrets (never their values).
func (s Secrets) List(ctx context.Context) ([]v1.SecretInfo, error) {
	var out []v1.SecretInfo
	err := secretCall(ctx, s.c, v1.ControlSubject(s.c.ns, v1.VerbSecretList), nil, &out)
	return out, err
}

// Rm removes a secret.
func (s Secrets) Rm(ctx context.Context, name string) error {
	if err := v1.ValidateToken("secret name", name); err != nil {
		return err
	}
	return secretCall(ctx, s.c, v1.ControlSubject(s.c.ns, v1.VerbSecretRm, name), nil, nil)
}

// secretCall asks one node, whose secret store is the cluster's (a node without a
// secrets key answers 503: ErrNoSecretsKey).
func secretCall(ctx context.Context, c *Client, subject string, req, resp any) error {
	err := svc.RetryBusy(ctx, func() error { return svc.Call(ctx, c.nc, subject, req, resp) })
	if err != nil && v1.AsError(err).ErrorCode == v1.CodeUnavailable && !svc.IsBusy(err) {
		return ErrNoSecretsKey
	}
	return err
}
