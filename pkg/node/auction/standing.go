package auction

import (
	"maps"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/node/placement"
)

// refreshIsolation sets the tags nex.isolation and nex.sandbox from the nexlets'
// registrations: uid (namespaces) when every nexlet runs each workload as a user of its
// own (in a sandbox of its own), else none. The tags are replaced,
// never changed in place (Info hands them out). Caller holds a.mu.
func (a *Auctioneer) refreshIsolation() {
	iso, box := placement.NodeIsolation(a.Nexlets.All(time.Now()))
	if a.tags[v1.TagIsolation] != iso || a.tags[v1.TagSandbox] != box {
		t := maps.Clone(a.tags)
		t[v1.TagIsolation] = iso
		t[v1.TagSandbox] = box
		a.tags = t
	}
}

// refreshCgroups sets the tag nex.cgroups from the ready nexlets' registrations: the best
// kind any of them enforces limits with (v2, then v1), else none. With nexlets of mixed
// kinds the tag names the best; an auction still places a request with limits only on a
// nexlet that enforces them (nex node info shows each nexlet's). The tags are replaced,
// never changed in place (Info hands them out). Caller holds a.mu.
func (a *Auctioneer) refreshCgroups() {
	if best := placement.BestCgroups(a.Nexlets.All(time.Now()), ""); a.tags[v1.TagCgroups] != best {
		t := maps.Clone(a.tags)
		t[v1.TagCgroups] = best
		a.tags = t
	}
}

// State is the node's: v1.NodeRunning, or v1.NodeLameduck once it drains.
func (a *Auctioneer) State() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// SetLameduck stops the node's bids for good; false when it was in lameduck already.
func (a *Auctioneer) SetLameduck() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state == v1.NodeLameduck {
		return false
	}
	a.state = v1.NodeLameduck
	return true
}

// Tags are the node's tags, its own and the nex. ones its nexlets set. The map is
// replaced, never changed in place: a caller may keep it.
func (a *Auctioneer) Tags() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tags
}

// SetTags replaces the node's own tags (checked already); the nex. ones are set again from
// the nexlets, and auctions use them at once.
func (a *Auctioneer) SetTags(tags map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tags = tags
	a.refreshIsolation()
	a.refreshCgroups()
}

// RefreshIsolation sets the tags nex.isolation and nex.sandbox again from the nexlets.
func (a *Auctioneer) RefreshIsolation() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refreshIsolation()
}

// RefreshCgroups sets the tag nex.cgroups again from the ready nexlets.
func (a *Auctioneer) RefreshCgroups() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refreshCgroups()
}
