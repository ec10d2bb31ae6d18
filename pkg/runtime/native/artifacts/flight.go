package artifacts

import (
	"fmt"
	"io"

	v1 "github.com/nexrun/nex/pkg/api/v1"
)

// Downloads in flight are files of the cache that prune does not count: they are counted
// here instead, byte by byte as they arrive. All of them together hold at most the
// cache's bound, so the cache's directory holds at most twice it (a tenant's twelve slow
// downloads of 63 MiB each, against a bound of 64 MiB, held 745 MiB of the node's disk);
// and one namespace's downloads hold at most half of it, so one tenant's slow downloads
// leave room for another's (it was so only for a namespace with more than one: a single
// slow download just under the bound, from a server the tenant ran, held it all, and
// every other namespace's fetches failed while it lasted, two minutes at a time).

// flight is what one namespace has in flight.
type flight struct {
	bytes     int64
	downloads int
}

// begin counts a download of namespace ns in; end counts it and its bytes out.
func (c *Cache) begin(ns string) {
	c.fl.Lock()
	defer c.fl.Unlock()
	if c.flights == nil {
		c.flights = map[string]*flight{}
	}
	f := c.flights[ns]
	if f == nil {
		f = &flight{}
		c.flights[ns] = f
	}
	f.downloads++
}

func (c *Cache) end(ns string, n int64) {
	c.fl.Lock()
	defer c.fl.Unlock()
	f := c.flights[ns]
	c.inflight -= n
	f.bytes -= n
	if f.downloads--; f.downloads == 0 {
		delete(c.flights, ns)
	}
}

// take counts n more bytes of a download of ns in flight, or says why it may not.
func (c *Cache) take(ns string, n int64) error {
	c.fl.Lock()
	defer c.fl.Unlock()
	f := c.flights[ns]
	if c.inflight+n > c.max {
		return fmt.Errorf("the downloads in flight on this node fill its artifact cache of %s (nexlet-native --cache-max-bytes): try again once they end", v1.ByteSize(c.max))
	}
	if f.bytes+n > c.max/2 {
		return fmt.Errorf("namespace %s's %d downloads in flight hold half this node's artifact cache of %s (nexlet-native --cache-max-bytes), the most one namespace may: try again once they end", ns, f.downloads, v1.ByteSize(c.max))
	}
	c.inflight += n
	f.bytes += n
	return nil
}

// counted is a download's writer that counts its bytes in flight (in took) as they come.
type counted struct {
	c    *Cache
	ns   string
	w    io.Writer
	took int64
}

func (w *counted) Write(p []byte) (int, error) {
	if w.took+int64(len(p)) > w.c.max/2 {
		return 0, errTooLarge(w.c.max)
	}
	if err := w.c.take(w.ns, int64(len(p))); err != nil {
		return 0, err
	}
	w.took += int64(len(p))
	return w.w.Write(p)
}

func errTooLarge(max int64) error {
	return fmt.Errorf("larger than half this nexlet's artifact cache of %s, the most one namespace may have in flight (nexlet-native --cache-max-bytes)", v1.ByteSize(max))
}
