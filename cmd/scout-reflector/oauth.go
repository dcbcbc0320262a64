package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/imapwatch"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/submit"
)

// tokenHTTPClient returns the client for token endpoints: the system
// roots (the endpoints are the identity provider's, not the customer's
// mail server), 30 s per request.
func tokenHTTPClient() *http.Client { return &http.Client{Timeout: 30 * time.Second} }

// completeOAuth validates the oauth block of section ("imap" or "smtp"),
// fills its client secret from the environment variable envSecret when
// the block names none, checks that the secret files it names are private
// (mode 0600), and builds the login of username (no token is fetched yet:
// mailauth reads the refresh token or service account file now, so that
// a broken one fails at start). Every error names the file, line and key,
// e.g. "reflector.yaml:9: imap.oauth.client_id: required by provider
// microsoft".
func (r *resolved) completeOAuth(e env, src source, section string, cfg *mailauth.Config, username, envSecret string) (*mailauth.Login, []error) {
	key := func(field string) string { return section + ".oauth." + field }
	where := func(field string) string {
		k := key(field)
		if _, ok := src.lines[k]; ok || field == "" {
			return src.where(strings.TrimSuffix(k, "."))
		}
		if line, ok := src.lines[section+".oauth"]; ok {
			return fmt.Sprintf("%s:%d: %s", src.file, line, k)
		}
		return k
	}
	if (cfg.Provider == mailauth.ProviderMicrosoft || cfg.Provider == mailauth.ProviderRefreshToken) &&
		cfg.ClientSecret == "" && cfg.ClientSecretFile == "" {
		cfg.ClientSecret = mailauth.Secret(e.getenv(envSecret))
	}
	var errs []error
	if err := cfg.Validate(); err != nil {
		for _, one := range unjoin(err) {
			field, msg, ok := strings.Cut(one.Error(), ": ")
			if !ok || strings.ContainsAny(field, " \"") {
				errs = append(errs, fmt.Errorf("%s: %w", where(""), one))
				continue
			}
			if field == "client_secret" && cfg.ClientSecret == "" && cfg.ClientSecretFile == "" {
				msg += " (or set $" + envSecret + ")"
			}
			errs = append(errs, fmt.Errorf("%s: %s", where(field), msg))
		}
		return nil, errs
	}
	for field, path := range map[string]string{"client_secret_file": cfg.ClientSecretFile, "service_account_file": cfg.ServiceAccountFile} {
		if path == "" {
			continue
		}
		if err := checkPrivate(path, strings.ReplaceAll(field, "_", " ")); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where(field), err))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if r.mode == modeLogin {
		return nil, nil // the refresh token file is what `login` writes
	}
	login, err := mailauth.New(*cfg, username, mailauth.Options{HTTPClient: tokenHTTPClient()})
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", where(""), err)}
	}
	return login, nil
}

// unjoin returns the errors of an errors.Join, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// imapAuth is the imapwatch.Authenticator of the IMAP login (a nil
// interface without OAuth, never a typed nil).
func (r *resolved) imapAuth() imapwatch.Authenticator {
	if r.imapLogin == nil {
		return nil
	}
	return r.imapLogin
}

// smtpAuth is the submit.Authenticator of the SMTP output (nil interface
// without OAuth).
func (r *resolved) smtpAuth() submit.Authenticator {
	if r.smtpLogin == nil {
		return nil
	}
	return r.smtpLogin
}

// renewBeforeExpiry is imap.renew_before_expiry with OAuth, else 0.
func (r *resolved) renewBeforeExpiry() time.Duration {
	if r.imapLogin == nil {
		return 0
	}
	return r.IMAP.RenewBeforeExpiry
}

// logLogins logs how imap mode logs in: the OAuth blocks without their
// secrets (mailauth.Config.LogValue redacts them).
func logLogins(log *slog.Logger, r *resolved) {
	if r.IMAP.OAuth != nil {
		log.Info("IMAP login with OAuth", "user", r.IMAP.Username, "oauth", *r.IMAP.OAuth,
			"renew_before_expiry", r.IMAP.RenewBeforeExpiry.String())
	}
	switch {
	case r.SMTP.OAuth != nil:
		log.Info("SMTP login with OAuth", "user", r.SMTP.Username, "oauth", *r.SMTP.OAuth)
	case r.smtpLogin != nil:
		log.Info("SMTP login with OAuth, sharing the IMAP login's tokens", "user", r.SMTP.Username)
	}
}
