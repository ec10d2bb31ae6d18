package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// fetchTimeout bounds the download of one artifact.
const fetchTimeout = 2 * time.Minute

// DefaultCacheMaxBytes bounds the artifact cache when NewCache is given no bound.
const DefaultCacheMaxBytes = 1 << 30

// Cache is the nexlet's cache of fetched artifacts: files in dir named by the digest of
// their content, at most max bytes of them (the least recently used go first). Its lock
// is held while it is pruned.
type Cache struct {
	dir string
	max int64
	mu  sync.Mutex

	fl       sync.Mutex // guards what is in flight (flight.go)
	inflight int64
	flights  map[string]*flight // by namespace
}

// NewCache keeps fetched artifacts in dir, at most max bytes of them (DefaultCacheMaxBytes
// when max is 0).
func NewCache(dir string, max int64) *Cache {
	if max <= 0 {
		max = DefaultCacheMaxBytes
	}
	return &Cache{dir: dir, max: max}
}

// cached returns the path of uri's content in the nexlet's cache, fetching it when it is
// not there. An object store object found in the cache is still asked after, with the
// workload's credentials: it may have been removed (nex workload bundle rm), and this
// workload may not be allowed to read it. Each namespace has entries of its own (named
// "<namespace>.<digest>"): a digest is no key to what another namespace fetched (a tenant
// that knew the digest of another's private artifact got its content from the cache, by
// naming it with any address, or any object of its own bucket).
func (f *Fetch) cached(ctx context.Context, uri, digest string) (*os.File, error) {
	cacheDir := f.Cache.dir
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, err
	}
	if digest != "" {
		p := filepath.Join(cacheDir, f.cacheName(digest))
		if file, err := os.Open(p); err == nil { // open: a prune may remove the name, not the file
			if err := f.stillThere(ctx, uri); err != nil {
				file.Close()
				return nil, err
			}
			now := time.Now()
			_ = os.Chtimes(p, now, now) // recently used: pruned last
			return file, nil
		}
	}
	return f.download(ctx, cacheDir, uri, digest)
}

// cacheName names the cache entry of the workload's namespace for content of digest (a
// namespace holds no '.').
func (f *Fetch) cacheName(digest string) string {
	if f.Namespace == "" {
		return digest
	}
	return f.Namespace + "." + digest
}

// prune removes the least recently used cached artifacts (not keep) until the cache
// holds at most c.max bytes: a tenant's downloads cannot fill the node's disk.
func (c *Cache) prune(keep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dir := c.dir
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type file struct {
		path string
		size int64
		used time.Time
	}
	var files []file
	var total int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || strings.HasPrefix(e.Name(), "fetch-") {
			continue
		}
		files = append(files, file{filepath.Join(dir, e.Name()), info.Size(), info.ModTime()})
		total += info.Size()
	}
	// the namespace whose download this prune follows gives up its own entries first,
	// least recently used first, and only then another's: one tenant fetching one new
	// artifact after another pushed every other namespace's out of the cache (a review)
	ns, _, _ := strings.Cut(filepath.Base(keep), ".")
	own := func(f file) bool { return strings.HasPrefix(filepath.Base(f.path), ns+".") }
	sort.SliceStable(files, func(i, j int) bool {
		if oi, oj := own(files[i]), own(files[j]); oi != oj {
			return oi
		}
		return files[i].used.Before(files[j].used)
	})
	for _, f := range files {
		if total <= c.max {
			return
		}
		if f.path == keep {
			continue
		}
		if os.Remove(f.path) == nil {
			total -= f.size
		}
	}
}

// download fetches uri into the cache, checks the digest when one is given, and
// returns the cache entry (named by the content's digest), open, the cache pruned to its
// bound before the download's bytes stop counting as in flight.
func (f *Fetch) download(ctx context.Context, cacheDir, uri, want string) (*os.File, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	r, err := f.open(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	tmp, err := os.CreateTemp(cacheDir, "fetch-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	max := f.Cache.max
	f.Cache.begin(f.Namespace)
	into := &counted{c: f.Cache, ns: f.Namespace, w: io.MultiWriter(tmp, sum)}
	defer func() { f.Cache.end(f.Namespace, into.took) }() // after the rename: prune counts it then
	n, err := io.Copy(into, io.LimitReader(r, max+1))
	if err != nil {
		tmp.Close()
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if n > max {
		tmp.Close()
		return nil, fmt.Errorf("fetch: %w", errTooLarge(max))
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	got := hex.EncodeToString(sum.Sum(nil))
	if want != "" && got != want {
		return nil, fmt.Errorf("sha256 mismatch: want %s, got %s", want, got)
	}
	p := filepath.Join(cacheDir, f.cacheName(got))
	if err := os.Rename(tmp.Name(), p); err != nil {
		return nil, err
	}
	file, err := os.Open(p) // open: a prune may remove the name, not the file
	if err == nil {
		f.Cache.prune(p)
	}
	return file, err
}
