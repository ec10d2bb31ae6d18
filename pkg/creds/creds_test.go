package creds

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

func TestMintedCredsVerify(t *testing.T) {
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	sk, _ := nkeys.CreateAccount()
	skSeed, _ := sk.Seed()
	skPub, _ := sk.PublicKey()
	for name, m := range map[string]func() (Minter, error){
		"signing key": func() (Minter, error) { return NewSigningKeyMinter(string(skSeed), accPub) },
		"account key": func() (Minter, error) { s, _ := acc.Seed(); return NewAccountKeyMinter(accPub, string(s)) },
	} {
		t.Run(name, func(t *testing.T) {
			minter, err := m()
			if err != nil {
				t.Fatal(err)
			}
			c, err := minter.Workload("shop", "w1", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			file, err := c.File()
			if err != nil {
				t.Fatal(err)
			}
			token, err := jwt.ParseDecoratedJWT(file)
			if err != nil {
				t.Fatal(err)
			}
			uc, err := jwt.DecodeUserClaims(token) // verifies the signature
			if err != nil {
				t.Fatal(err)
			}
			if uc.Permissions.Pub.Allow[0] != "shop.>" || uc.Expires == 0 {
				t.Fatalf("claims %+v", uc)
			}
			if name == "signing key" && (uc.Issuer != skPub || uc.IssuerAccount != accPub) {
				t.Fatalf("issuer %s / %s", uc.Issuer, uc.IssuerAccount)
			}
			if name == "account key" && uc.Issuer != accPub {
				t.Fatalf("issuer %s", uc.Issuer)
			}
			seed, err := jwt.ParseDecoratedNKey(file)
			if err != nil {
				t.Fatal(err)
			}
			if pub, _ := seed.PublicKey(); pub != uc.Subject {
				t.Fatalf("seed %s does not match subject %s", pub, uc.Subject)
			}
		})
	}
	if _, err := NewSigningKeyMinter("SAbogus", accPub); err == nil || !strings.Contains(err.Error(), "want an account seed (SA..., signing.seed of nex security init)") {
		t.Fatalf("bogus seed: %v", err)
	}
	if _, err := NewSigningKeyMinter(string(skSeed), ""); err == nil || !strings.Contains(err.Error(), "--issuer-signing-key needs --issuer-signing-key-root-account") {
		t.Fatalf("no root account: %v", err)
	}
	u, _ := nkeys.CreateUser()
	useed, _ := u.Seed()
	if _, err := NewAccountKeyMinter(accPub, string(useed)); err == nil {
		t.Fatal("a user seed accepted as an account key")
	}
	other, _ := nkeys.CreateAccount()
	oseed, _ := other.Seed()
	if _, err := NewAccountKeyMinter(accPub, string(oseed)); err == nil {
		t.Fatal("a seed of another account accepted")
	}
}

// A workload's reply prefix is of a shape no documented user prefix takes: the workloads
// of namespace cli_a cannot subscribe to the replies of a user whose prefix is
// _INBOX_cli_a (they could, when workloads' prefixes were _INBOX_<namespace>).
func TestWorkloadInboxDisjointFromUsers(t *testing.T) {
	p := WorkloadPermissions("cli_a")
	for _, s := range p.Sub.Allow {
		if s == "_INBOX_cli_a.>" || s == "_INBOX.>" || s == "_INBOX_cli_a" {
			t.Fatalf("a workload of namespace cli_a may subscribe to %s", s)
		}
	}
	if got := InboxPrefix("cli_a"); got != "_INBOX_NEXW_cli_a" {
		t.Fatalf("InboxPrefix(cli_a) = %s", got)
	}
}
