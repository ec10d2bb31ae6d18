package artifacts

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/nexrun/nex/internal/testutil"
	"github.com/nexrun/nex/pkg/runtime/native/asuser"
)

// An http(s) artifact is fetched through a socket of the workload's own user: the root
// nexlet fetched it through one of its own, so a tenant reached what only root may (a
// firewall rule that keeps the workload UIDs from a cloud's metadata endpoint, say).
// Redirects are followed as the user too. The server stands in for such an endpoint and
// says whose the connecting socket is.
func TestHTTPFetchedAsTheWorkloadsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fetching as another user needs root")
	}
	owners := make(chan int, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		owners <- testutil.RequestOwner(r)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/meta", http.StatusFound)
			return
		}
		fmt.Fprint(w, "secret")
	}))
	defer srv.Close()
	f := &Fetch{Identity: &asuser.Identity{UID: 65534, GID: 65534}}
	for _, path := range []string{"/meta", "/redirect"} {
		r, err := f.open(context.Background(), srv.URL+path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r)
		r.Close()
		if string(body) != "secret" {
			t.Fatalf("%s: %q", path, body)
		}
	}
	close(owners)
	n := 0
	for uid := range owners {
		n++
		if uid != 65534 {
			t.Errorf("connection %d came from a socket of UID %d, want the workload's 65534", n, uid)
		}
	}
	if n != 3 {
		t.Fatalf("%d connections, want 3 (one, then a redirect and its target)", n)
	}
}

// An artifact's password is not in what a failed fetch says: the node logs a start's
// error, and b's artifact password was in the node's log for whoever read it (a review).
func TestFetchErrorsHideThePassword(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	f := &Fetch{Cache: NewCache(t.TempDir(), 1<<20), Workdir: t.TempDir(), Namespace: "b"}
	for _, uri := range []string{
		"http://deploy:hunter2@" + srv.Listener.Addr().String() + "/app.tar", // 404
		"http://deploy:hunter2@127.0.0.1:1/app.tar",                          // refused
		"ftp://deploy:hunter2@example.com/app.tar",                           // no such scheme
		"http://deploy:hunter2@[::1/app.tar",                                 // does not parse
		"file://deploy:hunter2@host/app.tar",                                 // a file:// with a host
		"http://hunter2@127.0.0.1:1/app.tar",                                 // a token as the user
		"http://127.0.0.1:1/app.tar?X-Amz-Signature=hunter2",                 // a presigned URL
		"http://" + srv.Listener.Addr().String() + "/app.tar?sig=hunter2",    // 404
	} {
		_, err := f.All(context.Background(), []Artifact{{URI: uri}}, "", "")
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v", uri, err)
		}
		_, err = f.All(context.Background(), nil, uri, "")
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the executable %s: %v", uri, err)
		}
	}
}
