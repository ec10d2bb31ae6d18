// Package seal encrypts start-request environment values for one nexlet with its public
// xkey, so secrets cross NATS and rest in KV only as ciphertext; only that nexlet opens them.
//
// A value is sealed for one namespace too: the namespace is sealed in with it and checked
// when it is opened, so a sealed value copied into another namespace's start request, group
// or secret store is refused there instead of handing that namespace the plain value (as
// Kubernetes' sealed-secrets bind a value to its namespace in their default, strict scope).
package seal

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nkeys"
)

const (
	// Marker starts every sealed value, whatever its version.
	Marker = "nexenc:"
	// Prefix marks a sealed value bound to a namespace:
	// nexenc:v2:<sender xkey>:<base64 ciphertext of bound(namespace, value)>.
	Prefix = "nexenc:v2:"
	// LegacyPrefix marks a value sealed by nex before values were bound to a namespace.
	// Nexlets still open them (a workload recorded before restarts with its values), but
	// nodes take none in a new start, group or secret: LegacyValue names them.
	LegacyPrefix = "nexenc:v1:"
	// boundMark starts a bound plaintext: NUL, which no environment value and no
	// namespace can hold, so a bound value relabelled as legacy is told apart.
	boundMark = "\x00nexns:"
	// MaxSecretBytes bounds a secret as stored: sealed, a value grows by a third.
	MaxSecretBytes = 64 << 10
)

// IsSealed reports whether v is a sealed value.
func IsSealed(v string) bool {
	return strings.HasPrefix(v, Prefix) || strings.HasPrefix(v, LegacyPrefix)
}

// Contains says whether a start request holds a sealed value in its environment, as the
// nexlet reads it (environment).
func Contains(startRequest []byte) bool {
	if bytes.Contains(startRequest, []byte(Marker)) {
		return true
	}
	if !bytes.Contains(startRequest, []byte(`\`)) {
		return false // no JSON escape: the bytes tell
	}
	env, _ := environment(startRequest)
	for _, v := range env {
		if IsSealed(v) {
			return true
		}
	}
	return false
}

// environment is the start request's environment as every opener reads it (OpenEnvironment,
// and a nexlet's own decoding of its start request: encoding/json into a struct, which
// takes "Environment" for "environment" and merges repeated keys). Every check of what
// the environment holds reads it so too: a check of the bytes let "nexenc:\u00761:..."
// through, a legacy value once decoded (a review's walk). An environment that is not an
// object of strings is an error, with what could be read of it: a review's walk put
// "environment":[] before the real one, and a check that gave up on the first saw nothing.
func environment(startRequest []byte) (map[string]string, error) {
	if len(startRequest) == 0 {
		return nil, nil
	}
	var sr struct {
		Environment map[string]string `json:"environment"`
	}
	if err := json.Unmarshal(startRequest, &sr); err != nil {
		return sr.Environment, fmt.Errorf("start_request.environment: %w", err)
	}
	return sr.Environment, nil
}

// Environment seals every plain value of the start request's "environment" object for
// recipient (a curve public key, X...) and namespace ns, with a fresh sender key. Other
// fields and values already sealed are left as they are.
func Environment(startRequest json.RawMessage, recipient, ns string) (json.RawMessage, error) {
	return rewrite(startRequest, func(v string) (string, error) {
		if IsSealed(v) || strings.HasPrefix(v, "secret://") { // references are resolved by the node
			return v, nil
		}
		sender, err := nkeys.CreateCurveKeys()
		if err != nil {
			return "", err
		}
		return Value(sender, v, recipient, ns)
	})
}

// Value seals one value for recipient and namespace ns.
func Value(sender nkeys.KeyPair, v, recipient, ns string) (string, error) {
	ct, err := sender.Seal([]byte(boundMark+ns+"\x00"+v), recipient)
	if err != nil {
		return "", fmt.Errorf("seal for %s: %w", recipient, err)
	}
	pub, _ := sender.PublicKey()
	return Prefix + pub + ":" + base64.StdEncoding.EncodeToString(ct), nil
}

// Open opens a sealed value with the recipient's key; a plain value is returned as is. A
// value sealed for another namespace than ns is refused (ErrOtherNamespace).
func Open(recipient nkeys.KeyPair, v, ns string) (string, error) {
	legacy := strings.HasPrefix(v, LegacyPrefix)
	if !legacy && !strings.HasPrefix(v, Prefix) {
		return v, nil
	}
	sender, b64, ok := strings.Cut(v[len(Prefix):], ":") // both prefixes are as long
	if !ok {
		return "", fmt.Errorf("%w: malformed", ErrSealed)
	}
	ct, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSealed, err)
	}
	pt, err := recipient.Open(ct, sender)
	if err != nil {
		return "", fmt.Errorf("%w: not sealed for this key: %v", ErrSealed, err)
	}
	rest, bound := strings.CutPrefix(string(pt), boundMark)
	if legacy {
		if bound {
			return "", fmt.Errorf("%w: a value sealed for a namespace (%s) labelled %s", ErrSealed, Prefix, LegacyPrefix)
		}
		return string(pt), nil
	}
	sealedFor, value, ok := strings.Cut(rest, "\x00")
	if !bound || !ok {
		return "", fmt.Errorf("%w: malformed", ErrSealed)
	}
	if sealedFor != ns {
		return "", fmt.Errorf("%w: it was not sealed for namespace %s", ErrOtherNamespace, ns)
	}
	return value, nil
}

// OpenEnvironment returns the start request's environment with every value opened, each
// of them sealed for namespace ns.
func OpenEnvironment(startRequest json.RawMessage, recipient nkeys.KeyPair, ns string) (map[string]string, error) {
	env, err := environment(startRequest)
	if err != nil {
		return nil, err
	}
	if env == nil {
		return nil, nil
	}
	out := make(map[string]string, len(env))
	for k, v := range env {
		pt, err := Open(recipient, v, ns)
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", k, err)
		}
		out[k] = pt
	}
	return out, nil
}

// Reseal opens every sealed value with from and seals it again for recipient (a clone
// placed on another nexlet), each of them for namespace ns: a value sealed for another
// is refused, and a legacy value comes out bound to ns.
func Reseal(startRequest json.RawMessage, from nkeys.KeyPair, recipient, ns string) (json.RawMessage, error) {
	return rewrite(startRequest, func(v string) (string, error) {
		if !IsSealed(v) {
			return v, nil
		}
		pt, err := Open(from, v, ns)
		if err != nil {
			return "", err
		}
		return Value(from, pt, recipient, ns)
	})
}

// LegacyValue names the environment value of the start request sealed as legacy
// (LegacyPrefix) that sorts first, "" when there is none.
func LegacyValue(startRequest json.RawMessage) string { return newLegacyValue(startRequest, nil) }

// newLegacyValue is LegacyValue leaving out the values before holds under the same name.
func newLegacyValue(startRequest, before json.RawMessage) string {
	if !bytes.Contains(startRequest, []byte(LegacyPrefix)) && !bytes.Contains(startRequest, []byte(`\`)) {
		return "" // no JSON escape: the bytes tell
	}
	kept, _ := environment(before)
	env, _ := environment(startRequest)
	name := ""
	for k, v := range env {
		if strings.HasPrefix(v, LegacyPrefix) && kept[k] != v && (name == "" || k < name) {
			name = k
		}
	}
	return name
}
func rewrite(startRequest json.RawMessage, f func(string) (string, error)) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(startRequest, &m); err != nil {
		return startRequest, nil // not an object: the schema check will say so
	}
	changed := false
	for key, raw := range m {
		if !strings.EqualFold(key, "environment") { // every key environment() reads
			continue
		}
		var env map[string]string
		if err := json.Unmarshal(raw, &env); err != nil {
			return nil, fmt.Errorf("start_request.%s: %w", key, err)
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
		m[key], changed = b, true
	}
	if !changed {
		return startRequest, nil
	}
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

// CheckNew refuses a start request, new to the cluster (a start or a group's definition
// from a client), that holds a legacy value: sealed for no namespace, it could be another
// namespace's, copied. Those before holds under the same name are kept: the definition
// the request replaces (an update of a group recorded with them, sent back as it was).
func CheckNew(startRequest, before json.RawMessage) error {
	if _, err := environment(startRequest); err != nil {
		return err
	}
	if k := newLegacyValue(startRequest, before); k != "" {
		return fmt.Errorf("start_request.environment.%s is sealed by an older nex (%s...), for no namespace: send it again with this nex, which seals every value for its namespace", k, LegacyPrefix)
	}
	return nil
}
