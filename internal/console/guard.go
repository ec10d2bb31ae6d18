package console

import (
	"crypto/subtle"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// TokenHeader carries the session token on every state-changing request.
const TokenHeader = "X-Nex-Token"

// KeyHeader carries the session key on every request of the API (an event stream, which
// a browser opens without headers, gives it as the query's key).
const KeyHeader = "X-Nex-Key"

// contentSecurityPolicy lets the page load its own script and style and talk to its own
// server, nothing else: no inline script, no frames, no plugins, no form posts.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// secureHeaders are set on every response, errors included.
func secureHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// guard wraps the console's handler with its checks, in this order: the Host header
// must name the address the server listens on (a page of another site whose name was
// rebound to 127.0.0.1 sends its own name); a state-changing request must come from the
// console's own origin, and a read not from another site; a request of the API must carry
// the session key (from the URL nex ui printed); a state-changing request must carry the
// session token too.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w.Header())
		if !s.hosts[strings.ToLower(r.Host)] {
			refuse(w, http.StatusMisdirectedRequest, "host_refused", "Host "+strconv.Quote(r.Host)+" is not the address this console listens on")
			return
		}
		if !s.sameOrigin(w, r) || !s.admitted(w, r) {
			return
		}
		if r.Method == http.MethodPost && !equal(r.Header.Get(TokenHeader), s.token) {
			refuse(w, http.StatusForbidden, "bad_token", "the session token is missing or wrong: reload the page")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin refuses what another site's page sent: a state-changing request whose
// Origin is not the console's own, a read of the API the browser says came from elsewhere.
func (s *Server) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if site := r.Header.Get("Sec-Fetch-Site"); strings.HasPrefix(r.URL.Path, "/api/") && site != "" && site != "same-origin" && site != "none" {
			refuse(w, http.StatusForbidden, "cross_origin", "a read from another site ("+site+") is refused")
			return false
		}
	case http.MethodPost:
		if origin := r.Header.Get("Origin"); origin != "http://"+r.Host {
			refuse(w, http.StatusForbidden, "cross_origin", "a request from origin "+strconv.Quote(origin)+" is refused: only the console's own page may change anything")
			return false
		}
	default:
		refuse(w, http.StatusMethodNotAllowed, "bad_request", "method "+r.Method+" is not allowed")
		return false
	}
	return true
}

// admitted checks the session key on every request of the API: the page and its script
// hold nothing of the cluster's and are served to anyone; what they show comes from the
// API, whose requests the page sends with the key it was given in the URL's fragment
// (never sent to a server) and keeps in its origin's storage. It was a cookie: browsers
// send a host's cookies to every port of it, so a page of any local listener the
// operator's browser opened got the key, then the page and its token, and drove the
// system console (a review stopped b's service so). Without the key, another user of this
// machine who finds the port cannot use the console (and the credentials behind it).
func (s *Server) admitted(w http.ResponseWriter, r *http.Request) bool {
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		return true
	}
	k := r.Header.Get(KeyHeader)
	if k == "" && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/live/") {
		k = r.URL.Query().Get("key") // an EventSource sends no header of its own
	}
	if !equal(k, s.key) {
		refuse(w, http.StatusUnauthorized, "bad_key", "open the URL `nex ui` printed (it holds the console's key)")
		return false
	}
	return true
}

func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// URLHost is the host:port a URL of a console listening on addr names: addr itself, or
// for an unspecified address (0.0.0.0, ::) the machine's host name, which other machines
// may reach and the console accepts (a newcomer's walk: --listen 0.0.0.0:8078 printed
// http://[::]:8078/..., of no use anywhere).
func URLHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsUnspecified() {
		return addr
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		return net.JoinHostPort(strings.ToLower(name), port)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// allowedHosts are the Host values a request to a server listening on addr may carry:
// addr itself and, on a loopback or unspecified address, localhost; on an unspecified
// address also each address of this machine and its host name.
func allowedHosts(addr string) (map[string]bool, string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", err
	}
	hosts := map[string]bool{strings.ToLower(net.JoinHostPort(host, port)): true}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
		hosts["localhost:"+port] = true
	}
	if ip != nil && ip.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					hosts[strings.ToLower(net.JoinHostPort(n.IP.String(), port))] = true
				}
			}
		}
		if name, err := os.Hostname(); err == nil {
			hosts[strings.ToLower(name)+":"+port] = true
		}
	}
	return hosts, port, nil
}

// IsLoopback says whether addr (host:port) listens on loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
