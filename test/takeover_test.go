package test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/node"
)

// A tenant cannot move a workload from the node that runs it. A DEPLOY could carry a
// takeover, meant for the cluster's coordinator and draining nodes only, and a tenant that
// knew the revision of its workload's record (here handed to it, as a leak would) moved
// the workload to another node with one. Takeovers now come on the system namespace's
// TAKEOVER, which tenants cannot publish to, and a DEPLOY with one is refused. Run as the
// tenant, with the documented tenant rights, on an operator-mode server.
func TestTenantCannotMoveAWorkload(t *testing.T) {
	op, u, url, nodeCreds := issuerSetup(t)
	flags := []string{"--nats.creds-file", nodeCreds, "--issuer-signing-key-root-account", op.account}
	startNexdNamed(t, u, url, filepath.Join(u.home, "a"), "node-a", flags...)
	startNexdNamed(t, u, url, filepath.Join(u.home, "b"), "node-b", flags...)
	a := op.tenant(t, u, url, "a", "alice")
	var w v1.WorkloadInfo
	if err := json.Unmarshal([]byte(u.mustNex(append(a, "workload", "start", "--type", "native", "--lifecycle", "service", "--name", "stays",
		"--json", "--start-request", `{"uri":"file:///bin/sleep","argv":["600"]}`)...)), &w); err != nil {
		t.Fatal(err)
	}
	admin, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, "state.creds"))) // the node's state account
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := node.OpenKVStore(ctx, admin, "reader", 1)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.RecordOf(ctx, w.NodeID, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := nats.Connect(url, nats.UserCredentials(filepath.Join(u.home, "alice.creds")), nats.CustomInboxPrefix(creds.UserInboxPrefix("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	takeover := &v1.Takeover{WorkloadID: w.ID, FromNode: w.NodeID, Revision: rec.Revision, Reason: v1.TakeoverDrain}
	def := rec.Definition
	for _, verb := range []string{v1.VerbDeploy, v1.VerbTakeover} {
		var bids []v1.Bid
		sub, _ := alice.SubscribeSync(alice.NewRespInbox())
		req, _ := json.Marshal(v1.AuctionRequest{Type: def.Type, Lifecycle: def.Lifecycle})
		_ = alice.PublishRequest(v1.ControlSubject("a", v1.VerbAuction), sub.Subject, req)
		for {
			m, err := sub.NextMsg(2 * time.Second)
			if err != nil {
				break
			}
			var reply v1.AuctionReply
			if json.Unmarshal(m.Data, &reply) == nil && reply.Bid != nil && reply.NodeID != w.NodeID {
				bids = append(bids, *reply.Bid)
			}
		}
		sub.Unsubscribe()
		if len(bids) == 0 {
			t.Fatal("no bid of the other node")
		}
		subject := v1.ControlSubject("a", verb, bids[0].BidID)
		if verb == v1.VerbTakeover {
			subject = v1.SystemSubject(v1.VerbTakeover, bids[0].BidID)
		}
		var info v1.WorkloadInfo
		err := svcCall(alice, subject, v1.DeployRequest{Workload: def, Takeover: takeover}, &info)
		if err == nil {
			t.Fatalf("the tenant's %s with a takeover moved its workload to node %s", verb, info.NodeID)
		}
		if verb == v1.VerbDeploy && !strings.Contains(err.Error(), "a takeover comes from the cluster's nodes only") {
			t.Fatalf("the tenant's deploy with a takeover: %v", err)
		}
	}
	var list []v1.WorkloadInfo
	if err := json.Unmarshal([]byte(u.mustNex(append(a, "workload", "list", "--json")...)), &list); err != nil || len(list) != 1 || list[0].NodeID != w.NodeID || list[0].State != v1.StateRunning {
		t.Fatalf("after the tenant's takeovers: %+v %v; want %s running on node %s", list, err, w.ID, w.NodeID)
	}
}
