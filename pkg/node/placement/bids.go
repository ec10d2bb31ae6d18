package placement

import (
	"sync"
	"time"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Bid is a bid a node gave: what it promised, to whom, and whether a deploy has claimed it.
type Bid struct {
	v1.Bid
	NS        string        // the namespace that asked: no other may deploy or release it
	Lifecycle string        // what it was for, with Type
	Res       *v1.Resources // what the workload asks for (the deploy must ask the same)
	Holds     *v1.Resources // Res with the node's default limits: reserved while the bid is out
	Used      bool          // claimed by a deploy still under way (it keeps the room)
}

// Outstanding says whether the bid still holds its place: until it is used (and its
// workload indexed) or expires.
func (b *Bid) Outstanding(now time.Time) bool { return b.Used || now.Before(b.ExpiresAt) }

// Promised is what a node's outstanding bids hold: room, bids per nexlet, and each
// namespace's bids not yet claimed by a deploy: how many (Unused), and what those that
// hold room hold (PerNS; Workloads: how many).
type Promised struct {
	Memory    v1.ByteSize
	CPU       float64
	PerNexlet map[string]int
	PerNS     map[string]v1.Usage
	Unused    map[string]int
}

// Book is the bids a node gave and has not yet seen used or expire, under a lock of its
// own: an auction decides and records its bid under it (Offer), so two auctions at once
// cannot both be promised the last room.
type Book struct {
	mu   sync.Mutex
	bids map[string]*Bid
}

// NewBook returns an empty book.
func NewBook() *Book { return &Book{bids: map[string]*Bid{}} }

func (k *Book) promised(now time.Time) Promised {
	p := Promised{PerNexlet: map[string]int{}, PerNS: map[string]v1.Usage{}, Unused: map[string]int{}}
	for _, b := range k.bids {
		if !b.Outstanding(now) {
			continue
		}
		p.PerNexlet[b.NexletID]++
		if b.Holds != nil {
			p.Memory += b.Holds.Memory
			p.CPU += b.Holds.CPU
		}
		if b.Used { // a claimed bid's workload is indexed, and counted there
			continue
		}
		p.Unused[b.NS]++
		if !b.Holds.Empty() {
			u := p.PerNS[b.NS]
			u.Add(b.Holds)
			p.PerNS[b.NS] = u
		}
	}
	return p
}

// Promised is what the outstanding bids hold now.
func (k *Book) Promised(now time.Time) Promised {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.promised(now)
}

// Offer has decide choose a bid knowing what the outstanding bids hold, and records the
// bid it returns (nil: none, its reason is decide's to keep), both under the book's lock.
// decide may take leaf locks (the index's), never the book again.
func (k *Book) Offer(now time.Time, decide func(Promised) *Bid) *Bid {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := decide(k.promised(now))
	if b != nil {
		k.bids[b.BidID] = b
	}
	return b
}

// Claim takes bid id of namespace ns for a deploy, once: a copy of it, or false when it
// is unknown, another namespace's or claimed already (left alone), or expired (dropped).
// A claimed bid keeps its room until Done.
func (k *Book) Claim(id, ns string, now time.Time) (Bid, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.bids[id]
	if !ok || b.NS != ns || b.Used {
		// a second claim of a claimed bid (a deploy sent again) leaves it to the first: it
		// dropped the bid, and the room the first deploy still held was promised again
		return Bid{}, false
	}
	if now.After(b.ExpiresAt) {
		delete(k.bids, id)
		return Bid{}, false
	}
	b.Used = true
	return *b, true
}

// Done drops bid id, whose deploy is over: its workload holds its own room now (or did
// not start).
func (k *Book) Done(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.bids, id)
}

// Release drops bid id of namespace ns that its client will not use; a claimed bid stays
// until its deploy is done, and another namespace's is left alone.
func (k *Book) Release(id, ns string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if b, ok := k.bids[id]; ok && !b.Used && b.NS == ns {
		delete(k.bids, id)
	}
}

// Expire drops the bids that expired unused.
func (k *Book) Expire(now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, b := range k.bids {
		if !b.Used && now.After(b.ExpiresAt) {
			delete(k.bids, id)
		}
	}
}
