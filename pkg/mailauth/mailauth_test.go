package mailauth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/jonboulle/clockwork"
	"go.yaml.in/yaml/v3"
)

const (
	secret       = "s3cr3t-Cl13nt~value"
	refreshOld   = "0.AAAA-refresh-token-old"
	refreshNew   = "0.AAAA-refresh-token-new"
	accessPrefix = "eyJ0eXAiOiJKV1QiLCJhbGciOi-access-"
)

var start = time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)

// tokenServer is a token endpoint on loopback (httptest) that records the
// form of each request and answers with respond.
type tokenServer struct {
	*httptest.Server
	mu      sync.Mutex
	forms   []map[string]string
	respond func(n int, form map[string]string) (status int, body string)
}

func newTokenServer(t *testing.T, respond func(n int, form map[string]string) (int, string)) *tokenServer {
	t.Helper()
	s := &tokenServer{respond: respond}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "want a form POST", http.StatusMethodNotAllowed)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		form := map[string]string{}
		for k, v := range r.PostForm {
			form[k] = strings.Join(v, ",")
		}
		if u, p, ok := r.BasicAuth(); ok {
			form["basic"] = u + ":" + p
		}
		s.mu.Lock()
		s.forms = append(s.forms, form)
		n := len(s.forms)
		s.mu.Unlock()
		status, body := s.respond(n, form)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *tokenServer) requests() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]string(nil), s.forms...)
}

// issue answers with the n-th access token, valid for secs seconds
// (RFC 6749 section 5.1).
func issue(secs int) func(int, map[string]string) (int, string) {
	return func(n int, _ map[string]string) (int, string) {
		return 200, fmt.Sprintf(`{"access_token":"%s%d","token_type":"Bearer","expires_in":%d}`, accessPrefix, n, secs)
	}
}

func microsoft(url string) mailauth.Config {
	return mailauth.Config{Provider: mailauth.ProviderMicrosoft, Tenant: "contoso.onmicrosoft.com",
		ClientID: "11111111-2222-3333-4444-555555555555", ClientSecret: secret, TokenURL: url}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// noSecret fails the test when s shows any secret of this file.
func noSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, x := range []string{secret, refreshOld, refreshNew, accessPrefix, "PRIVATE KEY"} {
		if strings.Contains(s, x) {
			t.Errorf("%s shows a secret (%q): %s", what, x, s)
		}
	}
}

// TestClientCredentialsWire: the request is RFC 6749 section 4.4.2 as the
// Microsoft identity platform documents it (secret in the form body, the
// .default scope), and the token comes back with an expiry on the clock.
func TestClientCredentialsWire(t *testing.T) {
	srv := newTokenServer(t, issue(3599))
	clock := clockwork.NewFakeClockAt(start)
	src, err := mailauth.NewTokenSource(microsoft(srv.URL+"/contoso/oauth2/v2.0/token"), mailauth.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != accessPrefix+"1" || !tok.Expiry.Equal(start.Add(3599*time.Second)) {
		t.Errorf("token %q expiring %v, want %q at %v", tok.AccessToken, tok.Expiry, accessPrefix+"1", start.Add(3599*time.Second))
	}
	want := map[string]string{"grant_type": "client_credentials", "client_id": "11111111-2222-3333-4444-555555555555",
		"client_secret": secret, "scope": "https://outlook.office365.com/.default"}
	got := srv.requests()[0]
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("request form %v, want %v", got, want)
	}
}

// TestClientSecretFile: the secret is read from its file at each fetch.
func TestClientSecretFile(t *testing.T) {
	srv := newTokenServer(t, issue(1))
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := microsoft(srv.URL)
	cfg.ClientSecret, cfg.ClientSecretFile = "", file
	clock := clockwork.NewFakeClockAt(start)
	src, err := mailauth.NewTokenSource(cfg, mailauth.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Token(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second) // 1 s tokens: renewed after half their life
	if _, err := src.Token(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	r := srv.requests()
	if len(r) != 2 || r[0]["client_secret"] != secret || r[1]["client_secret"] != "rotated" {
		t.Errorf("secrets sent %v, want the file's content at each fetch", r)
	}
}

// TestRefreshTiming: a 1 h token is used until 48 min (80 %), a 20 min
// one until 15 min (5 min before expiry), a 20 s one until 10 s (half its
// life), all measured on the fake clock.
func TestRefreshTiming(t *testing.T) {
	for _, tc := range []struct {
		life, renew time.Duration
	}{
		{time.Hour, 48 * time.Minute},
		{20 * time.Minute, 15 * time.Minute},
		{20 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.life.String(), func(t *testing.T) {
			if got := mailauth.RefreshAt(start, tc.life); !got.Equal(start.Add(tc.renew)) {
				t.Errorf("RefreshAt = +%v, want +%v", got.Sub(start), tc.renew)
			}
			srv := newTokenServer(t, issue(int(tc.life/time.Second)))
			clock := clockwork.NewFakeClockAt(start)
			src, err := mailauth.NewTokenSource(microsoft(srv.URL), mailauth.Options{Clock: clock})
			if err != nil {
				t.Fatal(err)
			}
			get := func() string {
				t.Helper()
				tok, err := src.Token(ctxFor(t))
				if err != nil {
					t.Fatal(err)
				}
				return tok.AccessToken
			}
			first := get()
			clock.Advance(tc.renew - time.Second)
			if got := get(); got != first || len(srv.requests()) != 1 {
				t.Errorf("1 s before renewal: token %q after %d fetches, want the first after 1", got, len(srv.requests()))
			}
			clock.Advance(time.Second)
			if got := get(); got == first || len(srv.requests()) != 2 {
				t.Errorf("at renewal: token %q after %d fetches, want a new one after 2", got, len(srv.requests()))
			}
		})
	}
}

// TestCacheKeepsTokenThroughOutage: a renewal that fails with a 5xx keeps
// the old, still valid token; once that is nearly out, the error shows.
func TestCacheKeepsTokenThroughOutage(t *testing.T) {
	srv := newTokenServer(t, func(n int, f map[string]string) (int, string) {
		if n == 1 {
			return issue(3600)(n, f)
		}
		return 503, `{"error":"temporarily_unavailable","error_description":"AADSTS90033: A transient error has occurred."}`
	})
	clock := clockwork.NewFakeClockAt(start)
	src, err := mailauth.NewTokenSource(microsoft(srv.URL), mailauth.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Token(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(50 * time.Minute) // past the renewal at 48 min, margin 12 min
	if tok, err := src.Token(ctxFor(t)); err != nil || tok.AccessToken != accessPrefix+"1" {
		t.Errorf("during the outage: %v, %v; want the old token", tok, err)
	}
	clock.Advance(5 * time.Minute) // 5 min before expiry: less than half the margin left
	_, err = src.Token(ctxFor(t))
	if err == nil || !fault.MarkedTemporary(err) || !strings.Contains(err.Error(), "token endpoint: temporarily_unavailable: AADSTS90033") {
		t.Errorf("near expiry: %v, want the temporary endpoint error", err)
	}
}

// TestEndpointErrors: the provider's error and description are in the
// text; invalid_client, invalid_grant, unauthorized_client and 4xx are
// permanent, 5xx and network errors temporary; no secret shows.
func TestEndpointErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
		permanent  bool
	}{
		{"revoked secret", `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '11111111-2222-3333-4444-555555555555'.\r\nTrace ID: 0f5a\r\nCorrelation ID: 77c1\r\nTimestamp: 2026-12-05 08:00:00Z","error_codes":[7000215]}`,
			401, "token endpoint: invalid_client: AADSTS7000215: Invalid client secret provided. Ensure the secret", true},
		{"unknown tenant", `{"error":"invalid_request","error_description":"AADSTS90002: Tenant 'contoso.onmicrosoft.com' not found."}`,
			400, "token endpoint: invalid_request: AADSTS90002: Tenant 'contoso.onmicrosoft.com' not found.", true},
		{"no consent", `{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier '1111' was not found in the directory 'contoso'."}`,
			400, "token endpoint: unauthorized_client: AADSTS700016: Application with identifier", true},
		{"expired grant", `{"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh token has expired due to inactivity."}`,
			400, "token endpoint: invalid_grant: AADSTS70008: The provided authorization code or refresh token has expired", true},
		{"not JSON 403", `<html>Forbidden</html>`, 403, "token endpoint: HTTP 403 Forbidden", true},
		{"outage", `{"error":"temporarily_unavailable","error_description":"AADSTS90033: A transient error has occurred. Please try again."}`,
			503, "token endpoint: temporarily_unavailable: AADSTS90033: A transient error has occurred.", false},
		{"bad gateway", `<html>Bad Gateway</html>`, 502, "token endpoint: HTTP 502 Bad Gateway", false},
		{"throttled", `{"error":"slow_down"}`, 429, "token endpoint: slow_down", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTokenServer(t, func(int, map[string]string) (int, string) { return tc.status, tc.body })
			src, err := mailauth.NewTokenSource(microsoft(srv.URL), mailauth.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Token(ctxFor(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if fault.MarkedPermanent(err) != tc.permanent || fault.MarkedTemporary(err) == tc.permanent {
				t.Errorf("class %v, want permanent=%v", fault.Of(err), tc.permanent)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error spans lines: %q", err)
			}
			var ee *mailauth.EndpointError
			if !errors.As(err, &ee) || ee.Status != tc.status {
				t.Errorf("error %#v is no *EndpointError with status %d", err, tc.status)
			}
			noSecret(t, "error", err.Error())
		})
	}
	t.Run("network", func(t *testing.T) {
		srv := newTokenServer(t, issue(60))
		url := srv.URL
		srv.Close()
		src, err := mailauth.NewTokenSource(microsoft(url), mailauth.Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = src.Token(ctxFor(t))
		if err == nil || !fault.MarkedTemporary(err) || !strings.Contains(err.Error(), "token endpoint: ") {
			t.Errorf("error %v (%v), want a temporary token endpoint error", err, fault.Of(err))
		}
		noSecret(t, "error", fmt.Sprint(err))
	})
}

// serviceAccountFile writes a Google service account key file whose
// token_uri is tokenURI and returns its path and public key.
func serviceAccountFile(t *testing.T, tokenURI string) (string, *rsa.PublicKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sa := map[string]string{"type": "service_account", "project_id": "scout", "private_key_id": "kid-1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "scout@scout.iam.gserviceaccount.com", "client_id": "1234", "token_uri": tokenURI}
	b, _ := json.Marshal(sa)
	path := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, &key.PublicKey
}

// TestServiceAccountJWT: the JWT bearer grant of RFC 7523 section 2.1:
// grant_type urn:ietf:params:oauth:grant-type:jwt-bearer and an RS256
// assertion with iss = client_email, sub = the mailbox, the mail scope
// and aud = the token endpoint (token_uri of the key file).
func TestServiceAccountJWT(t *testing.T) {
	srv := newTokenServer(t, func(n int, _ map[string]string) (int, string) {
		return 200, fmt.Sprintf(`{"access_token":"%s%d","expires_in":3599,"token_type":"Bearer"}`, accessPrefix, n)
	})
	path, pub := serviceAccountFile(t, srv.URL+"/token")
	clock := clockwork.NewFakeClockAt(start)
	src, err := mailauth.NewTokenSource(mailauth.Config{Provider: mailauth.ProviderGoogle, ServiceAccountFile: path,
		Subject: "scout@example.com"}, mailauth.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Expiry.Equal(start.Add(3599 * time.Second)) {
		t.Errorf("expiry %v, want %v (expires_in on the cache's clock)", tok.Expiry, start.Add(3599*time.Second))
	}
	form := srv.requests()[0]
	if form["grant_type"] != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		t.Errorf("grant_type %q", form["grant_type"])
	}
	parts := strings.Split(form["assertion"], ".")
	if len(parts) != 3 {
		t.Fatalf("assertion %q is not a JWS compact serialization", form["assertion"])
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Errorf("RS256 signature: %v", err)
	}
	var hdr, claims map[string]any
	for i, v := range []*map[string]any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	if hdr["alg"] != "RS256" || hdr["kid"] != "kid-1" {
		t.Errorf("header %v, want RS256 with kid kid-1", hdr)
	}
	if claims["iss"] != "scout@scout.iam.gserviceaccount.com" || claims["sub"] != "scout@example.com" ||
		claims["scope"] != "https://mail.google.com/" || claims["aud"] != srv.URL+"/token" {
		t.Errorf("claims %v", claims)
	}
	if claims["exp"] == nil || claims["iat"] == nil {
		t.Errorf("claims %v lack exp or iat", claims)
	}
	// Cached by expires_in: no second request before the renewal.
	clock.Advance(47 * time.Minute)
	if _, err := src.Token(ctxFor(t)); err != nil || len(srv.requests()) != 1 {
		t.Errorf("after 47 min: %v, %d requests; want the cached token", err, len(srv.requests()))
	}
}

// TestServiceAccountErrors: Google's refusal of a delegation that the
// Workspace admin did not grant is named and permanent; a broken key file
// fails at start without quoting the key.
func TestServiceAccountErrors(t *testing.T) {
	srv := newTokenServer(t, func(int, map[string]string) (int, string) {
		return 401, `{"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}`
	})
	path, _ := serviceAccountFile(t, srv.URL)
	src, err := mailauth.NewTokenSource(mailauth.Config{Provider: mailauth.ProviderGoogle, ServiceAccountFile: path,
		Subject: "scout@example.com"}, mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Token(ctxFor(t))
	if err == nil || !fault.MarkedPermanent(err) ||
		!strings.Contains(err.Error(), "token endpoint: unauthorized_client: Client is unauthorized to retrieve access tokens") {
		t.Errorf("error %v (%v), want the permanent unauthorized_client", err, fault.Of(err))
	}

	b, _ := os.ReadFile(path)
	broken := strings.Replace(string(b), "MII", "XXX", 1)
	bad := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(bad, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = mailauth.NewTokenSource(mailauth.Config{Provider: mailauth.ProviderGoogle, ServiceAccountFile: bad,
		Subject: "scout@example.com"}, mailauth.Options{})
	if err == nil || !fault.MarkedPermanent(err) || !strings.Contains(err.Error(), "private_key: ") {
		t.Errorf("broken key: %v, want a permanent private_key error", err)
	}
	noSecret(t, "error", fmt.Sprint(err))
}

func writeRefresh(t *testing.T, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "refresh.json")
	if err := os.WriteFile(path, []byte(`{"refresh_token":"`+refreshOld+`"}`), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// TestRefreshTokenFile: the refresh grant (RFC 6749 section 6) sends the
// stored token; a rotated one is written back with mode 0600 and used
// next time.
func TestRefreshTokenFile(t *testing.T) {
	srv := newTokenServer(t, func(n int, f map[string]string) (int, string) {
		if n == 1 {
			return 200, `{"access_token":"` + accessPrefix + `1","token_type":"Bearer","expires_in":10,"refresh_token":"` + refreshNew + `"}`
		}
		return 200, `{"access_token":"` + accessPrefix + `2","token_type":"Bearer","expires_in":10}`
	})
	path := writeRefresh(t, 0o600)
	clock := clockwork.NewFakeClockAt(start)
	cfg := mailauth.Config{Provider: mailauth.ProviderRefreshToken, ClientID: "app-1", TokenURL: srv.URL, RefreshTokenFile: path}
	src, err := mailauth.NewTokenSource(cfg, mailauth.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Token(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if fi.Mode().Perm() != 0o600 || !bytes.Contains(b, []byte(refreshNew)) {
		t.Errorf("file mode %04o with %q, want 0600 with the rotated token", fi.Mode().Perm(), b)
	}
	clock.Advance(10 * time.Second)
	if _, err := src.Token(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	r := srv.requests()
	if len(r) != 2 || r[0]["grant_type"] != "refresh_token" || r[0]["refresh_token"] != refreshOld ||
		r[0]["client_id"] != "app-1" || r[1]["refresh_token"] != refreshNew {
		t.Errorf("requests %v, want the old then the rotated refresh token", r)
	}
	b, _ = os.ReadFile(path)
	if !bytes.Contains(b, []byte(refreshNew)) {
		t.Errorf("file %q lost the rotated token when none came back", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want the token file alone (no temporary left)", len(entries))
	}
}

// TestRefreshTokenFileMode: a file that group or others can read is
// refused, with a clear and permanent error.
func TestRefreshTokenFileMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		path := writeRefresh(t, mode)
		_, err := mailauth.NewTokenSource(mailauth.Config{Provider: mailauth.ProviderRefreshToken, ClientID: "app-1",
			TokenURL: "https://login.example/token", RefreshTokenFile: path}, mailauth.Options{})
		want := fmt.Sprintf("refresh_token_file %s is mode %04o: group or others can read it; chmod 0600 %s", path, mode, path)
		if err == nil || err.Error() != want || !fault.MarkedPermanent(err) {
			t.Errorf("mode %04o: %v, want permanent %q", mode, err, want)
		}
	}
}

// TestValidate names every bad field.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  mailauth.Config
		want []string
	}{
		{"empty", mailauth.Config{}, []string{`provider: "" is not microsoft, google, refresh_token or static`}},
		{"microsoft", mailauth.Config{Provider: "microsoft", Subject: "x@example.com", Mechanism: "plain",
			ClientSecret: secret, ClientSecretFile: "/s", TokenURL: "http://login.example/token", Scopes: []string{"a b"}},
			[]string{`mechanism: "plain" is not xoauth2 or oauthbearer`, "subject: not used by provider microsoft",
				"client_id: required by provider microsoft",
				"client_secret: give exactly one of client_secret and client_secret_file",
				`token_url: "http://login.example/token": http only to a loopback address; use https`,
				`scopes: "a b" is not one scope`}},
		{"microsoft no tenant", mailauth.Config{Provider: "microsoft", ClientID: "c"},
			[]string{"tenant: required by provider microsoft (or set token_url)",
				"client_secret: give exactly one of client_secret and client_secret_file"}},
		{"google", mailauth.Config{Provider: "google", ClientID: "c", Tenant: "t"},
			[]string{"tenant: not used by provider google", "client_id: not used by provider google",
				"service_account_file: required by provider google", "subject: required by provider google"}},
		{"refresh", mailauth.Config{Provider: "refresh_token", AccessToken: secret},
			[]string{"access_token: not used by provider refresh_token", "client_id: required by provider refresh_token",
				"refresh_token_file: required by provider refresh_token",
				"token_url: required by provider refresh_token (or set tenant for Microsoft)"}},
		{"static", mailauth.Config{Provider: "static"}, []string{"access_token: required by provider static"}},
		{"ok", mailauth.Config{Provider: "microsoft", Tenant: "contoso.onmicrosoft.com", ClientID: "c", ClientSecret: secret,
			Mechanism: "OAUTHBEARER"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Validate:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if err != nil {
				noSecret(t, "Validate", err.Error())
			}
		})
	}
}

// TestNoSecretInLogsOrStrings: fmt and slog show a Config without its
// secrets.
func TestNoSecretInLogsOrStrings(t *testing.T) {
	cfg := microsoft("https://login.example/token")
	cfg.Provider, cfg.AccessToken = mailauth.ProviderStatic, accessPrefix+"static"
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("auth", "cfg", cfg, "secret", cfg.ClientSecret)
	log.Info("auth", slog.Any("cfg", cfg))
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg.ClientSecret)
	noSecret(t, "output", out)
	if !strings.Contains(buf.String(), `"client_secret":"[redacted]"`) || !strings.Contains(buf.String(), `"client_id":"11111111`) {
		t.Errorf("log %s lacks the redacted secret or the client id", buf.String())
	}
	login, err := mailauth.New(mailauth.Config{Provider: "static", AccessToken: accessPrefix + "x"}, "box@example.com", mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	log.Info("login", "login", login)
	noSecret(t, "login log", buf.String())
}

// TestConfigYAML: the YAML keys are the documented ones, decoded strictly.
func TestConfigYAML(t *testing.T) {
	doc := `
provider: microsoft
tenant: contoso.onmicrosoft.com
client_id: 11111111-2222-3333-4444-555555555555
client_secret_file: /run/secrets/scout-imap-client-secret
mechanism: oauthbearer
`
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	var cfg mailauth.Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if cfg.ClientSecretFile != "/run/secrets/scout-imap-client-secret" || cfg.Mechanism != "oauthbearer" {
		t.Errorf("decoded %+v", cfg)
	}
	dec = yaml.NewDecoder(strings.NewReader("provider: google\nsubjekt: x@example.com\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err == nil || !strings.Contains(err.Error(), "subjekt") {
		t.Errorf("unknown key: %v", err)
	}
}

// TestValidateEnv: read from the environment, each error names its
// variable, not the YAML key.
func TestValidateEnv(t *testing.T) {
	err := mailauth.Config{Provider: mailauth.ProviderMicrosoft, Tenant: "acme.example", ClientSecret: "s", ClientSecretFile: "/f", Mechanism: "plain"}.
		ValidateEnv("SCOUT_RECEIVER_IMAP_OAUTH_")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`SCOUT_RECEIVER_IMAP_OAUTH_MECHANISM: "plain" is not xoauth2 or oauthbearer`,
		"SCOUT_RECEIVER_IMAP_OAUTH_CLIENT_ID: required by provider microsoft",
		"SCOUT_RECEIVER_IMAP_OAUTH_CLIENT_SECRET: give exactly one of client_secret and client_secret_file",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "\nclient_id:") || strings.HasPrefix(err.Error(), "mechanism:") {
		t.Errorf("a YAML key is left:\n%v", err)
	}
	if err := (mailauth.Config{Provider: mailauth.ProviderStatic, AccessToken: "t"}).ValidateEnv("X_"); err != nil {
		t.Errorf("valid: %v", err)
	}
}
