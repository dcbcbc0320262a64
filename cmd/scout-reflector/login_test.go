package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailauth"
)

// The delegated login against an httptest identity provider speaking
// RFC 8628 (device authorization) and RFC 6749 / RFC 7636 (authorization
// code with PKCE) token responses.

const (
	deviceGrant  = "urn:ietf:params:oauth:grant-type:device_code"
	refreshToken = "rt-very-secret-1"
)

// deviceCode answers the device authorization request (RFC 8628 section
// 3.2), polled every second.
func (p *testIDP) deviceCode(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") != testClientID {
		replyJSON(w, 400, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	p.scope = append(p.scope, r.PostForm.Get("scope"))
	p.mu.Unlock()
	replyJSON(w, 200, map[string]any{"device_code": "dc-1", "user_code": "ABCD-EFGH", "verification_uri": p.srv.URL + "/device",
		"expires_in": 900, "interval": 1})
}

// delegated makes the IDP answer the device grant (pending once, then
// tokens, or deny), the code grant (checking PKCE against challenge()) and
// the refresh grant of refreshToken.
func (p *testIDP) delegated(t *testing.T, deny bool, challenge func() string) {
	pending := true
	p.handler[deviceGrant] = func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.PostForm.Get("device_code") != "dc-1":
			replyJSON(w, 400, map[string]string{"error": "invalid_grant"})
		case pending:
			pending = false
			replyJSON(w, 400, map[string]string{"error": "authorization_pending"})
		case deny:
			replyJSON(w, 400, map[string]string{"error": "access_denied", "error_description": "AADSTS70000: The user denied the request."})
		default:
			p.issue(w, map[string]any{"refresh_token": refreshToken, "scope": "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access"})
		}
	}
	p.handler["authorization_code"] = func(w http.ResponseWriter, r *http.Request) {
		f := r.PostForm
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		if f.Get("code") != "the-code" || f.Get("redirect_uri") != "http://localhost" ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != challenge() {
			replyJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "AADSTS50148: The code_verifier does not match the code_challenge."})
			return
		}
		p.issue(w, map[string]any{"refresh_token": refreshToken})
	}
	p.handler["refresh_token"] = func(w http.ResponseWriter, r *http.Request) {
		if r.PostForm.Get("refresh_token") != refreshToken {
			replyJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		p.issue(w, nil)
	}
}

// loginConfig writes a reflector.yaml whose imap.oauth is provider
// refresh_token at p, and returns it and the refresh token file.
func loginConfig(f *fixture, p *testIDP) (cfg, rtFile string) {
	f.t.Helper()
	rtFile = filepath.Join(f.home, "refresh-token.json")
	cfg = filepath.Join(f.home, "reflector.yaml")
	writeFile(f.t, cfg, fmt.Sprintf("key_file: %s\nmailboxes: [%s]\nimap:\n  addr: outlook.office365.com:993\n  username: %s\n  oauth:\n"+
		"    provider: refresh_token\n    token_url: %s\n    client_id: %s\n    refresh_token_file: %s\n"+
		"    scopes: [https://outlook.office365.com/IMAP.AccessAsUser.All, offline_access]\n",
		f.keyFile, mailbox, mailbox, p.tokenURL(), testClientID, rtFile), 0o644)
	return cfg, rtFile
}

// checkRefreshTokenFile asserts mode 0600 and the content, and that
// mailauth's refresh_token provider takes the file.
func checkRefreshTokenFile(t *testing.T, p *testIDP, rtFile string) {
	t.Helper()
	fi, err := os.Stat(rtFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(rtFile)
	var v map[string]string
	if err := json.Unmarshal(b, &v); err != nil || len(v) != 1 || v["refresh_token"] != refreshToken {
		t.Errorf("file holds %q, want {\"refresh_token\": ...} only", b)
	}
	src, err := mailauth.NewTokenSource(mailauth.Config{Provider: mailauth.ProviderRefreshToken, TokenURL: p.tokenURL(),
		ClientID: testClientID, RefreshTokenFile: rtFile}, mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Token(context.Background()); err != nil {
		t.Errorf("mailauth with the written file: %v", err)
	}
}

func noTokens(t *testing.T, out string) {
	t.Helper()
	for _, s := range []string{refreshToken, "tok-1", "tok-2"} {
		if strings.Contains(out, s) {
			t.Errorf("the output shows %q:\n%s", s, out)
		}
	}
}

func TestLoginDeviceCode(t *testing.T) {
	p := newTestIDP(t, time.Hour, nil)
	p.delegated(t, false, nil)
	f := newFixture(t, 0)
	cfg, rtFile := loginConfig(f, p)
	r := f.run(nil, nil, "login", "--config", cfg, "--device-auth-url", p.srv.URL+"/tenant/oauth2/v2.0/devicecode")
	t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0", r.code)
	}
	wantLines(t, r.stdout, "open "+p.srv.URL+"/device and enter the code ABCD-EFGH", "refresh token written to "+rtFile+" (mode 0600)",
		"access token: valid for", "granted scopes: https://outlook.office365.com/IMAP.AccessAsUser.All offline_access")
	noTokens(t, r.stdout+r.stderr)
	if p.scope[0] != "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access" {
		t.Errorf("device authorization asked for scope %q", p.scope[0])
	}
	checkRefreshTokenFile(t, p, rtFile)
}

func TestLoginDeviceCodeDenied(t *testing.T) {
	p := newTestIDP(t, time.Hour, nil)
	p.delegated(t, true, nil)
	f := newFixture(t, 0)
	cfg, rtFile := loginConfig(f, p)
	r := f.run(nil, nil, "login", "--config", cfg, "--device-auth-url", p.srv.URL+"/tenant/oauth2/v2.0/devicecode")
	if r.code != exitIgnored || !strings.Contains(r.stderr, "token endpoint: access_denied: AADSTS70000: The user denied the request.") {
		t.Fatalf("exit %d, stderr %s; want 1 naming access_denied", r.code, r.stderr)
	}
	if _, err := os.Stat(rtFile); !os.IsNotExist(err) {
		t.Errorf("refresh token file written after a refusal: %v", err)
	}
}

// The authorization code with PKCE: the address the browser was sent to
// is pasted on stdin.
func TestLoginPastedRedirect(t *testing.T) {
	var (
		mu        sync.Mutex
		challenge string // the code_challenge of the authorization address
	)
	get := func() string {
		mu.Lock()
		defer mu.Unlock()
		return challenge
	}
	p := newTestIDP(t, time.Hour, nil)
	p.delegated(t, false, get)
	f := newFixture(t, 0)
	cfg, rtFile := loginConfig(f, p)

	stdin, paste := io.Pipe()
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(testCtx(t), env{args: []string{"login", "--config", cfg, "--flow", "code", "--auth-url", p.srv.URL + "/authorize"},
			stdin: stdin, stdout: &out, stderr: &out, lookupEnv: func(k string) (string, bool) {
				if k == "HOME" {
					return f.home, true
				}
				return "", false
			}, now: time.Now})
	}()
	var auth *url.URL
	for auth == nil {
		for _, l := range strings.Fields(out.String()) {
			if strings.HasPrefix(l, p.srv.URL+"/authorize?") {
				auth, _ = url.Parse(l)
			}
		}
		select {
		case code := <-done:
			t.Fatalf("exit %d before the paste:\n%s", code, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	q := auth.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("client_id") != testClientID || q.Get("response_type") != "code" ||
		q.Get("redirect_uri") != "http://localhost" || !strings.Contains(q.Get("scope"), "offline_access") {
		t.Errorf("authorization address %s", auth)
	}
	mu.Lock()
	challenge = q.Get("code_challenge")
	mu.Unlock()
	fmt.Fprintf(paste, "http://localhost/?code=the-code&state=%s&session_state=x\n", url.QueryEscape(q.Get("state")))
	if code := <-done; code != 0 {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	wantLines(t, out.String(), "refresh token written to "+rtFile)
	noTokens(t, out.String())
	checkRefreshTokenFile(t, p, rtFile)
}

func TestLoginConfigErrors(t *testing.T) {
	f := newFixture(t, 0)
	cfg := filepath.Join(f.home, "reflector.yaml")
	writeFile(t, cfg, "key_file: "+f.keyFile+"\nimap:\n  oauth:\n    provider: microsoft\n    tenant: contoso.onmicrosoft.com\n    client_id: x\n    client_secret: s\n", 0o600)
	r := f.run(nil, nil, "login", "--config", cfg)
	if r.code != exitConfig || !strings.Contains(r.stderr, cfg+":4: imap.oauth.provider: \"microsoft\": login writes the refresh token file of provider refresh_token") {
		t.Errorf("exit %d, stderr %s", r.code, r.stderr)
	}
	r = f.run(nil, nil, "login", "--config", cfg, "--for", "smtp")
	if r.code != exitConfig || !strings.Contains(r.stderr, "login needs an oauth block with provider: refresh_token here (smtp.oauth)") {
		t.Errorf("exit %d, stderr %s", r.code, r.stderr)
	}
}
