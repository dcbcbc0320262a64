package mailauth

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/jonboulle/clockwork"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"
)

// TokenSource gives an OAuth 2.0 access token. The flows of Config fetch
// a new token at every call; a *Cache keeps one until shortly before it
// expires. Errors are marked with pkg/fault.
type TokenSource interface {
	Token(ctx context.Context) (*oauth2.Token, error)
}

// Options are what New and NewTokenSource take besides the Config.
type Options struct {
	// Clock drives the cache; nil means the real clock.
	Clock clockwork.Clock
	// HTTPClient talks to the token endpoint; nil means a client with a 30 s
	// timeout. Each call is also bounded by its context.
	HTTPClient *http.Client
}

// NewTokenSource validates cfg, reads the files it names (a service
// account key is parsed now, so that a broken key fails at start) and
// returns the flow behind a Cache. Errors name the bad field or file and
// are marked permanent.
func NewTokenSource(cfg Config, opts Options) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fault.Permanent(err)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	var src TokenSource
	switch cfg.Provider {
	case ProviderMicrosoft:
		src = &clientCredentials{cfg: cfg, hc: hc}
	case ProviderGoogle:
		sa, err := newServiceAccount(cfg, hc)
		if err != nil {
			return nil, fault.Permanent(err)
		}
		src = sa
	case ProviderRefreshToken:
		if _, err := readRefreshToken(cfg.RefreshTokenFile); err != nil {
			return nil, err
		}
		src = &refreshTokenFile{cfg: cfg, hc: hc}
	case ProviderStatic:
		src = staticToken(cfg.AccessToken)
	}
	return NewCache(src, opts.Clock), nil
}

func withClient(ctx context.Context, hc *http.Client) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, hc)
}

// clientSecret is the configured secret, read from its file when one is
// named (at every call, so that a rotated secret is taken up).
func clientSecret(cfg Config) (string, error) {
	if cfg.ClientSecretFile == "" {
		return string(cfg.ClientSecret), nil
	}
	b, err := os.ReadFile(cfg.ClientSecretFile)
	if err != nil {
		return "", fault.Permanent(fmt.Errorf("client_secret_file: %w", err))
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fault.Permanent(fmt.Errorf("client_secret_file %s is empty", cfg.ClientSecretFile))
	}
	return s, nil
}

// clientCredentials is the client credentials grant (RFC 6749 section
// 4.4): POST grant_type=client_credentials, client_id, client_secret and
// scope to the token endpoint (the secret in the form body, as the
// Microsoft identity platform documents it).
type clientCredentials struct {
	cfg Config
	hc  *http.Client
}

func (s *clientCredentials) Token(ctx context.Context) (*oauth2.Token, error) {
	secret, err := clientSecret(s.cfg)
	if err != nil {
		return nil, err
	}
	cc := &clientcredentials.Config{ClientID: s.cfg.ClientID, ClientSecret: secret, TokenURL: s.cfg.tokenURL(),
		Scopes: s.cfg.scopes(), AuthStyle: oauth2.AuthStyleInParams}
	t, err := cc.Token(withClient(ctx, s.hc))
	if err != nil {
		return nil, endpointError(err)
	}
	return t, nil
}

// serviceAccountKey is the part of a Google service account JSON key file
// that the JWT bearer grant needs.
type serviceAccountKey struct {
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

// serviceAccount is the JWT bearer grant (RFC 7523 section 2.1): a JWT
// signed with the service account's RSA key (iss = client_email, sub =
// the mailbox, scope, aud = the token endpoint) is exchanged for an
// access token.
type serviceAccount struct {
	conf *jwt.Config
	hc   *http.Client
}

func newServiceAccount(cfg Config, hc *http.Client) (*serviceAccount, error) {
	b, err := os.ReadFile(cfg.ServiceAccountFile)
	if err != nil {
		return nil, fmt.Errorf("service_account_file: %w", err)
	}
	var k serviceAccountKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("service_account_file %s: not a service account JSON key: %w", cfg.ServiceAccountFile, err)
	}
	var missing []string
	if k.ClientEmail == "" {
		missing = append(missing, "client_email")
	}
	if k.PrivateKey == "" {
		missing = append(missing, "private_key")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("service_account_file %s: no %s", cfg.ServiceAccountFile, strings.Join(missing, ", "))
	}
	if err := checkRSAKey([]byte(k.PrivateKey)); err != nil {
		return nil, fmt.Errorf("service_account_file %s: private_key: %w", cfg.ServiceAccountFile, err)
	}
	tokenURL := cfg.TokenURL
	if tokenURL == "" {
		tokenURL = k.TokenURI
	}
	if tokenURL == "" {
		tokenURL = GoogleTokenURL
	}
	if err := checkTokenURL(tokenURL); err != nil {
		return nil, fmt.Errorf("service_account_file %s: token_uri: %w", cfg.ServiceAccountFile, err)
	}
	return &serviceAccount{hc: hc, conf: &jwt.Config{Email: k.ClientEmail, PrivateKey: []byte(k.PrivateKey),
		PrivateKeyID: k.PrivateKeyID, Subject: cfg.Subject, Scopes: cfg.scopes(), TokenURL: tokenURL}}, nil
}

// checkRSAKey accepts a PEM PKCS#8 or PKCS#1 RSA private key, as
// x/oauth2/jwt does. Its errors never quote the key.
func checkRSAKey(b []byte) error {
	block, _ := pem.Decode(b)
	if block == nil {
		return errors.New("not PEM")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if _, ok := k.(interface{ Size() int }); !ok {
			return errors.New("not an RSA key")
		}
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		return errors.New("neither a PKCS#8 nor a PKCS#1 RSA key")
	}
	return nil
}

func (s *serviceAccount) Token(ctx context.Context) (*oauth2.Token, error) {
	// A new source each time: x/oauth2/jwt's own source caches on the
	// wall clock, and binds the context it was made with.
	t, err := s.conf.TokenSource(withClient(ctx, s.hc)).Token()
	if err != nil {
		return nil, endpointError(err)
	}
	return t, nil
}

// refreshTokenFile is the refresh grant (RFC 6749 section 6) with a
// refresh token kept in a file. When the endpoint answers with a new
// refresh token (rotation, as Microsoft does), the file is replaced
// atomically (a temporary file in the same directory, mode 0600, synced,
// renamed over it).
type refreshTokenFile struct {
	cfg Config
	hc  *http.Client
	mu  sync.Mutex // one refresh at a time: a rotated token is used once
}

func (s *refreshTokenFile) Token(ctx context.Context) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stored, err := readRefreshToken(s.cfg.RefreshTokenFile)
	if err != nil {
		return nil, err
	}
	secret, err := clientSecret(s.cfg)
	if err != nil {
		return nil, err
	}
	conf := &oauth2.Config{ClientID: s.cfg.ClientID, ClientSecret: secret, Scopes: s.cfg.scopes(),
		Endpoint: oauth2.Endpoint{TokenURL: s.cfg.tokenURL(), AuthStyle: oauth2.AuthStyleInParams}}
	t, err := conf.TokenSource(withClient(ctx, s.hc), &oauth2.Token{RefreshToken: stored}).Token()
	if err != nil {
		return nil, endpointError(err)
	}
	if t.RefreshToken != "" && t.RefreshToken != stored {
		if err := writeRefreshToken(s.cfg.RefreshTokenFile, t.RefreshToken); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// refreshTokenJSON is the refresh token file's content (the refresh_token
// member of oauth2.Token's JSON; other members are ignored).
type refreshTokenJSON struct {
	RefreshToken string `json:"refresh_token"`
}

// readRefreshToken reads the refresh token file, refusing one that group
// or others may read (mode & 0077 != 0). Errors are permanent and never
// quote the file's content.
func readRefreshToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fault.Permanent(fmt.Errorf("refresh_token_file: %w", err))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fault.Permanent(fmt.Errorf("refresh_token_file %s is mode %04o: group or others can read it; chmod 0600 %s", path, perm, path))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fault.Permanent(fmt.Errorf("refresh_token_file: %w", err))
	}
	var v refreshTokenJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fault.Permanent(fmt.Errorf("refresh_token_file %s is not JSON with a refresh_token", path))
	}
	if v.RefreshToken == "" {
		return "", fault.Permanent(fmt.Errorf("refresh_token_file %s has no refresh_token", path))
	}
	return v.RefreshToken, nil
}

// writeRefreshToken replaces the file atomically with mode 0600.
func writeRefreshToken(path, token string) error {
	b, err := json.Marshal(refreshTokenJSON{RefreshToken: token})
	if err != nil {
		return fmt.Errorf("refresh_token_file: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("refresh_token_file: write back the rotated token: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("refresh_token_file: write back the rotated token: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("refresh_token_file: write back the rotated token: %w", err)
	}
	return nil
}

// staticToken is provider static: the same token, without an expiry.
type staticToken Secret

func (s staticToken) Token(context.Context) (*oauth2.Token, error) {
	return &oauth2.Token{AccessToken: string(s), TokenType: "Bearer"}, nil
}

// String redacts the token.
func (s staticToken) String() string { return Secret(s).String() }
