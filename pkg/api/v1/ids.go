package v1

import "crypto/rand"

// IDLen is the length of the IDs NewID makes (as long as a NUID, which they replaced).
const IDLen = 22

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewID returns a random ID of IDLen base-62 characters (about 131 bits) from the
// operating system's random source. Workload and bid IDs grant something (a bid deploys,
// a workload ID addresses a workdir), so they must not be predictable from one another as
// NUIDs are (a fixed prefix and a sequence); random IDs also differ from their first
// characters, so a short prefix is unique in practice.
func NewID() string {
	var b [IDLen]byte
	// rejection sampling keeps every character equally likely: 62*4 = 248 values of 256
	// are used, the rest drawn again
	buf := make([]byte, 2*IDLen)
	n := 0
	for n < IDLen {
		_, _ = rand.Read(buf) // never fails (crypto/rand panics instead)
		for _, c := range buf {
			if c < 248 && n < IDLen {
				b[n] = idAlphabet[c%62]
				n++
			}
		}
	}
	return string(b[:])
}
