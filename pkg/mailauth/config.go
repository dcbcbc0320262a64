package mailauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// Providers of Config.Provider.
const (
	ProviderMicrosoft    = "microsoft"     // client credentials, Microsoft identity platform
	ProviderGoogle       = "google"        // service account with domain-wide delegation (JWT bearer grant)
	ProviderRefreshToken = "refresh_token" // a delegated login's refresh token in a file
	ProviderStatic       = "static"        // a fixed access token
)

// Mechanisms of Config.Mechanism (lower case in configuration; the SASL
// names are MechXOAuth2 and MechOAuthBearer).
const (
	XOAuth2     = "xoauth2"
	OAuthBearer = "oauthbearer"
)

// Default scopes and endpoints.
const (
	MicrosoftScope    = "https://outlook.office365.com/.default"
	GoogleScope       = "https://mail.google.com/"
	GoogleTokenURL    = "https://oauth2.googleapis.com/token"
	microsoftTokenFmt = "https://login.microsoftonline.com/%s/oauth2/v2.0/token"
)

// Secret is a string that never shows itself: String, GoString and
// LogValue print "[redacted]" (or "" when empty). Use string(s) for the
// value.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts %#v too.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue redacts the secret in log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Config selects and configures one token flow. Field names are the YAML
// keys; a service may also fill it from environment variables (env tags,
// to be prefixed by the service). Zero values take the defaults given.
type Config struct {
	// Provider is microsoft, google, refresh_token or static (required).
	Provider string `yaml:"provider" env:"PROVIDER"`
	// Tenant is the Microsoft Entra tenant (id or domain) of the token
	// endpoint https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token.
	// microsoft: required unless TokenURL is set; refresh_token: selects
	// that endpoint when TokenURL is empty.
	Tenant string `yaml:"tenant" env:"TENANT"`
	// ClientID is the application (client) id: microsoft and
	// refresh_token.
	ClientID string `yaml:"client_id" env:"CLIENT_ID"`
	// ClientSecret, or ClientSecretFile (a file holding it; surrounding
	// white space is ignored; read again at every fetch, so a rotated
	// secret is taken up without a restart): microsoft (one of the two
	// required), refresh_token (optional: public clients have none).
	ClientSecret     Secret `yaml:"client_secret" env:"CLIENT_SECRET"`
	ClientSecretFile string `yaml:"client_secret_file" env:"CLIENT_SECRET_FILE"`
	// TokenURL overrides the token endpoint (tests, sovereign clouds such
	// as login.microsoftonline.us). https, or http to a loopback address.
	TokenURL string `yaml:"token_url" env:"TOKEN_URL"`
	// ServiceAccountFile is a Google service account's JSON key file
	// (client_email, private_key, private_key_id, token_uri): google,
	// required.
	ServiceAccountFile string `yaml:"service_account_file" env:"SERVICE_ACCOUNT_FILE"`
	// Subject is the mailbox the service account acts for (domain-wide
	// delegation): google, required.
	Subject string `yaml:"subject" env:"SUBJECT"`
	// Scopes requested. Default: microsoft MicrosoftScope, google
	// GoogleScope, refresh_token none (the refresh keeps the granted ones).
	Scopes []string `yaml:"scopes" env:"SCOPES"`
	// RefreshTokenFile holds the refresh token as JSON ({"refresh_token":
	// "..."}, the shape of oauth2.Token); mode 0600 (no group or other
	// bits): refresh_token, required. A rotated refresh token is written
	// back to it.
	RefreshTokenFile string `yaml:"refresh_token_file" env:"REFRESH_TOKEN_FILE"`
	// AccessToken is the fixed token of provider static (required there).
	AccessToken Secret `yaml:"access_token" env:"ACCESS_TOKEN"`
	// Mechanism is the SASL mechanism: xoauth2 (default) or oauthbearer.
	Mechanism string `yaml:"mechanism" env:"MECHANISM"`
}

// LogValue logs the configuration without its secrets.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("provider", c.Provider), slog.String("mechanism", c.mechanism())}
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add("tenant", c.Tenant)
	add("client_id", c.ClientID)
	add("client_secret", c.ClientSecret.String())
	add("client_secret_file", c.ClientSecretFile)
	add("token_url", c.TokenURL)
	add("service_account_file", c.ServiceAccountFile)
	add("subject", c.Subject)
	add("scopes", strings.Join(c.Scopes, " "))
	add("refresh_token_file", c.RefreshTokenFile)
	add("access_token", c.AccessToken.String())
	return slog.GroupValue(attrs...)
}

func (c Config) mechanism() string {
	if c.Mechanism == "" {
		return XOAuth2
	}
	return strings.ToLower(c.Mechanism)
}

// fields each provider reads (yaml names), besides provider and mechanism.
var providerFields = map[string][]string{
	ProviderMicrosoft:    {"tenant", "client_id", "client_secret", "client_secret_file", "token_url", "scopes"},
	ProviderGoogle:       {"token_url", "service_account_file", "subject", "scopes"},
	ProviderRefreshToken: {"tenant", "client_id", "client_secret", "client_secret_file", "token_url", "scopes", "refresh_token_file"},
	ProviderStatic:       {"access_token"},
}

// Validate reports every field that cannot work, each error starting with
// the field's YAML name, joined with errors.Join; nil when the
// configuration can be used. It reads no file.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Err: fmt.Errorf(format, args...)})
	}
	switch c.mechanism() {
	case XOAuth2, OAuthBearer:
	default:
		bad("mechanism", "%q is not xoauth2 or oauthbearer", c.Mechanism)
	}
	allowed, ok := providerFields[c.Provider]
	if !ok {
		bad("provider", "%q is not microsoft, google, refresh_token or static", c.Provider)
		return errors.Join(errs...)
	}
	set := map[string]bool{
		"tenant": c.Tenant != "", "client_id": c.ClientID != "", "client_secret": c.ClientSecret != "",
		"client_secret_file": c.ClientSecretFile != "", "token_url": c.TokenURL != "",
		"service_account_file": c.ServiceAccountFile != "", "subject": c.Subject != "",
		"scopes": len(c.Scopes) > 0, "refresh_token_file": c.RefreshTokenFile != "",
		"access_token": c.AccessToken != "",
	}
	for _, f := range []string{"tenant", "client_id", "client_secret", "client_secret_file", "token_url",
		"service_account_file", "subject", "scopes", "refresh_token_file", "access_token"} {
		if set[f] && !slices.Contains(allowed, f) {
			bad(f, "not used by provider %s", c.Provider)
		}
	}
	need := func(field string) {
		if !set[field] {
			bad(field, "required by provider %s", c.Provider)
		}
	}
	switch c.Provider {
	case ProviderMicrosoft:
		if !set["tenant"] && !set["token_url"] {
			bad("tenant", "required by provider microsoft (or set token_url)")
		}
		need("client_id")
		if set["client_secret"] == set["client_secret_file"] {
			bad("client_secret", "give exactly one of client_secret and client_secret_file")
		}
	case ProviderGoogle:
		need("service_account_file")
		need("subject")
	case ProviderRefreshToken:
		need("client_id")
		need("refresh_token_file")
		if !set["tenant"] && !set["token_url"] {
			bad("token_url", "required by provider refresh_token (or set tenant for Microsoft)")
		}
		if set["client_secret"] && set["client_secret_file"] {
			bad("client_secret", "give at most one of client_secret and client_secret_file")
		}
	case ProviderStatic:
		need("access_token")
	}
	if strings.ContainsAny(c.Tenant, "/?#% ") {
		bad("tenant", "%q is not a tenant id or domain", c.Tenant)
	}
	if c.TokenURL != "" {
		if err := checkTokenURL(c.TokenURL); err != nil {
			bad("token_url", "%w", err)
		}
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			bad("scopes", "%q is not one scope", s)
		}
	}
	return errors.Join(errs...)
}

// FieldError is one problem Validate found: Field is the YAML key of the
// field at fault ("client_id").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ValidateEnv is Validate for a Config read from the environment with
// prefix (a service's envPrefix, e.g. "SCOUT_RECEIVER_IMAP_OAUTH_"): each
// error names the variable of its field (SCOUT_RECEIVER_IMAP_OAUTH_CLIENT_ID)
// instead of the YAML key.
func (c Config) ValidateEnv(prefix string) error {
	err := c.Validate()
	if err == nil {
		return nil
	}
	env := map[string]string{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		env[f.Tag.Get("yaml")] = prefix + f.Tag.Get("env")
	}
	var out []error
	for _, e := range unjoin(err) {
		var fe *FieldError
		if errors.As(e, &fe) && env[fe.Field] != "" {
			out = append(out, fmt.Errorf("%s: %w", env[fe.Field], fe.Err))
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// unjoin returns the errors errors.Join joined, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkTokenURL accepts https URLs, and http ones to a loopback address.
func checkTokenURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && u.Host != "":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("%q: http only to a loopback address; use https", s)
	}
	return fmt.Errorf("%q is not an https URL", s)
}

// tokenURL is the endpoint of the microsoft and refresh_token flows.
func (c Config) tokenURL() string {
	if c.TokenURL != "" {
		return c.TokenURL
	}
	return fmt.Sprintf(microsoftTokenFmt, url.PathEscape(c.Tenant))
}

func (c Config) scopes() []string {
	if len(c.Scopes) > 0 {
		return c.Scopes
	}
	switch c.Provider {
	case ProviderMicrosoft:
		return []string{MicrosoftScope}
	case ProviderGoogle:
		return []string{GoogleScope}
	}
	return nil
}
