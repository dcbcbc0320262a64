// Package checktarget makes the probe.Target of a service check of the
// check file (pkg/checks): its host, port, TLS mode, login (password_env,
// or an oauth block's login, kept per check by Logins) and expectations.
// The probers themselves (pkg/probe) do not need the check file's parser,
// so that scout-reflector, which runs them for check-login, stays small.
package checktarget

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/jonboulle/clockwork"
)

// FromCheck builds the probe.Target of a service check (an error for a
// check without a Service). lookupEnv (os.LookupEnv
// in a main) reads the variable named by the check's password_env; when it
// is unset or empty the error is a *MissingPasswordError naming the check
// and the variable.
// RootCAs, HelloName and Resolver are left for the caller.
//
// A check with an oauth block gets a new OAuth login (Target.Auth) with a
// token cache of its own; a service that runs checks again and again uses
// Logins.Target instead, which keeps one login per check.
func FromCheck(c *checks.Check, lookupEnv func(string) (string, bool)) (probe.Target, error) {
	return fromCheck(c, lookupEnv, nil)
}

func fromCheck(c *checks.Check, lookupEnv func(string) (string, bool), logins *Logins) (probe.Target, error) {
	s := c.Service
	if s == nil {
		return probe.Target{}, fmt.Errorf("check %s is a %s check, not a service check", c.ID, c.Kind)
	}
	t := probe.Target{
		Host: s.Host, Port: s.Port, TLS: s.TLS, Username: s.Username,
		ExpectGreeting: s.ExpectGreeting, CertWarningDays: s.CertWarningDays,
	}
	if s.PasswordEnv != "" {
		pw, ok := lookupEnv(s.PasswordEnv)
		if !ok || pw == "" {
			return t, &probe.MissingPasswordError{Check: c.ID, Variable: s.PasswordEnv}
		}
		t.Password = pw
	}
	if s.OAuth != nil {
		login, err := logins.login(c, lookupEnv)
		if err != nil {
			return t, err
		}
		t.Auth = login
	}
	if err := t.Validate(); err != nil {
		return t, fmt.Errorf("check %q: %w", c.ID, err)
	}
	return t, nil
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
func (l *Logins) Target(c *checks.Check, lookupEnv func(string) (string, bool)) (probe.Target, error) {
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
			return "", &probe.MissingPasswordError{Check: c.ID, Variable: name, Field: "oauth." + field}
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
		return nil, &probe.CredentialsError{Check: c.ID, Err: err}
	}
	if l != nil {
		l.m[c.ID] = loginEntry{key: key, login: login}
	}
	return login, nil
}
