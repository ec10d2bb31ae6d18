package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/nexrun/nex/internal/keyfile"
)

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
	return keyfile.LoadOrCreate(filepath.Join(dataDir, "node.seed"), func(seed []byte) (nkeys.KeyPair, error) {
		return parseServerSeed(string(seed))
	}, nkeys.CreateServer)
}

func parseServerSeed(seed string) (nkeys.KeyPair, error) {
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSeed, err)
	}
	pub, _ := kp.PublicKey()
	if !strings.HasPrefix(pub, "N") {
		return nil, fmt.Errorf("%w: want a server (node) seed starting with SN, got a key for %s", ErrBadSeed, pub[:1])
	}
	return kp, nil
}
