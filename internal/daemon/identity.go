package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
)

// ErrBadSeed means --node-seed is neither a server seed nor a file holding one.
var ErrBadSeed = errors.New("invalid node seed")

// LoadIdentity returns the node's key pair: from seed (a seed or a file), else from
// <dataDir>/node.seed, which is created on first start so restarts keep the same ID.
func LoadIdentity(seed, dataDir string) (nkeys.KeyPair, error) {
	if seed != "" {
		if !strings.HasPrefix(seed, "S") {
			b, err := os.ReadFile(seed)
			if err != nil {
				return nil, fmt.Errorf("%w: read %s: %v", ErrBadSeed, seed, err)
			}
			seed = strings.TrimSpace(string(b))
		}
		return parseServerSeed(seed)
	}
	path := filepath.Join(dataDir, "node.seed")
	if b, err := os.ReadFile(path); err == nil {
		kp, err := parseServerSeed(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return kp, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	kp, err := nkeys.CreateServer()
	if err != nil {
		return nil, fmt.Errorf("create node key: %w", err)
	}
	s, _ := kp.Seed()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	if err := os.WriteFile(path, append(s, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return kp, nil
}

func parseServerSeed(seed string) (nkeys.KeyPair, error) {
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSeed, err)
	}
	pub, _ := kp.PublicKey()
	if !strings.HasPrefix(pub, "N") {
		return nil, fmt.Errorf("%w: want a server (node) seed starting with SN, got a key for %s...", ErrBadSeed, pub[:1])
	}
	return kp, nil
}
