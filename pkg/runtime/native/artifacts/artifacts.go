// Package artifacts owns the native runtime's artifacts: it places the files a start
// request names in the workload's workdir, as the workload's own user, and keeps what it
// fetches over http(s) and nats:// in the nexlet's cache (Cache, with its own lock), named
// by digest and pruned least recently used first.
package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nexrun/nex/internal/sandbox"
	"github.com/nexrun/nex/pkg/runtime/native/asuser"
	"golang.org/x/sys/unix"
)

// Artifact is a file fetched into the workdir before start.
type Artifact struct {
	URI    string `json:"uri"`
	SHA256 string `json:"sha256,omitempty"`
	Path   string `json:"path,omitempty"`
	Mode   string `json:"mode,omitempty"`
}

// ErrBadURI is returned for a uri that is not one of file, http, https and nats.
var ErrBadURI = errors.New("invalid uri")

// Fetch is the fetch of one workload's artifacts, with what it needs of the workload.
type Fetch struct {
	Cache     *Cache
	ID        string // the workload's
	Namespace string
	Workdir   string
	Identity  *asuser.Identity // the workload's user; nil: the nexlet's own
	Sandboxed bool             // the nexlet runs the workload's user in a sandbox of its own
	Conn      *nats.Conn       // the nexlet's connection
	NATSURL   string
	Creds     nats.Option // the workload's own credentials; nil: fetch through Conn
	// PlaceExecutable writes the executable of a nats:// uri, named name, where the
	// workload may run it but not replace it, and returns its path.
	PlaceExecutable func(name string, src io.Reader) (string, error)
}

// digestRE is a SHA-256 digest as the start request gives it, and the cache names files.
var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// All places every artifact of arts in the workdir as the workload's own user, and the
// executable too when remoteExec is a nats:// uri (of digest, when given), in .nex, where
// the workload may run it but not replace it (PlaceExecutable); it returns its path then.
//
// A file:// artifact is read as the workload's user, so it is something that user could
// read anyway (never /etc/shadow or the node's keys), and is never cached. http(s) and
// nats:// content is fetched into the nexlet's cache, named by its digest; a nats://
// object is fetched, and its presence checked at every use, with the workload's own
// credentials, so a namespace reads only the object stores it may read.
func (f *Fetch) All(ctx context.Context, arts []Artifact, remoteExec, digest string) (string, error) {
	for i, a := range arts {
		dest := a.Path
		if dest == "" {
			dest = baseName(a.URI)
		}
		if filepath.IsAbs(dest) || !filepath.IsLocal(dest) || filepath.Clean(dest) == "." {
			return "", fmt.Errorf("artifacts[%d].path %q must be relative and stay inside the workdir", i, dest)
		}
		mode := os.FileMode(0o644)
		if a.Mode != "" {
			m, err := strconv.ParseUint(a.Mode, 8, 32)
			if err != nil || m&^0o777 != 0 {
				return "", fmt.Errorf("artifacts[%d].mode %q: want permission bits in octal, at most 0777 (no setuid, setgid or sticky bit)", i, a.Mode)
			}
			mode = os.FileMode(m)
		}
		if err := f.place(ctx, dest, a.URI, a.SHA256, mode); err != nil {
			return "", fmt.Errorf("artifacts[%d] %s: %w", i, Redacted(a.URI), err)
		}
	}
	if remoteExec != "" {
		p, err := f.placeExecutable(ctx, remoteExec, digest)
		if err != nil {
			return "", fmt.Errorf("uri %s: %w", Redacted(remoteExec), err)
		}
		return p, nil
	}
	return "", nil
}

// Redacted is uri for messages and logs, its user information and its query shown as
// xxxxx: a start's errors are logged by the node, and an artifact's password was there
// for whoever read the log (a review); a token is often the user name alone
// (https://TOKEN@host/...), and a presigned URL's signature is in its query.
func Redacted(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(a URI that does not parse)"
	}
	return redactURL(u)
}

func redactURL(u *url.URL) string {
	r := *u
	if r.User != nil {
		r.User = url.User("xxxxx")
	}
	if r.RawQuery != "" || r.ForceQuery {
		r.RawQuery = "xxxxx"
	}
	r.Fragment, r.RawFragment = "", ""
	return r.String()
}

// badURI says why a URI does not parse, without the URI (url.Parse's error holds it,
// password and all).
func badURI(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%w: it does not parse: %v", ErrBadURI, err)
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
func (f *Fetch) place(ctx context.Context, dest, uri, digest string, mode os.FileMode) error {
	if digest != "" && !digestRE.MatchString(digest) {
		return fmt.Errorf("sha256 %q: want 64 lower-case hex digits", digest)
	}
	target := filepath.Join(f.Workdir, dest)
	u, err := url.Parse(uri)
	if err != nil {
		return badURI(err)
	}
	if u.Scheme == "file" {
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return fmt.Errorf("%w %q: want file:///absolute/path", ErrBadURI, redactURL(u))
		}
		return asuser.Do(f.Identity, func() error {
			// non-blocking: a FIFO must not hold the start (and a thread) forever
			src, err := asuser.OpenNoProcLinks(u.Path, unix.O_RDONLY|unix.O_NONBLOCK)
			if errors.Is(err, asuser.ErrThroughProc) {
				return err
			}
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
			if why := f.outOfView(real); why != "" {
				return fmt.Errorf("%s (%s) is refused: %s", u.Path, real, why)
			}
			return writeAs(target, src, mode, digest)
		})
	}
	src, err := f.cached(ctx, uri, digest) // the nexlet's own file
	if err != nil {
		return err
	}
	defer src.Close()
	return asuser.Do(f.Identity, func() error { return writeAs(target, src, mode, "") })
}

// outOfView says why a file at the real path real may not be an artifact of this
// workload: /proc is the nexlet's view of processes (its own /proc/self included), and a
// sandboxed workload's private directories are not the host's.
func (f *Fetch) outOfView(real string) string {
	if real == "/proc" || strings.HasPrefix(real, "/proc/") {
		return "files under /proc are the nexlet's view of processes, not the workload's"
	}
	if f.Sandboxed && f.Identity != nil {
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

// placeExecutable fetches the executable of a nats:// uri (through the cache) and hands
// it to PlaceExecutable.
func (f *Fetch) placeExecutable(ctx context.Context, uri, digest string) (string, error) {
	if digest != "" && !digestRE.MatchString(digest) {
		return "", fmt.Errorf("sha256 %q: want 64 lower-case hex digits", digest)
	}
	src, err := f.cached(ctx, uri, digest)
	if err != nil {
		return "", err
	}
	defer src.Close()
	return f.PlaceExecutable(baseName(uri), src)
}
