package native

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"

	"github.com/nexrun/nex/internal/sandbox"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/runtime/native/asuser"
)

// fetchTimeout bounds the download of one artifact.
const fetchTimeout = 2 * time.Minute

// digestRE is a SHA-256 digest as the start request gives it, and the cache names files.
var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// fetchArtifacts places every artifact in the workdir as the workload's own user, and the
// executable too when the uri is nats:// (in .nex, where the workload may run it but not
// replace it).
//
// A file:// artifact is read as the workload's user, so it is something that user could
// read anyway (never /etc/shadow or the node's keys), and is never cached. http(s) and
// nats:// content is fetched into the nexlet's cache, named by its digest; a nats://
// object is fetched, and its presence checked at every use, with the workload's own
// credentials, so a namespace reads only the object stores it may read.
func (h *handle) fetchArtifacts(ctx context.Context) error {
	sr := h.sr
	for i, a := range sr.Artifacts {
		dest := a.Path
		if dest == "" {
			dest = baseName(a.URI)
		}
		if filepath.IsAbs(dest) || !filepath.IsLocal(dest) || filepath.Clean(dest) == "." {
			return fmt.Errorf("artifacts[%d].path %q must be relative and stay inside the workdir", i, dest)
		}
		mode := os.FileMode(0o644)
		if a.Mode != "" {
			m, err := strconv.ParseUint(a.Mode, 8, 32)
			if err != nil || m&^0o777 != 0 {
				return fmt.Errorf("artifacts[%d].mode %q: want permission bits in octal, at most 0777 (no setuid, setgid or sticky bit)", i, a.Mode)
			}
			mode = os.FileMode(m)
		}
		if err := h.place(ctx, dest, a.URI, a.SHA256, mode); err != nil {
			return fmt.Errorf("artifacts[%d] %s: %w", i, a.URI, err)
		}
	}
	if sr.remoteExec != "" {
		p, err := h.placeExecutable(ctx, sr.remoteExec, sr.SHA256)
		if err != nil {
			return fmt.Errorf("uri %s: %w", sr.remoteExec, err)
		}
		sr.path = p
	}
	return nil
}

func baseName(uri string) string {
	if u, err := url.Parse(uri); err == nil && u.Path != "" {
		if b := path.Base(u.Path); b != "/" && b != "." {
			return b
		}
	}
	return "artifact"
}

// place puts the content of uri at workdir/dest, written as the workload's user.
func (h *handle) place(ctx context.Context, dest, uri, digest string, mode os.FileMode) error {
	if digest != "" && !digestRE.MatchString(digest) {
		return fmt.Errorf("sha256 %q: want 64 lower-case hex digits", digest)
	}
	target := filepath.Join(h.workdir, dest)
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrBadURI, uri, err)
	}
	if u.Scheme == "file" {
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return fmt.Errorf("%w %q: want file:///absolute/path", ErrBadURI, uri)
		}
		return asuser.Do(h.identity(), func() error {
			// non-blocking: a FIFO must not hold the start (and a thread) forever
			src, err := os.OpenFile(u.Path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				return asuser.Denied("read", u.Path, err)
			}
			defer src.Close()
			if st, err := src.Stat(); err != nil || !st.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", u.Path)
			}
			// where it really is (symlinks and /dev/fd followed): never the nexlet's own
			// /proc, nor what the workload's sandbox hides from it
			real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(src.Fd())))
			if err != nil {
				return err
			}
			if why := h.outOfView(real); why != "" {
				return fmt.Errorf("%s (%s) is refused: %s", u.Path, real, why)
			}
			return writeAs(target, src, mode, digest)
		})
	}
	src, err := h.cached(ctx, uri, digest) // the nexlet's own file
	if err != nil {
		return err
	}
	defer src.Close()
	return asuser.Do(h.identity(), func() error { return writeAs(target, src, mode, "") })
}

// outOfView says why a file at the real path real may not be an artifact of this
// workload: /proc is the nexlet's view of processes (its own /proc/self included), and a
// sandboxed workload's private directories are not the host's.
func (h *handle) outOfView(real string) string {
	if real == "/proc" || strings.HasPrefix(real, "/proc/") {
		return "files under /proc are the nexlet's view of processes, not the workload's"
	}
	if h.d.sandbox != "" && h.identity() != nil {
		for _, dir := range sandbox.Private {
			if real == dir || strings.HasPrefix(real, dir+"/") {
				return dir + " is private to each workload's sandbox: the host's is not the workload's to read"
			}
		}
	}
	return ""
}

// writeAs writes src to target (replacing what is there, never through a symlink) with
// mode, checking its digest when one is given. It runs as the workload's user (asUser).
func writeAs(target string, src io.Reader, mode os.FileMode, digest string) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	var h hash.Hash = sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), src)
	if err == nil {
		err = out.Chmod(mode)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && digest != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != digest {
			err = fmt.Errorf("sha256 mismatch: want %s, got %s", digest, got)
		}
	}
	if err != nil {
		_ = os.Remove(target)
	}
	return err
}

// placeExecutable puts the executable of a nats:// uri in the workdir's .nex: the
// nexlet's directory, readable and runnable by the workload's group, not replaceable.
func (h *handle) placeExecutable(ctx context.Context, uri, digest string) (string, error) {
	if digest != "" && !digestRE.MatchString(digest) {
		return "", fmt.Errorf("sha256 %q: want 64 lower-case hex digits", digest)
	}
	src, err := h.cached(ctx, uri, digest)
	if err != nil {
		return "", err
	}
	defer src.Close()
	name := baseName(uri)
	if err := h.writeInNex(true, name, "", 0o750, src); err != nil {
		return "", err
	}
	h.nexFiles = append(h.nexFiles, name)
	return filepath.Join(h.workdir, nexDir, name), nil
}

// cached returns the path of uri's content in the nexlet's cache, fetching it when it is
// not there. An object store object found in the cache is still asked after, with the
// workload's credentials: it may have been removed (nex workload bundle rm), and this
// workload may not be allowed to read it.
func (h *handle) cached(ctx context.Context, uri, digest string) (*os.File, error) {
	cacheDir := filepath.Join(h.d.opts.DataDir, "cache")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, err
	}
	if digest != "" {
		p := filepath.Join(cacheDir, digest)
		if f, err := os.Open(p); err == nil { // open: a prune may remove the name, not the file
			if err := h.stillThere(ctx, uri); err != nil {
				f.Close()
				return nil, err
			}
			now := time.Now()
			_ = os.Chtimes(p, now, now) // recently used: pruned last
			return f, nil
		}
	}
	p, err := h.download(ctx, cacheDir, uri, digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err == nil {
		h.d.pruneCache(cacheDir, p)
	}
	return f, err
}

// DefaultCacheMaxBytes bounds the artifact cache when Options.CacheMaxBytes is 0.
const DefaultCacheMaxBytes = 1 << 30

func (d *Driver) cacheMax() int64 {
	if d.opts.CacheMaxBytes > 0 {
		return d.opts.CacheMaxBytes
	}
	return DefaultCacheMaxBytes
}

// pruneCache removes the least recently used cached artifacts (not keep) until the cache
// holds at most cacheMax bytes: a tenant's downloads cannot fill the node's disk.
func (d *Driver) pruneCache(dir, keep string) {
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
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
	sort.Slice(files, func(i, j int) bool { return files[i].used.Before(files[j].used) })
	for _, f := range files {
		if total <= d.cacheMax() {
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
// returns the cache path (named by the content's digest).
func (h *handle) download(ctx context.Context, cacheDir, uri, want string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	r, err := h.open(ctx, uri)
	if err != nil {
		return "", err
	}
	defer r.Close()
	tmp, err := os.CreateTemp(cacheDir, "fetch-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	max := h.d.cacheMax()
	n, err := io.Copy(io.MultiWriter(tmp, sum), io.LimitReader(r, max+1))
	if err != nil {
		tmp.Close()
		return "", fmt.Errorf("fetch: %w", err)
	}
	if n > max {
		tmp.Close()
		return "", fmt.Errorf("fetch: larger than this nexlet's artifact cache of %s (nexlet-native --cache-max-bytes)", v1.ByteSize(max))
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	got := hex.EncodeToString(sum.Sum(nil))
	if want != "" && got != want {
		return "", fmt.Errorf("sha256 mismatch: want %s, got %s", want, got)
	}
	p := filepath.Join(cacheDir, got)
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", err
	}
	return p, nil
}

// open opens an http(s):// or nats:// source.
func (h *handle) open(ctx context.Context, uri string) (io.ReadCloser, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadURI, uri, err)
	}
	switch u.Scheme {
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode/100 != 2 {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: %s", uri, resp.Status)
		}
		return resp.Body, nil
	case "nats":
		store, done, err := h.objectStore(ctx, u)
		if err != nil {
			return nil, err
		}
		r, err := store.Get(ctx, strings.TrimPrefix(u.Path, "/"))
		if err != nil {
			done()
			return nil, fmt.Errorf("object %s: %w", strings.TrimPrefix(u.Path, "/"), err)
		}
		return readCloser{r, func() error { err := r.Close(); done(); return err }}, nil
	}
	return nil, fmt.Errorf("%w %q: scheme %q is not one of file, http, https, nats", ErrBadURI, uri, u.Scheme)
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// objectStore opens the bucket of a nats:// uri with the workload's own credentials when
// it has them (the nexlet's connection in development mode, where nothing is isolated);
// done closes what it opened.
func (h *handle) objectStore(ctx context.Context, u *url.URL) (jetstream.ObjectStore, func(), error) {
	bucket, object := u.Host, strings.TrimPrefix(u.Path, "/")
	if bucket == "" || object == "" {
		return nil, nil, fmt.Errorf("%w %q: want nats://bucket/object", ErrBadURI, u)
	}
	nc, done := h.d.opts.Conn, func() {}
	denied := make(chan error, 1)
	if h.creds != "" {
		own, err := nats.Connect(h.d.opts.NATSURL, h.credsOption(), nats.Name("nex fetch "+h.id),
			nats.CustomInboxPrefix(creds.InboxPrefix(h.def.Namespace)),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				// a request the server refuses is never answered: hear the refusal instead
				if errors.Is(err, nats.ErrPermissionViolation) {
					select {
					case denied <- err:
					default:
					}
				}
			}))
		if err != nil {
			return nil, nil, fmt.Errorf("connect with the workload's credentials: %w", err)
		}
		nc, done = own, own.Close
	}
	js, err := jetstream.New(nc)
	if err != nil {
		done()
		return nil, nil, err
	}
	type result struct {
		store jetstream.ObjectStore
		err   error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan result, 1)
	go func() {
		store, err := js.ObjectStore(ctx, bucket)
		got <- result{store, err}
	}()
	var r result
	select {
	case r = <-got:
	case err := <-denied:
		r.err = err
	}
	if r.err != nil {
		done()
		if errors.Is(r.err, nats.ErrPermissionViolation) {
			return nil, nil, fmt.Errorf("object store %s: namespace %s may not read it (a namespace reads its own bucket, %s): %w", bucket, h.def.Namespace, v1.BundleBucket(h.def.Namespace), r.err)
		}
		return nil, nil, fmt.Errorf("object store %s: %w", bucket, r.err)
	}
	return r.store, done, nil
}

// stillThere checks that a nats:// object exists and that this workload may read it (its
// metadata, not its content); other schemes are taken from the cache as they are.
func (h *handle) stillThere(ctx context.Context, uri string) error {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "nats" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	store, done, err := h.objectStore(ctx, u)
	if err != nil {
		return err
	}
	defer done()
	if _, err := store.GetInfo(ctx, strings.TrimPrefix(u.Path, "/")); err != nil {
		return fmt.Errorf("object %s: %w", strings.TrimPrefix(u.Path, "/"), err)
	}
	return nil
}
