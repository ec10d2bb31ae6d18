// Package seal encrypts start-request environment values for one nexlet with its public
// xkey, so secrets cross NATS and rest in KV only as ciphertext; only that nexlet opens them.
package seal

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nkeys"
)

// Prefix marks a sealed value: nexenc:v1:<sender xkey>:<base64 ciphertext>.
const Prefix = "nexenc:v1:"

// IsSealed reports whether v is a sealed value.
func IsSealed(v string) bool { return strings.HasPrefix(v, Prefix) }

// Environment seals every plain value of the start request's "environment" object for
// recipient (a curve public key, X...), with a fresh sender key. Other fields and values
// already sealed are left as they are.
func Environment(startRequest json.RawMessage, recipient string) (json.RawMessage, error) {
	return rewrite(startRequest, func(v string) (string, error) {
		if IsSealed(v) || strings.HasPrefix(v, "secret://") { // references are resolved by the node
			return v, nil
		}
		sender, err := nkeys.CreateCurveKeys()
		if err != nil {
			return "", err
		}
		return Value(sender, v, recipient)
	})
}

// Value seals one value.
func Value(sender nkeys.KeyPair, v, recipient string) (string, error) {
	ct, err := sender.Seal([]byte(v), recipient)
	if err != nil {
		return "", fmt.Errorf("seal for %s: %w", recipient, err)
	}
	pub, _ := sender.PublicKey()
	return Prefix + pub + ":" + base64.StdEncoding.EncodeToString(ct), nil
}

// Open opens a sealed value with the recipient's key; a plain value is returned as is.
func Open(recipient nkeys.KeyPair, v string) (string, error) {
	if !IsSealed(v) {
		return v, nil
	}
	sender, b64, ok := strings.Cut(strings.TrimPrefix(v, Prefix), ":")
	if !ok {
		return "", fmt.Errorf("%w: malformed", ErrSealed)
	}
	ct, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSealed, err)
	}
	pt, err := recipient.Open(ct, sender)
	if err != nil {
		return "", fmt.Errorf("%w: not for this nexlet's key: %v", ErrSealed, err)
	}
	return string(pt), nil
}

// OpenEnvironment returns the start request's environment with every value opened.
func OpenEnvironment(startRequest json.RawMessage, recipient nkeys.KeyPair) (map[string]string, error) {
	var sr struct {
		Environment map[string]string `json:"environment"`
	}
	if err := json.Unmarshal(startRequest, &sr); err != nil || sr.Environment == nil {
		return nil, nil
	}
	out := make(map[string]string, len(sr.Environment))
	for k, v := range sr.Environment {
		pt, err := Open(recipient, v)
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", k, err)
		}
		out[k] = pt
	}
	return out, nil
}

// Reseal opens every sealed value with from and seals it again for recipient (a clone
// placed on another nexlet).
func Reseal(startRequest json.RawMessage, from nkeys.KeyPair, recipient string) (json.RawMessage, error) {
	return rewrite(startRequest, func(v string) (string, error) {
		if !IsSealed(v) {
			return v, nil
		}
		pt, err := Open(from, v)
		if err != nil {
			return "", err
		}
		return Value(from, pt, recipient)
	})
}

func rewrite(startRequest json.RawMessage, f func(string) (string, error)) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(startRequest, &m); err != nil {
		return startRequest, nil // not an object: the schema check will say so
	}
	raw, ok := m["environment"]
	if !ok {
		return startRequest, nil
	}
	var env map[string]string
	if err := json.Unmarshal(raw, &env); err != nil {
		return startRequest, nil
	}
	for k, v := range env {
		nv, err := f(v)
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", k, err)
		}
		env[k] = nv
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	m["environment"] = b
	return json.Marshal(m)
}

// HasPlainValues says whether the start request's environment holds a value that is
// neither sealed nor a secret:// reference (Environment would seal it).
func HasPlainValues(startRequest json.RawMessage) bool {
	plain := false
	_, _ = rewrite(startRequest, func(v string) (string, error) {
		if !IsSealed(v) && !strings.HasPrefix(v, "secret://") {
			plain = true
		}
		return v, nil
	})
	return plain
}
