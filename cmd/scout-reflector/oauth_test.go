package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emersion/go-imap/v2"
)

// Tests of the OAuth logins of imap mode and the SMTP output, against the
// real go-imap/go-smtp servers of pkg/mailtest, which accept the bearer
// tokens a token endpoint on httptest issued.

const (
	testClientID = "11111111-2222-3333-4444-555555555555"
	testSecret   = "s3cret~client.value"
	revokedDesc  = "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."
)

// testIDP is an identity provider on httptest: the client credentials
// grant (RFC 6749 section 4.4) as the Microsoft identity platform answers
// it, issuing "tok-1", "tok-2", ... valid for life; onIssue tells a mail
// server to accept each. Later tests add the refresh and device grants.
type testIDP struct {
	srv     *httptest.Server
	life    time.Duration
	onIssue func(tok string)

	mu      sync.Mutex
	secret  string
	n       int
	jwt     map[string]any // when set, tokens are JWTs with these claims (and "n")
	scope   []string       // scope parameters received
	extra   map[string]any
	handler map[string]http.HandlerFunc // grant_type -> handler (later tests)
}

func newTestIDP(t *testing.T, life time.Duration, onIssue func(string)) *testIDP {
	t.Helper()
	p := &testIDP{life: life, onIssue: onIssue, secret: testSecret, handler: map[string]http.HandlerFunc{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /tenant/oauth2/v2.0/token", p.token)
	mux.HandleFunc("POST /tenant/oauth2/v2.0/devicecode", p.deviceCode)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testIDP) tokenURL() string { return p.srv.URL + "/tenant/oauth2/v2.0/token" }

func (p *testIDP) setSecret(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.secret = s
}

func (p *testIDP) issued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func replyJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// issue makes the next token (p.mu held).
func (p *testIDP) issue(w http.ResponseWriter, extra map[string]any) {
	p.n++
	tok := fmt.Sprintf("tok-%d", p.n)
	if p.jwt != nil {
		claims := map[string]any{"n": p.n}
		for k, v := range p.jwt {
			claims[k] = v
		}
		b, _ := json.Marshal(claims)
		enc := base64.RawURLEncoding.EncodeToString
		tok = enc([]byte(`{"typ":"JWT","alg":"RS256"}`)) + "." + enc(b) + "." + enc([]byte(fmt.Sprintf("signature-%d", p.n)))
	}
	if p.onIssue != nil {
		p.onIssue(tok)
	}
	body := map[string]any{"token_type": "Bearer", "expires_in": int(p.life / time.Second), "access_token": tok}
	for k, v := range p.extra {
		body[k] = v
	}
	for k, v := range extra {
		body[k] = v
	}
	replyJSON(w, 200, body)
}

func (p *testIDP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		replyJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := r.PostForm
	p.scope = append(p.scope, f.Get("scope"))
	if h, ok := p.handler[f.Get("grant_type")]; ok {
		h(w, r)
		return
	}
	switch {
	case f.Get("grant_type") != "client_credentials":
		replyJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
	case f.Get("client_id") != testClientID || f.Get("client_secret") != p.secret:
		replyJSON(w, 401, map[string]any{"error": "invalid_client", "error_description": revokedDesc, "error_codes": []int{7000215}})
	default:
		p.issue(w, nil)
	}
}

// freshProbe is a probe signed now with newKey (the fixture's key file),
// as delivered (Return-Path first).
func freshProbe(t *testing.T, testID string) []byte {
	t.Helper()
	return append([]byte("Return-Path: <bounces@monitor.example>\r\n"), probeMsg(t, testID, newKey, time.Now())...)
}

// syncBuffer is a bytes.Buffer safe for the reflector's log writes while
// the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// oauthServers starts an IMAP server that accepts every issued token and
// an SMTP server that accepts tok-1 .. tok-99 for mailtest.IMAPUser.
func oauthServers(t *testing.T, life time.Duration) (*mailtest.IMAPServer, *mailtest.Server, *testIDP) {
	t.Helper()
	srv := mailtest.NewIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}})
	tokens := map[string]string{}
	for i := 1; i < 100; i++ {
		tokens[fmt.Sprintf("tok-%d", i)] = mailtest.IMAPUser
	}
	smtpSrv := mailtest.NewServer(t, mailtest.Options{Tokens: tokens})
	return srv, smtpSrv, newTestIDP(t, life, srv.AllowToken)
}

// oauthConfig is a reflector.yaml for imap mode: XOAUTH2 to the IMAP
// server with the secret in a file, OAUTHBEARER to the SMTP server with
// the secret from $SCOUT_REFLECTOR_SMTP_CLIENT_SECRET.
func oauthConfig(f *fixture, srv *mailtest.IMAPServer, smtpSrv *mailtest.Server, p *testIDP, extra string) string {
	f.t.Helper()
	secretFile := filepath.Join(f.home, "client-secret")
	writeFile(f.t, secretFile, testSecret+"\n", 0o600)
	cfg := fmt.Sprintf(`key_file: %s
state_dir: %s
mailboxes: [%s]
imap:
  addr: %s
  tls: none
  username: %s
  oauth:
    provider: microsoft
    token_url: %s
    client_id: %s
    client_secret_file: %s
smtp:
  addr: %s
  tls: none
  username: %s
  oauth:
    provider: microsoft
    token_url: %s
    client_id: %s
    mechanism: oauthbearer
`, f.keyFile, filepath.Join(f.home, "state"), mailbox, srv.Addr, mailtest.IMAPUser, p.tokenURL(), testClientID, secretFile,
		smtpSrv.Addr, mailtest.IMAPUser, p.tokenURL(), testClientID) + extra
	path := filepath.Join(f.home, "reflector.yaml")
	writeFile(f.t, path, cfg, 0o644)
	return path
}

// start runs the reflector in-process until the returned stop is called,
// which returns the exit status.
func (f *fixture) start(ctx context.Context, vars map[string]string, stderr *syncBuffer, args ...string) (stop func() int) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	lookup := func(k string) (string, bool) {
		if k == "HOME" {
			return f.home, true
		}
		v, ok := vars[k]
		return v, ok
	}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, env{args: args, stdin: bytes.NewReader(nil), stdout: stderr, stderr: stderr,
			lookupEnv: lookup, now: time.Now})
	}()
	return func() int {
		cancel()
		return <-done
	}
}

func TestIMAPModeWithOAuth(t *testing.T) {
	ctx := testCtx(t)
	srv, smtpSrv, p := oauthServers(t, time.Hour)
	f := newFixture(t, 0)
	cfg := oauthConfig(f, srv, smtpSrv, p, "")
	var logs syncBuffer
	stop := f.start(ctx, map[string]string{envSMTPClientSecret: testSecret}, &logs, "imap", "--config", cfg)
	defer func() { t.Log(logs.String()) }()
	srv.Deliver(freshProbe(t, "oooooooooooooooooooooooo"), time.Now())
	waitReflected(t, smtpSrv, "oooooooooooooooooooooooo")
	if code := stop(); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, logs.String())
	}
	if n := srv.Commands("AUTHENTICATE"); n != 1 || srv.Commands("LOGIN") != 0 {
		t.Errorf("AUTHENTICATE %d, LOGIN %d: want one AUTHENTICATE", n, srv.Commands("LOGIN"))
	}
	if used := srv.TokensUsed(); len(used) != 1 {
		t.Errorf("IMAP tokens used %v, want one", used)
	}
	// IMAP and SMTP have their own blocks, hence their own tokens.
	if n := p.issued(); n != 2 {
		t.Errorf("%d tokens issued, want 2 (one per login)", n)
	}
	out := logs.String()
	for _, secret := range []string{testSecret, "tok-1", "tok-2"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "IMAP login with OAuth") || !strings.Contains(out, "mechanism=xoauth2") {
		t.Errorf("the log does not say how it logs in:\n%s", out)
	}
}

// Without an SMTP user of its own, imap mode's SMTP output shares the IMAP
// login, tokens included.
func TestIMAPModeSharesTheOAuthLogin(t *testing.T) {
	ctx := testCtx(t)
	srv, smtpSrv, p := oauthServers(t, time.Hour)
	f := newFixture(t, 0)
	secretFile := filepath.Join(f.home, "client-secret")
	writeFile(t, secretFile, testSecret, 0o600)
	cfg := filepath.Join(f.home, "reflector.yaml")
	writeFile(t, cfg, fmt.Sprintf("key_file: %s\nmailboxes: [%s]\nimap:\n  addr: %s\n  tls: none\n  username: %s\n  oauth:\n"+
		"    provider: microsoft\n    token_url: %s\n    client_id: %s\n    client_secret_file: %s\nsmtp:\n  addr: %s\n  tls: none\n",
		f.keyFile, mailbox, srv.Addr, mailtest.IMAPUser, p.tokenURL(), testClientID, secretFile, smtpSrv.Addr), 0o644)
	var logs syncBuffer
	stop := f.start(ctx, nil, &logs, "imap", "--config", cfg)
	srv.Deliver(freshProbe(t, "ssssssssssssssssssssssss"), time.Now())
	waitReflected(t, smtpSrv, "ssssssssssssssssssssssss")
	if code := stop(); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, logs.String())
	}
	if n := p.issued(); n != 1 {
		t.Errorf("%d tokens issued, want 1 shared by IMAP and SMTP", n)
	}
}

// A revoked client secret at start is a configuration error: exit 78,
// naming the provider's error, never the secret.
func TestIMAPModeRevokedSecretIsExit78(t *testing.T) {
	srv, smtpSrv, p := oauthServers(t, time.Hour)
	p.setSecret("rotated by the admin")
	f := newFixture(t, 0)
	cfg := oauthConfig(f, srv, smtpSrv, p, "")
	r := f.run(nil, map[string]string{envSMTPClientSecret: testSecret}, "imap", "--config", cfg)
	if r.code != exitConfig {
		t.Fatalf("exit %d, want 78; stderr %s", r.code, r.stderr)
	}
	for _, want := range []string{"configuration error; exit 78", "token endpoint: invalid_client: AADSTS7000215: Invalid client secret provided."} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, testSecret) {
		t.Errorf("stderr shows the secret:\n%s", r.stderr)
	}
	if n := srv.Commands("AUTHENTICATE"); n != 0 {
		t.Errorf("%d AUTHENTICATE commands: the server was asked with no token", n)
	}
}

// Once running, a refused credential is retried with backoff (and logged
// with the provider's error) until it works again.
func TestIMAPModeRetriesARevokedSecretOnceRunning(t *testing.T) {
	ctx := testCtx(t)
	srv, smtpSrv, p := oauthServers(t, 2*time.Second)
	f := newFixture(t, 0)
	cfg := oauthConfig(f, srv, smtpSrv, p, "")
	var logs syncBuffer
	stop := f.start(ctx, map[string]string{envSMTPClientSecret: testSecret}, &logs, "imap", "--config", cfg)
	srv.Deliver(freshProbe(t, "pppppppppppppppppppppppp"), time.Now())
	waitReflected(t, smtpSrv, "pppppppppppppppppppppppp")

	p.setSecret("rotated by the admin")
	for !strings.Contains(logs.String(), "AADSTS7000215") {
		srv.Restart() // drops the session: the next one needs a token
		select {
		case <-ctx.Done():
			t.Fatalf("no refused login logged:\n%s", logs.String())
		case <-time.After(500 * time.Millisecond):
		}
	}
	p.setSecret(testSecret)
	srv.Deliver(freshProbe(t, "qqqqqqqqqqqqqqqqqqqqqqqq"), time.Now())
	waitReflected(t, smtpSrv, "pppppppppppppppppppppppp", "qqqqqqqqqqqqqqqqqqqqqqqq")
	if code := stop(); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, logs.String())
	}
	out := logs.String()
	if !strings.Contains(out, "IMAP session ended; reconnecting") || strings.Contains(out, testSecret) {
		t.Errorf("want a retried login and no secret in the log:\n%s", out)
	}
}

func TestOAuthConfigErrors(t *testing.T) {
	cases := []struct {
		name  string
		imap  string // the imap block's extra lines, after addr, tls and username
		mode  os.FileMode
		vars  map[string]string
		wants []string
	}{
		{name: "inline secret in a file others can read",
			imap:  "  oauth:\n    provider: microsoft\n    tenant: contoso.onmicrosoft.com\n    client_id: x\n    client_secret: hunter2\n",
			wants: []string{"configuration file with secrets {config} is accessible by group or others"}},
		{name: "unknown key names its block and line",
			imap:  "  oauth:\n    provider: microsoft\n    tenantt: contoso.onmicrosoft.com\n",
			wants: []string{"{config}:10: unknown key \"imap.oauth.tenantt\""}},
		{name: "an unknown top-level key is not an oauth key",
			imap:  "imapp: x\n",
			wants: []string{"{config}:8: unknown key \"imapp\""}},
		{name: "missing keys name the block's line",
			imap: "  oauth:\n    provider: microsoft\n    tenant: contoso.onmicrosoft.com\n",
			wants: []string{"{config}:8: imap.oauth.client_id: required by provider microsoft",
				"{config}:8: imap.oauth.client_secret: give exactly one of client_secret and client_secret_file (or set $" + envIMAPClientSecret + ")"}},
		{name: "a bad value names its key's line",
			imap:  "  oauth:\n    provider: microsoft\n    tenant: contoso.onmicrosoft.com\n    client_id: x\n    mechanism: plain\n",
			vars:  map[string]string{envIMAPClientSecret: "from-env"},
			wants: []string{"{config}:12: imap.oauth.mechanism: \"plain\" is not xoauth2 or oauthbearer"}},
		{name: "password and oauth",
			imap:  "  password_file: {home}/keys\n  oauth:\n    provider: static\n    access_token: x\n",
			mode:  0o600,
			wants: []string{"{config}:9: imap.oauth: give a password or an oauth block, not both"}},
		{name: "secret file others can read",
			imap:  "  oauth:\n    provider: microsoft\n    tenant: t\n    client_id: x\n    client_secret_file: {home}/open-keys\n",
			wants: []string{"{config}:12: imap.oauth.client_secret_file: client secret file {home}/open-keys is accessible by group or others"}},
		{name: "renewal beyond 29m",
			imap:  "  renew_before_expiry: 1h\n  oauth:\n    provider: static\n    access_token: x\n",
			mode:  0o600,
			wants: []string{"{config}:8: imap.renew_before_expiry: 1h0m0s is not between 0 and 29m"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			writeFile(t, filepath.Join(f.home, "open-keys"), "x\n", 0o644)
			cfgPath := filepath.Join(f.home, "reflector.yaml")
			expand := strings.NewReplacer("{home}", f.home, "{config}", cfgPath).Replace
			mode := tc.mode
			if mode == 0 {
				mode = 0o644
			}
			writeFile(t, cfgPath, expand("key_file: {home}/keys\nmailboxes: [webscout@acme.example]\nsmtp:\n  addr: 127.0.0.1:25\nimap:\n"+
				"  addr: 127.0.0.1:143\n  username: webscout\n"+tc.imap), mode)
			r := f.run(nil, tc.vars, "imap", "--config", cfgPath)
			if r.code != exitConfig {
				t.Fatalf("exit %d, want 78; stderr %s", r.code, r.stderr)
			}
			for _, w := range tc.wants {
				if !strings.Contains(r.stderr, expand(w)) {
					t.Errorf("stderr lacks %q:\n%s", expand(w), r.stderr)
				}
			}
			if strings.Contains(r.stderr, "hunter2") || strings.Contains(r.stderr, "from-env") {
				t.Errorf("stderr shows a secret:\n%s", r.stderr)
			}
		})
	}
}

// A token the endpoint issued but the IMAP server refuses, at start: exit
// 78 with the server's AUTHENTICATIONFAILED and its error challenge.
func TestIMAPModeTokenRefusedByTheServerIsExit78(t *testing.T) {
	srv, smtpSrv, _ := oauthServers(t, time.Hour)
	p := newTestIDP(t, time.Hour, nil) // the IMAP server is never told
	f := newFixture(t, 0)
	cfg := oauthConfig(f, srv, smtpSrv, p, "")
	r := f.run(nil, map[string]string{envSMTPClientSecret: testSecret}, "imap", "--config", cfg)
	if r.code != exitConfig || !strings.Contains(r.stderr, "NO [AUTHENTICATIONFAILED]") || !strings.Contains(r.stderr, "XOAUTH2 refused: status") {
		t.Fatalf("exit %d, want 78 naming AUTHENTICATIONFAILED; stderr %s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "tok-1") {
		t.Errorf("stderr shows the token:\n%s", r.stderr)
	}
}
