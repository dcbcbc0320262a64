package notifier

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/emailscout/emailscout/internal/platform"

	"github.com/emailscout/emailscout/services/notifier/internal/logsms"
	"github.com/emailscout/emailscout/services/notifier/internal/twilio"
	"github.com/emailscout/emailscout/services/notifier/internal/webhook"
)

// Environments (SCOUT_ENV).
const (
	EnvProduction = "production"
	EnvDev        = "dev"
)

// Provider names (SCOUT_NOTIFIER_PROVIDER).
const (
	ProviderTwilio  = twilio.Name
	ProviderLog     = logsms.Name
	ProviderWebhook = webhook.Name
)

// Secret is a value that is never logged (platform.Secret).
type Secret = platform.Secret

// TwilioConfig is the Twilio account, from the environment.
type TwilioConfig struct {
	AccountSID          string `env:"TWILIO_ACCOUNT_SID"`
	AuthToken           Secret `env:"TWILIO_AUTH_TOKEN"`
	From                string `env:"TWILIO_FROM"`
	MessagingServiceSID string `env:"TWILIO_MESSAGING_SERVICE_SID"`
}

func (t TwilioConfig) any() bool {
	return t.AccountSID != "" || t.AuthToken != "" || t.From != "" || t.MessagingServiceSID != ""
}

// missing names the variables a Twilio provider still needs.
func (t TwilioConfig) missing() []string {
	var m []string
	if t.AccountSID == "" {
		m = append(m, "TWILIO_ACCOUNT_SID")
	}
	if t.AuthToken == "" {
		m = append(m, "TWILIO_AUTH_TOKEN")
	}
	if t.From == "" && t.MessagingServiceSID == "" {
		m = append(m, "TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID")
	}
	return m
}

// Config configures the notifier. Every field has an environment variable
// (docs/configuration.md, "Notifier"); zero values take the defaults shown.
type Config struct {
	// Env is "production" (the default: no credentials is an error) or
	// "dev" (no credentials: the log provider, with a warning).
	Env string `env:"SCOUT_ENV" envDefault:"production"`
	// Provider is "twilio", "log" or "webhook"; empty picks twilio when any
	// TWILIO_* variable is set, else log in dev and an error in production.
	Provider     string `env:"SCOUT_NOTIFIER_PROVIDER"`
	WebhookURL   Secret `env:"SCOUT_NOTIFIER_WEBHOOK_URL"`
	WebhookToken Secret `env:"SCOUT_NOTIFIER_WEBHOOK_TOKEN"`
	Twilio       TwilioConfig

	// MaxAttempts bounds the provider requests for one message (default 5).
	MaxAttempts int `env:"SCOUT_NOTIFIER_MAX_ATTEMPTS" envDefault:"5"`
	// RetryFor bounds the time from the first attempt to the last
	// (default 10m).
	RetryFor time.Duration `env:"SCOUT_NOTIFIER_RETRY_FOR" envDefault:"10m"`
	// RetryInitial is the first backoff (default 5s); each next one is up
	// to 3 times longer, with ±50% jitter, capped at RetryMax (default 2m).
	RetryInitial time.Duration `env:"SCOUT_NOTIFIER_RETRY_INITIAL" envDefault:"5s"`
	RetryMax     time.Duration `env:"SCOUT_NOTIFIER_RETRY_MAX" envDefault:"2m"`
	// SendTimeout bounds one provider request (default 15s).
	SendTimeout time.Duration `env:"SCOUT_NOTIFIER_SEND_TIMEOUT" envDefault:"15s"`
	// Lease is how long a pending receipt belongs to the replica that
	// wrote it (default 5m); it is renewed before every attempt, so it must
	// exceed SendTimeout + RetryMax.
	Lease time.Duration `env:"SCOUT_NOTIFIER_LEASE" envDefault:"5m"`
	// OpenWait is how long a resolved whose open has left no receipt waits
	// for the open to be handled (default 10m); after that it is recorded
	// as suppressed.
	OpenWait time.Duration `env:"SCOUT_NOTIFIER_OPEN_WAIT" envDefault:"10m"`
	// Workers handle incidents of different checks in parallel (default 4).
	Workers int `env:"SCOUT_NOTIFIER_WORKERS" envDefault:"4"`
}

// Defaults is the configuration of an empty environment (the envDefault
// tags above: the one place the defaults are written).
func Defaults() Config { return platform.Defaults[Config]() }

// Validate reports every problem, naming the variable.
func (c Config) Validate() error {
	var errs []error
	if c.Env != EnvProduction && c.Env != EnvDev {
		errs = append(errs, fmt.Errorf("SCOUT_ENV=%q: must be production or dev", c.Env))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 20 {
		errs = append(errs, fmt.Errorf("SCOUT_NOTIFIER_MAX_ATTEMPTS=%d: must be between 1 and 20", c.MaxAttempts))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("SCOUT_NOTIFIER_WORKERS=%d: must be at least 1", c.Workers))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"SCOUT_NOTIFIER_RETRY_FOR", c.RetryFor}, {"SCOUT_NOTIFIER_RETRY_INITIAL", c.RetryInitial},
		{"SCOUT_NOTIFIER_RETRY_MAX", c.RetryMax}, {"SCOUT_NOTIFIER_SEND_TIMEOUT", c.SendTimeout},
		{"SCOUT_NOTIFIER_LEASE", c.Lease}, {"SCOUT_NOTIFIER_OPEN_WAIT", c.OpenWait},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s=%v: must be positive", d.name, d.v))
		}
	}
	if c.RetryMax < c.RetryInitial {
		errs = append(errs, fmt.Errorf("SCOUT_NOTIFIER_RETRY_MAX=%v: must not be shorter than SCOUT_NOTIFIER_RETRY_INITIAL (%v)", c.RetryMax, c.RetryInitial))
	}
	if c.Lease <= c.SendTimeout+c.RetryMax {
		errs = append(errs, fmt.Errorf("SCOUT_NOTIFIER_LEASE=%v: must exceed SCOUT_NOTIFIER_SEND_TIMEOUT + SCOUT_NOTIFIER_RETRY_MAX (%v), or a live sender could lose its receipt", c.Lease, c.SendTimeout+c.RetryMax))
	}
	return errors.Join(errs...)
}

// ProviderDeps are what NewProvider may need besides the configuration.
type ProviderDeps struct {
	// HTTPClient is used by the twilio and webhook providers; nil means a
	// client with a 10s timeout. Tests inject one whose transport reaches
	// a local fake.
	HTTPClient *http.Client
	// Stdout receives the log provider's lines.
	Stdout io.Writer
	// Logger receives the warning of the dev fallback.
	Logger *slog.Logger
}

// NewProvider builds the provider cfg names and validates it:
//
//   - SCOUT_NOTIFIER_PROVIDER=twilio, or unset with any TWILIO_* variable:
//     Twilio; a missing credential is an error naming the variables.
//   - unset without TWILIO_* variables: in production an error naming the
//     missing variables; in dev the log provider, with a warning.
//   - log: prints each message to d.Stdout; refused in production.
//   - webhook: JSON POST to SCOUT_NOTIFIER_WEBHOOK_URL.
func NewProvider(cfg Config, d ProviderDeps) (Provider, error) {
	platform.FillDefaults(&cfg)
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Env != EnvProduction && cfg.Env != EnvDev {
		return nil, fmt.Errorf("SCOUT_ENV=%q: must be production or dev", cfg.Env)
	}
	name := cfg.Provider
	if name == "" {
		switch {
		case cfg.Twilio.any():
			name = ProviderTwilio
		case cfg.Env == EnvDev:
			d.Logger.Warn("no Twilio credentials in dev: SMS are printed, not sent (set TWILIO_* or SCOUT_NOTIFIER_PROVIDER)", "provider", ProviderLog)
			name = ProviderLog
		default:
			return nil, fmt.Errorf("notifier: no SMS provider in production: Twilio credentials are missing (%v are not set); "+
				"set them from the Kubernetes Secret, or set SCOUT_NOTIFIER_PROVIDER=webhook with SCOUT_NOTIFIER_WEBHOOK_URL, or SCOUT_ENV=dev to print messages instead",
				joinNames(cfg.Twilio.missing()))
		}
	}
	switch name {
	case ProviderTwilio:
		if m := cfg.Twilio.missing(); len(m) > 0 {
			return nil, fmt.Errorf("notifier: the twilio provider needs %s, which are not set", joinNames(m))
		}
		p, err := twilio.New(twilio.Config{
			AccountSID: cfg.Twilio.AccountSID, AuthToken: cfg.Twilio.AuthToken.Reveal(),
			From: cfg.Twilio.From, MessagingServiceSID: cfg.Twilio.MessagingServiceSID, HTTPClient: d.HTTPClient,
		})
		if err != nil {
			return nil, fmt.Errorf("notifier: twilio: %w", err)
		}
		return p, nil
	case ProviderLog:
		if cfg.Env == EnvProduction {
			return nil, errors.New("notifier: SCOUT_NOTIFIER_PROVIDER=log only prints messages and is refused with SCOUT_ENV=production")
		}
		if d.Stdout == nil {
			return nil, errors.New("notifier: the log provider needs a writer")
		}
		return logsms.New(d.Stdout), nil
	case ProviderWebhook:
		p, err := webhook.New(webhook.Config{URL: cfg.WebhookURL.Reveal(), Token: cfg.WebhookToken.Reveal(), HTTPClient: d.HTTPClient})
		if err != nil {
			return nil, fmt.Errorf("notifier: webhook: %w", err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("SCOUT_NOTIFIER_PROVIDER=%q: must be twilio, log or webhook", name)
}

// NewLogProvider returns the development provider: one readable line per
// would-be SMS on w (what `scout dev` shows).
func NewLogProvider(w io.Writer) Provider { return logsms.New(w) }

func joinNames(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	s := ""
	for i, n := range names {
		switch {
		case i == 0:
		case i == len(names)-1:
			s += " and "
		default:
			s += ", "
		}
		s += n
	}
	return s
}

// Compile-time checks: every provider implements Provider.
var (
	_ Provider = (*twilio.Provider)(nil)
	_ Provider = (*logsms.Provider)(nil)
	_ Provider = (*webhook.Provider)(nil)
)
