package probe

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/jonboulle/clockwork"
)

// CredentialsError is FromCheck's error when a check's OAuth login cannot
// be built from what the monitor holds (a service account key file that
// cannot be read or is not a key): the monitor's credential, class
// ClassCredentials. It names the check and field, never a secret.
type CredentialsError struct {
	Check string
	Err   error
}

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("check %q: oauth: %v", e.Check, e.Err)
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// ClassOf is the class of a check that FromCheck or Logins.Target could
// not make a Target of: ClassNoPassword for a missing variable
// (*MissingPasswordError), ClassCredentials for an OAuth login that
// cannot be built (*CredentialsError), ClassBadTarget otherwise; "" for
// nil. All are the monitor's (StatusMonitorError).
func ClassOf(err error) string {
	var missing *MissingPasswordError
	var cred *CredentialsError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &missing):
		return ClassNoPassword
	case errors.As(err, &cred):
		return ClassCredentials
	}
	return ClassBadTarget
}

// Logins keeps the OAuth logins of service checks: one per check, built
// the first time the check runs and again only when its oauth block, its
// username or the secret its variables hold changes, so that the token
// cache (mailauth.Cache) serves every run and renews the token before it
// expires. Safe for concurrent use.
type Logins struct {
	opts mailauth.Options

	mu sync.Mutex
	m  map[string]loginEntry // check id
}

type loginEntry struct {
	key   string // what the login was built from, hashed
	login *mailauth.Login
}

// NewLogins returns an empty Logins whose token caches run on clock (nil:
// the real clock) and fetch with hc (nil: mailauth's default client).
func NewLogins(clock clockwork.Clock, hc *http.Client) *Logins {
	return &Logins{opts: mailauth.Options{Clock: clock, HTTPClient: hc}, m: map[string]loginEntry{}}
}

// Target is FromCheck with the check's OAuth login from l.
func (l *Logins) Target(c *checks.Check, lookupEnv func(string) (string, bool)) (Target, error) {
	return fromCheck(c, lookupEnv, l)
}

// login returns the OAuth login of c: its secret from the variable that
// client_secret_env names (microsoft) or its service account key from the
// file that service_account_file_env names (google). l nil builds a new
// one.
func (l *Logins) login(c *checks.Check, lookupEnv func(string) (string, bool)) (*mailauth.Login, error) {
	o := c.Service.OAuth
	cfg := mailauth.Config{Provider: o.Provider, Tenant: o.Tenant, ClientID: o.ClientID, Scopes: o.Scopes,
		Mechanism: o.Mechanism, TokenURL: o.TokenURL, Subject: o.Subject}
	read := func(field, name string) (string, error) {
		v, ok := lookupEnv(name)
		if !ok || v == "" {
			return "", &MissingPasswordError{Check: c.ID, Variable: name, Field: "oauth." + field}
		}
		return v, nil
	}
	var err error
	var secret string
	switch o.Provider {
	case checks.OAuthMicrosoft:
		if secret, err = read("client_secret_env", o.ClientSecretEnv); err != nil {
			return nil, err
		}
		cfg.ClientSecret = mailauth.Secret(secret)
	case checks.OAuthGoogle:
		if cfg.ServiceAccountFile, err = read("service_account_file_env", o.ServiceAccountFileEnv); err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{fmt.Sprintf("%+v", *o), c.Service.Username, secret, cfg.ServiceAccountFile}, "\x00")))
	key := hex.EncodeToString(sum[:])
	opts := mailauth.Options{}
	if l != nil {
		opts = l.opts
		l.mu.Lock()
		defer l.mu.Unlock()
		if e, ok := l.m[c.ID]; ok && e.key == key {
			return e.login, nil
		}
	}
	login, err := mailauth.New(cfg, c.Service.Username, opts)
	if err != nil {
		return nil, &CredentialsError{Check: c.ID, Err: err}
	}
	if l != nil {
		l.m[c.ID] = loginEntry{key: key, login: login}
	}
	return login, nil
}
