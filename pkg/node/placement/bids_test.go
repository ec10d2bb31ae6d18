package placement

import (
	"sync"
	"testing"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

func bid(id, nexlet, ns string, expires time.Time, mem v1.ByteSize) *Bid {
	return &Bid{Bid: v1.Bid{BidID: id, NexletID: nexlet, ExpiresAt: expires}, NS: ns, Holds: &v1.Resources{Memory: mem}}
}

// A bid is claimed once, by its own namespace; another namespace's claim or release leaves
// it alone; a claimed bid keeps its room until Done, through Release and Expire; an
// expired one is dropped.
func TestBookClaims(t *testing.T) {
	now := time.Now()
	k := NewBook()
	k.Offer(now, func(Promised) *Bid { return bid("b1", "n1", "a", now.Add(time.Minute), 100) })
	k.Offer(now, func(Promised) *Bid { return bid("b2", "n1", "a", now.Add(time.Second), 10) })
	k.Offer(now, func(Promised) *Bid { return bid("b3", "n2", "b", now.Add(time.Minute), 1) })
	if p := k.Promised(now); p.Memory != 111 || p.PerNexlet["n1"] != 2 || p.PerNexlet["n2"] != 1 {
		t.Fatalf("promised %+v", p)
	}
	if _, ok := k.Claim("b1", "b", now); ok {
		t.Fatal("another namespace claimed a bid")
	}
	k.Release("b1", "b")
	if b, ok := k.Claim("b1", "a", now); !ok || b.BidID != "b1" {
		t.Fatal("its own namespace could not claim a bid another had tried")
	}
	if _, ok := k.Claim("b1", "a", now); ok {
		t.Fatal("a bid was claimed twice")
	}
	k.Release("b1", "a")               // claimed: stays
	k.Expire(now.Add(2 * time.Minute)) // claimed: stays; b2 and b3 expire
	if p := k.Promised(now.Add(2 * time.Minute)); p.Memory != 100 || p.PerNexlet["n1"] != 1 || len(p.PerNexlet) != 1 {
		t.Fatalf("after expiry, with b1 claimed: %+v", p)
	}
	k.Done("b1")
	if p := k.Promised(now); p.Memory != 0 || len(p.PerNexlet) != 0 {
		t.Fatalf("after Done: %+v", p)
	}
	if _, ok := k.Claim("b2", "a", now.Add(2*time.Second)); ok {
		t.Fatal("an expired bid was claimed")
	}
}

// Auctions at once are promised no more room than there is: each decides and records
// under the book's lock.
func TestBookOfferIsAtomic(t *testing.T) {
	k := NewBook()
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	given := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := k.Offer(now, func(p Promised) *Bid {
				if p.Memory+10 > 100 { // room for ten
					return nil
				}
				return bid(string(rune('A'+i)), "n", "a", now.Add(time.Minute), 10)
			})
			if b != nil {
				mu.Lock()
				given++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if given != 10 || k.Promised(now).Memory != 100 {
		t.Fatalf("%d bids given, %v promised; room for 10", given, k.Promised(now).Memory)
	}
}
