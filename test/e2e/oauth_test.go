//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/imapwatch"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/submit"
)

// The OAuth side of the stack: Dovecot's oauth2 passdb asks
// http://127.0.0.1:$SCOUT_OAUTH_INTROSPECTION_PORT/introspect (see
// scripts/mailstack.sh), which the identity provider below serves.
var (
	oauthAddr  = "127.0.0.1:" + envOr("SCOUT_OAUTH_INTROSPECTION_PORT", "8089")
	oauthUser  = "imapscout" // the Dovecot user of imapBox
	appID      = "5f0c3b1e-e2e0-4c1d-9a7e-0a0a0a0a0a0a"
	appSecret  = "e2e~client.secret"
	revokedMsg = "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '" + appID + "'. Trace ID: 7d2b Correlation ID: 0c4e Timestamp: 2026-12-05 08:00:00Z"
)

// idp is an identity provider on loopback: a client credentials token
// endpoint (RFC 6749 section 4.4, as the Microsoft identity platform
// answers it) issuing short-lived opaque tokens for oauthUser's mailbox,
// and the introspection endpoint (RFC 7662) that Dovecot asks about them.
type idp struct {
	life time.Duration

	mu         sync.Mutex
	secret     string               // the client secret accepted now
	expiry     map[string]time.Time // issued token -> expiry
	issued     []string
	active     []string // tokens Dovecot asked about while valid, in order
	expiredUse int      // tokens Dovecot asked about after their expiry
}

func startIDP(t *testing.T, life time.Duration) *idp {
	t.Helper()
	p := &idp{life: life, secret: appSecret, expiry: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /tenant/oauth2/v2.0/token", p.token)
	mux.HandleFunc("POST /introspect", p.introspect)
	l, err := net.Listen("tcp", oauthAddr)
	if err != nil {
		t.Fatalf("identity provider on %s (Dovecot's introspection_url): %v", oauthAddr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

func (p *idp) tokenURL() string { return "http://" + oauthAddr + "/tenant/oauth2/v2.0/token" }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (p *idp) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := r.PostForm
	switch {
	case f.Get("grant_type") != "client_credentials":
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
	case f.Get("scope") != mailauth.MicrosoftScope:
		writeJSON(w, 400, map[string]string{"error": "invalid_scope", "error_description": "AADSTS70011: The provided value for the input parameter 'scope' is not valid."})
	case f.Get("client_id") != appID || f.Get("client_secret") != p.secret:
		writeJSON(w, 401, map[string]any{"error": "invalid_client", "error_description": revokedMsg, "error_codes": []int{7000215}})
	default:
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		tok := "e2e." + hex.EncodeToString(b)
		p.expiry[tok] = time.Now().Add(p.life)
		p.issued = append(p.issued, tok)
		writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": int(p.life / time.Second),
			"ext_expires_in": int(p.life / time.Second), "access_token": tok})
	}
}

// introspect answers Dovecot (introspection_mode = post: token=...).
func (p *idp) introspect(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	tok := r.PostForm.Get("token")
	p.mu.Lock()
	defer p.mu.Unlock()
	exp, ok := p.expiry[tok]
	switch {
	case !ok:
		writeJSON(w, 200, map[string]any{"active": false})
	case time.Now().After(exp):
		p.expiredUse++
		writeJSON(w, 200, map[string]any{"active": false})
	default:
		p.active = append(p.active, tok)
		writeJSON(w, 200, map[string]any{"active": true, "username": oauthUser, "client_id": appID,
			"token_type": "Bearer", "exp": exp.Unix()})
	}
}

func (p *idp) revoke() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.secret = "rotated-by-the-admin"
}

// logins returns the distinct valid tokens Dovecot checked, in order, and
// how often it was shown an expired one.
func (p *idp) logins() ([]string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, t := range p.active {
		if len(out) == 0 || out[len(out)-1] != t {
			out = append(out, t)
		}
	}
	return out, p.expiredUse
}

// marked is an imapwatch handler that deletes the messages whose subject
// starts with prefix and reports their subjects; it keeps the rest.
type marked struct {
	prefix string
	got    chan string
}

func (m *marked) Want(msg *imapwatch.Message) bool {
	return strings.Contains(string(msg.Header), "\r\nSubject: "+m.prefix)
}

func (m *marked) Handle(_ context.Context, msg *imapwatch.Message, _ []byte) imapwatch.Action {
	for _, l := range strings.Split(string(msg.Header), "\r\n") {
		if s, ok := strings.CutPrefix(l, "Subject: "); ok {
			m.got <- s
		}
	}
	return imapwatch.Delete
}

func (m *marked) wait(ctx context.Context, t *testing.T, subject string) {
	t.Helper()
	for {
		select {
		case s := <-m.got:
			if s == subject {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no message %q through IMAP", subject)
		}
	}
}

func mailTo(subject string) []byte {
	return []byte("From: friend@example.org\r\nTo: " + imapBox + "\r\nSubject: " + subject + "\r\n\r\nhi\r\n")
}

func oauthConfig(p *idp, mech string) mailauth.Config {
	return mailauth.Config{Provider: mailauth.ProviderMicrosoft, TokenURL: p.tokenURL(), ClientID: appID,
		ClientSecret: mailauth.Secret(appSecret), Mechanism: mech}
}

func watchWith(t *testing.T, e *env, login imapwatch.Authenticator, renew time.Duration, h imapwatch.Handler) (*imapwatch.Watcher, <-chan error) {
	t.Helper()
	tc := tlsFor(e.cas)
	tc.ServerName = "127.0.0.1"
	w, err := imapwatch.New(imapwatch.Config{Addr: imapAddr, TLS: imapwatch.TLSStartTLS, TLSConfig: tc,
		Username: oauthUser, Auth: login, RenewBeforeExpiry: renew, MinBackoff: 200 * time.Millisecond},
		h, nil, slog.New(slog.NewTextHandler(tWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(e.ctx) }()
	return w, done
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestOAuthIMAPAgainstDovecot: imapwatch logs in to Dovecot with a token
// from the client credentials endpoint, through mailauth, with XOAUTH2
// and with OAUTHBEARER, and sees a message Postfix delivered.
func TestOAuthIMAPAgainstDovecot(t *testing.T) {
	e := setup(t)
	p := startIDP(t, time.Hour)
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			login, err := mailauth.New(oauthConfig(p, mech), oauthUser, mailauth.Options{})
			if err != nil {
				t.Fatal(err)
			}
			h := &marked{prefix: "oauth-" + mech, got: make(chan string, 10)}
			ee := *e
			ee.ctx = ctx
			w, done := watchWith(t, &ee, login, 0, h)
			subject := fmt.Sprintf("oauth-%s %d", mech, time.Now().UnixNano())
			e.submit(imapBox, mailTo(subject))
			h.wait(ctx, t, subject)
			if err := w.Status(); err != nil {
				t.Errorf("Status = %v", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
			tokens, _ := p.logins()
			if len(tokens) == 0 {
				t.Error("Dovecot never introspected a token: the login did not go through the oauth2 passdb")
			}
		})
	}
	if b := dovecotLog(t); !strings.Contains(b, "method=XOAUTH2") || !strings.Contains(b, "method=OAUTHBEARER") {
		t.Errorf("dovecot.log shows no XOAUTH2 and OAUTHBEARER logins")
	}

	// A token Dovecot's introspection calls inactive: Dovecot's refusal,
	// named and permanent.
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		unknown, err := mailauth.New(mailauth.Config{Provider: mailauth.ProviderStatic, AccessToken: "e2e.unknown", Mechanism: mech},
			oauthUser, mailauth.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, done := watchWith(t, e, unknown, 0, &marked{prefix: "never", got: make(chan string, 1)})
		err = <-done
		t.Logf("%s, unknown token: Run = %v", mech, err)
		if !errors.Is(err, imapwatch.ErrRejected) || !fault.MarkedPermanent(err) ||
			!strings.Contains(err.Error(), "NO [AUTHENTICATIONFAILED]") || !strings.Contains(err.Error(), strings.ToUpper(mech)+` refused: status "`) {
			t.Errorf("%s, unknown token: Run = %v (%v), want a permanent rejection naming NO [AUTHENTICATIONFAILED] and the challenge", mech, err, fault.Of(err))
		}
	}
}

// TestOAuthTokenExpiresMidRun: 20 s tokens; the watcher renews its session
// 3 s before its token expires, the next session logs in with a fresh
// token (never an expired one), and a message delivered around the switch
// is handled.
func TestOAuthTokenExpiresMidRun(t *testing.T) {
	e := setup(t)
	p := startIDP(t, 20*time.Second)
	login, err := mailauth.New(oauthConfig(p, mailauth.XOAuth2), oauthUser, mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &marked{prefix: "expiry", got: make(chan string, 10)}
	t0 := time.Now()
	_, done := watchWith(t, e, login, 3*time.Second, h)
	first := fmt.Sprintf("expiry first %d", t0.UnixNano())
	e.submit(imapBox, mailTo(first))
	h.wait(e.ctx, t, first)
	// The first session's token expires at about t0+20s; the session ends
	// at about t0+17s. Deliver just before.
	time.Sleep(time.Until(t0.Add(16500 * time.Millisecond)))
	meanwhile := fmt.Sprintf("expiry meanwhile %d", t0.UnixNano())
	e.submit(imapBox, mailTo(meanwhile))
	h.wait(e.ctx, t, meanwhile)
	for {
		tokens, expired := p.logins()
		if expired > 0 {
			t.Fatalf("Dovecot was shown an expired token %d times", expired)
		}
		if len(tokens) >= 2 {
			t.Logf("logins with %d distinct tokens in %v", len(tokens), time.Since(t0).Round(time.Millisecond))
			break
		}
		select {
		case <-e.ctx.Done():
			t.Fatalf("logins with tokens %v: no second login with a fresh token", tokens)
		case <-time.After(100 * time.Millisecond):
		}
	}
	after := fmt.Sprintf("expiry after %d", t0.UnixNano())
	e.submit(imapBox, mailTo(after))
	h.wait(e.ctx, t, after)
	if _, expired := p.logins(); expired > 0 {
		t.Errorf("Dovecot was shown an expired token %d times", expired)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	default:
	}
}

// TestOAuthSessionDroppedAfterExpiry: as Exchange Online does, the server
// drops the session once its token expired (here doveadm kick, 1 s after
// a 10 s token's expiry); the watcher reconnects with a fresh token, never
// the expired one, and handles the message delivered while it was away.
func TestOAuthSessionDroppedAfterExpiry(t *testing.T) {
	e := setup(t)
	p := startIDP(t, 10*time.Second)
	login, err := mailauth.New(oauthConfig(p, mailauth.OAuthBearer), oauthUser, mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &marked{prefix: "dropped", got: make(chan string, 10)}
	t0 := time.Now()
	_, done := watchWith(t, e, login, 0, h)
	first := fmt.Sprintf("dropped first %d", t0.UnixNano())
	e.submit(imapBox, mailTo(first))
	h.wait(e.ctx, t, first)
	time.Sleep(time.Until(t0.Add(11 * time.Second)))
	run(t, "doveadm", "-c", filepath.Join(stackDir, "dovecot.conf"), "kick", oauthUser)
	meanwhile := fmt.Sprintf("dropped meanwhile %d", t0.UnixNano())
	e.submit(imapBox, mailTo(meanwhile))
	h.wait(e.ctx, t, meanwhile)
	tokens, expired := p.logins()
	if len(tokens) < 2 || expired > 0 {
		t.Errorf("logins with %d distinct tokens, %d expired ones shown; want a fresh token after the drop, never an expired one", len(tokens), expired)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	default:
	}
}

// TestOAuthRevokedSecret: a revoked client secret fails the first login
// with the provider's AADSTS7000215, marked permanent, and Dovecot is
// never asked.
func TestOAuthRevokedSecret(t *testing.T) {
	e := setup(t)
	p := startIDP(t, time.Hour)
	p.revoke()
	login, err := mailauth.New(oauthConfig(p, mailauth.XOAuth2), oauthUser, mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, done := watchWith(t, e, login, 0, &marked{prefix: "never", got: make(chan string, 1)})
	err = <-done
	t.Logf("Run = %v", err)
	if !errors.Is(err, imapwatch.ErrRejected) || !fault.MarkedPermanent(err) ||
		!strings.Contains(err.Error(), "token endpoint: invalid_client: AADSTS7000215: Invalid client secret provided.") {
		t.Errorf("Run = %v (%v), want a permanent rejection naming AADSTS7000215", err, fault.Of(err))
	}
	if strings.Contains(err.Error(), appSecret) {
		t.Error("the error shows the client secret")
	}
	if tokens, _ := p.logins(); len(tokens) != 0 {
		t.Errorf("Dovecot introspected %v", tokens)
	}
}

// TestOAuthSMTPSubmission: Postfix's SMTP AUTH (through Dovecot's auth
// service) accepts XOAUTH2 and OAUTHBEARER after STARTTLS on
// 127.0.0.1:25, logs the mechanism and user, and relays the messages; an
// unknown token gets a permanent 535.
func TestOAuthSMTPSubmission(t *testing.T) {
	e := setup(t)
	p := startIDP(t, time.Hour)
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		login, err := mailauth.New(oauthConfig(p, mech), oauthUser, mailauth.Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := submit.Send(e.ctx, submit.Config{Addr: "127.0.0.1:25", TLS: submit.TLSStartTLS, TLSConfig: tlsFor(e.cas), Auth: login},
			bounceAddr, []string{returnAddr}, mailTo("oauth smtp "+mech))
		if err != nil {
			t.Fatalf("%s: submit to Postfix: %v", mech, err)
		}
		m := queuedAs.FindStringSubmatch(res.Reply.Text)
		if m == nil {
			t.Fatalf("no queue id in %q", res.Reply.Text)
		}
		line := e.maillog(m[1], "client=")
		if want := "sasl_method=" + strings.ToUpper(mech) + ", sasl_username=" + oauthUser; !strings.Contains(line, want) {
			t.Errorf("%s: maillog %q lacks %q", mech, line, want)
		}
	}
	// Both were relayed on to the return domain's server.
	for _, m := range e.ret.wait(e.ctx, t, 2) {
		if !strings.Contains(string(m.Data), "Subject: oauth smtp ") {
			t.Errorf("the return server got %q", m.Data)
		}
	}
	// A token Dovecot does not know is refused with 535, permanently.
	unknown, err := mailauth.New(mailauth.Config{Provider: mailauth.ProviderStatic, AccessToken: "e2e.unknown"}, oauthUser, mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = submit.Send(e.ctx, submit.Config{Addr: "127.0.0.1:25", TLS: submit.TLSStartTLS, TLSConfig: tlsFor(e.cas),
		Auth: unknown}, bounceAddr, []string{imapBox}, mailTo("oauth smtp refused"))
	t.Logf("refused: %v", err)
	var se *submit.Error
	if !errors.As(err, &se) || se.Reply == nil || se.Reply.Code != 535 || !fault.MarkedPermanent(err) {
		t.Errorf("unknown token: %v, want a permanent 535", err)
	}
}

func dovecotLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(envOr("SCOUT_STACK_LOG_DIR", "/var/log/scout-mailstack"), "dovecot.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
