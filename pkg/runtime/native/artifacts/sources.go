package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	v1 "github.com/nexrun/nex/pkg/api/v1"
	"github.com/nexrun/nex/pkg/creds"
	"github.com/nexrun/nex/pkg/runtime/native/asuser"
)

// open opens an http(s):// or nats:// source.
func (f *Fetch) open(ctx context.Context, uri string) (io.ReadCloser, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, badURI(err)
	}
	switch u.Scheme {
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
		if err != nil {
			return nil, err
		}
		resp, err := f.httpClient().Do(req)
		if err != nil {
			var ue *url.Error // its URL hides a password only
			if errors.As(err, &ue) {
				ue.URL = Redacted(ue.URL)
			}
			return nil, err
		}
		if resp.StatusCode/100 != 2 {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: %s", redactURL(u), resp.Status)
		}
		return resp.Body, nil
	case "nats":
		store, done, err := f.objectStore(ctx, u)
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
	return nil, fmt.Errorf("%w %q: scheme %q is not one of file, http, https, nats", ErrBadURI, redactURL(u), u.Scheme)
}

// httpClient fetches for the workload: every connection, redirects' and a proxy's too, is
// made by the workload's own user (dial), and none is kept for another fetch.
func (f *Fetch) httpClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = f.dial
	t.DisableKeepAlives = true
	return &http.Client{Transport: t}
}

// dial connects to addr with a socket the workload's user made (its file's credentials,
// which a firewall's owner match reads, are the user's): a tenant's fetch reaches only
// what the tenant's own processes may (an operator's rule for the workload UIDs that
// keeps them from a cloud's metadata endpoint holds for its fetches too). The name is
// looked up by the nexlet, and each address dialled in turn.
func (f *Fetch) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second} // an address that never answers leaves time for the next
	if f.Identity == nil {
		return d.DialContext(ctx, network, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ip := range ips {
		conn, err := asuser.Dial(ctx, f.Identity, &d, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// objectStore opens the bucket of a nats:// uri with the workload's own credentials when
// it has them (the nexlet's connection in development mode, where nothing is isolated);
// done closes what it opened.
func (f *Fetch) objectStore(ctx context.Context, u *url.URL) (jetstream.ObjectStore, func(), error) {
	bucket, object := u.Host, strings.TrimPrefix(u.Path, "/")
	if bucket == "" || object == "" {
		return nil, nil, fmt.Errorf("%w %q: want nats://bucket/object", ErrBadURI, redactURL(u))
	}
	nc, done := f.Conn, func() {}
	denied := make(chan error, 1)
	if f.Creds != nil {
		own, err := nats.Connect(f.NATSURL, f.Creds, nats.Name("nex fetch "+f.ID),
			nats.CustomInboxPrefix(creds.InboxPrefix(f.Namespace)),
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
			return nil, nil, fmt.Errorf("object store %s: namespace %s may not read it (a namespace reads its own bucket, %s): %w", bucket, f.Namespace, v1.BundleBucket(f.Namespace), r.err)
		}
		return nil, nil, fmt.Errorf("object store %s: %w", bucket, r.err)
	}
	return r.store, done, nil
}

// stillThere checks that a nats:// object exists and that this workload may read it (its
// metadata, not its content); other schemes are taken from the cache as they are.
func (f *Fetch) stillThere(ctx context.Context, uri string) error {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "nats" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	store, done, err := f.objectStore(ctx, u)
	if err != nil {
		return err
	}
	defer done()
	if _, err := store.GetInfo(ctx, strings.TrimPrefix(u.Path, "/")); err != nil {
		return fmt.Errorf("object %s: %w", strings.TrimPrefix(u.Path, "/"), err)
	}
	return nil
}
