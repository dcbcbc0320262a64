package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// sessionCookie holds a value derived from SCOUT_WEB_TOKEN (never the
// token itself), set by the login form so that a browser, whose
// EventSource cannot send an Authorization header, stays signed in.
const sessionCookie = "scout_session"

// auth decides whether a request comes from the platform team: a bearer
// token, the session cookie derived from it, or a user name in the auth
// proxy's header from a trusted proxy address.
type auth struct {
	open    bool   // scout dev: everyone
	token   Secret // "" : no token
	session string // hex HMAC-SHA256(token, "scout-web session v1")
	header  string // "" : no proxy header
	proxies []netip.Prefix
}

func newAuth(cfg Config, open bool) (*auth, error) {
	proxies, err := parseCIDRs(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	a := &auth{open: open, token: cfg.Token, header: cfg.AuthHeader, proxies: proxies}
	if cfg.Token != "" {
		m := hmac.New(sha256.New, []byte(cfg.Token.Reveal()))
		m.Write([]byte("scout-web session v1"))
		a.session = hex.EncodeToString(m.Sum(nil))
	}
	return a, nil
}

// user returns who r is ("token", the proxy's user name, "dev") and
// whether r is admitted.
func (a *auth) user(r *http.Request) (string, bool) {
	if a.open {
		return "dev", true
	}
	if a.token != "" {
		if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(strings.TrimSpace(t), a.token.Reveal()) {
			return "token", true
		}
		if c, err := r.Cookie(sessionCookie); err == nil && equal(c.Value, a.session) {
			return "token", true
		}
	}
	if a.header != "" {
		if u := strings.TrimSpace(r.Header.Get(a.header)); u != "" && a.trusted(r.RemoteAddr) {
			return u, true
		}
	}
	return "", false
}

// trusted reports whether remoteAddr (host:port) is in SCOUT_WEB_TRUSTED_PROXIES.
func (a *auth) trusted(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range a.proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// login checks a token typed into the login form and returns the session
// cookie's value.
func (a *auth) login(token string) (string, bool) {
	if a.token == "" || !equal(strings.TrimSpace(token), a.token.Reveal()) {
		return "", false
	}
	return a.session, true
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
