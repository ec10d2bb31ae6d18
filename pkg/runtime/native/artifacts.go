package native

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fetchTimeout bounds the download of one artifact.
const fetchTimeout = 2 * time.Minute

// fetchArtifacts places every artifact in the workdir, and the executable too when the
// uri is nats://; it returns the path of the executable to run.
func (d *Driver) fetchArtifacts(ctx context.Context, workdir string, sr *parsed) error {
	for i, a := range sr.Artifacts {
		dest := a.Path
		if dest == "" {
			dest = baseName(a.URI)
		}
		mode := os.FileMode(0o644)
		if a.Mode != "" {
			m, err := strconv.ParseUint(a.Mode, 8, 32)
			if err != nil {
				return fmt.Errorf("artifacts[%d].mode %q: %w", i, a.Mode, err)
			}
			mode = os.FileMode(m)
		}
		if err := d.place(ctx, workdir, dest, a.URI, a.SHA256, mode); err != nil {
			return fmt.Errorf("artifacts[%d] %s: %w", i, a.URI, err)
		}
	}
	if sr.remoteExec != "" {
		dest := filepath.Join(".nex", baseName(sr.remoteExec))
		if err := d.place(ctx, workdir, dest, sr.remoteExec, sr.SHA256, 0o755); err != nil {
			return fmt.Errorf("uri %s: %w", sr.remoteExec, err)
		}
		sr.path = filepath.Join(workdir, dest)
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

// place fetches uri (or takes it from the cache by digest) into workdir/dest.
func (d *Driver) place(ctx context.Context, workdir, dest, uri, digest string, mode os.FileMode) error {
	if filepath.IsAbs(dest) || !filepath.IsLocal(dest) {
		return fmt.Errorf("path %q must be relative and stay inside the workdir", dest)
	}
	cacheDir := filepath.Join(d.opts.DataDir, "cache")
	if err := os.MkdirAll(cacheDir, 0o750); err != nil {
		return err
	}
	cached := ""
	if digest != "" {
		p := filepath.Join(cacheDir, digest)
		if _, err := os.Stat(p); err == nil {
			cached = p
			// the content is here, but an object store object that was removed (nex
			// workload bundle rm) is gone for every node: ask, cheaply, that it is still there
			if err := d.stillThere(ctx, uri); err != nil {
				return err
			}
		}
	}
	if cached == "" {
		p, err := d.download(ctx, cacheDir, uri, digest)
		if err != nil {
			return err
		}
		cached = p
	}
	target := filepath.Join(workdir, dest)
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return err
	}
	return copyFile(cached, target, mode)
}

// download fetches uri into the cache, checks the digest when one is given, and
// returns the cache path (named by the content's digest).
func (d *Driver) download(ctx context.Context, cacheDir, uri, want string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	r, err := d.open(ctx, uri)
	if err != nil {
		return "", err
	}
	defer r.Close()
	tmp, err := os.CreateTemp(cacheDir, "fetch-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		tmp.Close()
		return "", fmt.Errorf("fetch: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return "", fmt.Errorf("sha256 mismatch: want %s, got %s", want, got)
	}
	p := filepath.Join(cacheDir, got)
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", err
	}
	return p, nil
}

func (d *Driver) open(ctx context.Context, uri string) (io.ReadCloser, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadURI, uri, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("%w %q: want file:///absolute/path", ErrBadURI, uri)
		}
		return os.Open(u.Path)
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
		bucket, object := u.Host, strings.TrimPrefix(u.Path, "/")
		if bucket == "" || object == "" {
			return nil, fmt.Errorf("%w %q: want nats://bucket/object", ErrBadURI, uri)
		}
		js, err := jetstream.New(d.opts.Conn)
		if err != nil {
			return nil, err
		}
		store, err := js.ObjectStore(ctx, bucket)
		if err != nil {
			return nil, fmt.Errorf("object store %s: %w", bucket, err)
		}
		return store.Get(ctx, object)
	}
	return nil, fmt.Errorf("%w %q: scheme %q is not one of file, http, https, nats", ErrBadURI, uri, u.Scheme)
}

// stillThere checks that a nats:// object exists (its metadata, not its content); other
// schemes are taken from the cache as they are.
func (d *Driver) stillThere(ctx context.Context, uri string) error {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "nats" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	js, err := jetstream.New(d.opts.Conn)
	if err != nil {
		return err
	}
	store, err := js.ObjectStore(ctx, u.Host)
	if err != nil {
		return fmt.Errorf("object store %s: %w", u.Host, err)
	}
	if _, err := store.GetInfo(ctx, strings.TrimPrefix(u.Path, "/")); err != nil {
		return fmt.Errorf("object %s: %w", strings.TrimPrefix(u.Path, "/"), err)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
