package client

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nexrun/nex/internal/svc"
	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// RankBids orders an auction's bids best first: the lowest load, then the node running
// the fewest workloads, then at random. A bid without a load (its node places at
// random, nexd --placement random) counts as a random load in [0, 1), drawn once per
// call. bids is not changed. Every placement (a start, a moved workload, a group's copy)
// picks with it, so one rule decides where work lands.
func RankBids(bids []v1.Bid) []v1.Bid {
	type ranked struct {
		bid  v1.Bid
		load float64
	}
	rs := make([]ranked, len(bids))
	for i, b := range bids {
		rs[i] = ranked{bid: b, load: rand.Float64()}
		if b.Load != nil {
			rs[i].load = *b.Load
		}
	}
	// shuffled first: the stable sort leaves equal bids in a random order
	rand.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
	slices.SortStableFunc(rs, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.load, b.load), cmp.Compare(a.bid.Workloads, b.bid.Workloads))
	})
	out := make([]v1.Bid, len(rs))
	for i, r := range rs {
		out[i] = r.bid
	}
	return out
}

// ReleaseBids gives back every bid of an auction for res but keep's (a bid ID; "" releases
// all): each node frees the room its bid held at once rather than when the bid expires. It
// returns once the nodes have answered (at most a second): the next auction sees the room
// free. A bid for no resources holds no room: its release is sent and not waited for (a
// node bounds how many bids a namespace leaves unused). Best effort: a node that does not
// hear it drops the bid at expiry.
func (c *Client) ReleaseBids(ctx context.Context, bids []v1.Bid, keep string, res *v1.Resources) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, b := range bids {
		subject := v1.ControlSubject(c.ns, v1.VerbRelease, b.BidID)
		switch {
		case b.BidID == keep:
		case res.Empty():
			_ = c.nc.Publish(subject, nil)
		default:
			wg.Go(func() { _ = svc.Call(ctx, c.nc, subject, nil, nil) })
		}
	}
	wg.Wait()
}
