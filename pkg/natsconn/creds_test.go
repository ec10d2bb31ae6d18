package natsconn

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// A credentials file the server would refuse as "Authorization Violation" is named, with
// what is wrong with it, before any connection is made (a newcomer's walk gave nex an
// empty one).
func TestCredsFileChecked(t *testing.T) {
	dir := t.TempDir()
	acct, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	token, err := jwt.NewUserClaims(pub).Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := jwt.FormatUserConfig(token, seed)
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	mixed := bytes.Replace(good, seed, otherSeed, 1) // nkeys' formatter refuses to write one
	uc := jwt.NewUserClaims(pub)
	uc.Name, uc.Expires = "shorty", time.Now().Add(-time.Minute).Unix()
	old, _ := uc.Encode(acct)
	expired, _ := jwt.FormatUserConfig(old, seed)
	jwtOnly := []byte("-----BEGIN NATS USER JWT-----\n" + token + "\n------END NATS USER JWT------\n")
	for _, c := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"good", good, ""},
		{"empty", nil, "holds no NATS user JWT"},
		{"garbage", []byte("hello\n"), "holds no NATS user JWT"},
		{"seed only", seed, "holds no NATS user JWT"},
		{"jwt only", jwtOnly, "holds no user seed"},
		{"mixed", mixed, "its seed is user"},
		{"expired", expired, "its JWT (user shorty) expired at"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".creds")
		if err := os.WriteFile(path, c.content, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Options{Servers: []string{"nats://127.0.0.1:1"}, CredsFile: path}.natsOptions("t")
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := (Options{CredsFile: filepath.Join(dir, "missing.creds")}).natsOptions("t"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing: %v", err)
	}
}
