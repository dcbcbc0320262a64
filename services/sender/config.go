package sender

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emersion/go-sasl"
	"github.com/jonboulle/clockwork"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/submit"
)

// Delivery modes (Config.Delivery).
const (
	// DeliveryRelay submits every probe to the monitor's own relay
	// (SCOUT_RELAY_ADDR). Any failure is the monitor's (monitor_error).
	DeliveryRelay = "relay"
	// DeliveryMX delivers each probe straight to the MX hosts of the
	// target's domain (RFC 5321 section 5.1). Refusals are the customer's.
	DeliveryMX = "mx"
)

// Config configures the sender of one site. Every field is read from the
// environment variable in its env tag (docs/configuration.md, "sender").
type Config struct {
	// Site is this sender's site name ([a-z0-9_-]{1,63}); it consumes
	// test.scheduled.<site>.>.
	Site string `env:"SCOUT_SITE,required"`
	// ReturnAddress is the signed r= address of every probe and its
	// envelope sender (MAIL FROM), e.g. scout-return+eu-west@monitor.example.
	ReturnAddress string `env:"SCOUT_RETURN_ADDRESS,required"`
	// VERP: each probe's envelope sender is the return address with a
	// signed token that names the test (probemail.VERPAddress), so that a
	// bounce identifies its test even when it quotes none of the probe.
	// The site's receiver must take the VERP addresses (it does).
	VERP bool `env:"SCOUT_VERP" envDefault:"true"`
	// ProbeKeys is the key list in probemail.ParseKeys format
	// ("customer:keyid:base64-secret", separated by ';', ',' or new lines).
	ProbeKeys Secret `env:"SCOUT_PROBE_KEYS,required"`
	// Delivery is DeliveryRelay or DeliveryMX.
	Delivery string `env:"SCOUT_DELIVERY" envDefault:"relay"`
	// RelayAddr is the relay's host:port (relay delivery).
	RelayAddr string `env:"SCOUT_RELAY_ADDR"`
	// RelayTLS is the relay's TLS mode: submit.TLSStartTLS (required
	// STARTTLS, RFC 3207), TLSOpportunistic, TLSNone or TLSImplicit (RFC 8314).
	RelayTLS string `env:"SCOUT_RELAY_TLS" envDefault:"starttls"`
	// RelayUsername and RelayPassword enable AUTH PLAIN (RFC 4616) at the
	// relay; the password is only sent over TLS (or to a loopback relay).
	RelayUsername string `env:"SCOUT_RELAY_USERNAME"`
	RelayPassword Secret `env:"SCOUT_RELAY_PASSWORD"`
	// RelayOAuth, when its Provider is set, makes the relay login AUTH
	// XOAUTH2 or OAUTHBEARER (RFC 7628) as RelayUsername with an OAuth 2.0
	// token (pkg/mailauth) instead of RelayPassword: a relay on Microsoft
	// 365 (smtp.office365.com:587, SMTP.SendAsApp) or Google Workspace
	// (smtp.gmail.com:587).
	RelayOAuth mailauth.Config `envPrefix:"SCOUT_RELAY_OAUTH_"`
	// RelaySessionMessages is how many probes one SMTP session with the
	// relay carries (one MAIL transaction each, RFC 5321 section 3.3)
	// before it is ended with QUIT; 1 opens a new session for every probe.
	// A session unused for 5 s is ended (submit.Pool's IdleTimeout).
	RelaySessionMessages int `env:"SCOUT_RELAY_SESSION_MESSAGES" envDefault:"100"`
	// HeloName is the name sent in EHLO; empty means the domain of
	// ReturnAddress.
	HeloName string `env:"SCOUT_HELO_NAME"`
	// MXPort is the port of the customer's MX hosts (mx delivery): 25, or
	// another port in tests.
	MXPort int `env:"SCOUT_MX_PORT" envDefault:"25"`
	// SubmitTimeout bounds one submission, DNS included. It must stay below
	// the consumer's AckWait (events.SenderConsumer) minus 30s.
	SubmitTimeout time.Duration `env:"SCOUT_SUBMIT_TIMEOUT" envDefault:"60s"`
	// Workers submit in parallel (tests of one test id go to one worker).
	Workers int `env:"SCOUT_SENDER_WORKERS" envDefault:"8"`
	// DKIMKeyFile is a PEM private key (RSA 2048+ or Ed25519; a Kubernetes
	// Secret mounted as a file) that DKIM-signs every probe (RFC 6376), so
	// that the customer's filters do not junk it; empty: probes are not
	// signed. DKIMSelector names its public key's record
	// (<selector>._domainkey.<domain>); DKIMDomain is d=, by default the
	// return address's domain, which aligns with the probe's From (DMARC).
	DKIMKeyFile  string `env:"SCOUT_DKIM_KEY_FILE"`
	DKIMSelector string `env:"SCOUT_DKIM_SELECTOR"`
	DKIMDomain   string `env:"SCOUT_DKIM_DOMAIN"`
}

// Secret is a value that is never logged (platform.Secret).
type Secret = platform.Secret

// DKIM returns the probes' DKIM signer (nil when SCOUT_DKIM_KEY_FILE is
// not set), reading the key file; its errors name the variable, never the
// key.
func (c Config) DKIM() (*probemail.DKIMSigner, error) {
	if c.DKIMKeyFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(c.DKIMKeyFile)
	if err != nil {
		return nil, fmt.Errorf("SCOUT_DKIM_KEY_FILE=%q: %w", c.DKIMKeyFile, err)
	}
	key, err := probemail.ParseDKIMKey(data)
	if err != nil {
		return nil, fmt.Errorf("SCOUT_DKIM_KEY_FILE=%q: %w", c.DKIMKeyFile, err)
	}
	domain := c.DKIMDomain
	if domain == "" {
		domain = domainOf(c.ReturnAddress)
	}
	return &probemail.DKIMSigner{Domain: domain, Selector: c.DKIMSelector, Key: key}, nil
}

// Defaults is the configuration of an empty environment (the envDefault
// tags above: the one place the defaults are written).
func Defaults() Config { return platform.Defaults[Config]() }

// Validate reports every setting that can never work, each naming its
// environment variable. It does not parse the keys (see Keyring).
func (c Config) Validate() error {
	var errs []error
	if !events.ValidToken(c.Site) {
		errs = append(errs, fmt.Errorf("SCOUT_SITE=%q: must be 1 to 63 characters of [a-z0-9_-]", c.Site))
	}
	if !validAddress(c.ReturnAddress) {
		errs = append(errs, fmt.Errorf("SCOUT_RETURN_ADDRESS=%q: must be a plain address such as scout-return+eu-west@monitor.example", c.ReturnAddress))
	}
	if strings.TrimSpace(string(c.ProbeKeys)) == "" {
		errs = append(errs, errors.New("SCOUT_PROBE_KEYS: is empty"))
	}
	if (c.DKIMKeyFile == "") != (c.DKIMSelector == "") {
		errs = append(errs, fmt.Errorf("SCOUT_DKIM_KEY_FILE=%q and SCOUT_DKIM_SELECTOR=%q: set both (DKIM-signed probes) or neither", c.DKIMKeyFile, c.DKIMSelector))
	}
	switch c.Delivery {
	case DeliveryRelay:
		rc := c.relayConfig()
		if c.RelayOAuth.Provider != "" {
			rc.Auth = oauthPending{} // the login is made by New; here only its presence counts
			if err := c.RelayOAuth.ValidateEnv("SCOUT_RELAY_OAUTH_"); err != nil {
				errs = append(errs, err)
			}
			if c.RelayUsername == "" {
				errs = append(errs, errors.New("SCOUT_RELAY_USERNAME: an OAuth relay login needs the user name (the mailbox that sends)"))
			}
		}
		if err := rc.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("SCOUT_RELAY_ADDR=%q, SCOUT_RELAY_TLS=%q, SCOUT_RELAY_USERNAME/PASSWORD/OAUTH_PROVIDER: %w", c.RelayAddr, c.RelayTLS, err))
		}
		if c.RelaySessionMessages < 1 {
			errs = append(errs, fmt.Errorf("SCOUT_RELAY_SESSION_MESSAGES=%d: must be at least 1 (1: a new session per probe)", c.RelaySessionMessages))
		}
		if c.RelayTLS == "" {
			errs = append(errs, errors.New(`SCOUT_RELAY_TLS="": must be starttls, opportunistic, none or implicit`))
		}
	case DeliveryMX:
		if c.MXPort < 1 || c.MXPort > 65535 {
			errs = append(errs, fmt.Errorf("SCOUT_MX_PORT=%d: must be a TCP port (1-65535)", c.MXPort))
		}
	default:
		errs = append(errs, fmt.Errorf("SCOUT_DELIVERY=%q: must be %q or %q", c.Delivery, DeliveryRelay, DeliveryMX))
	}
	if maxTimeout := events.SenderConsumer("x").AckWait - 30*time.Second; c.SubmitTimeout <= 0 || c.SubmitTimeout > maxTimeout {
		errs = append(errs, fmt.Errorf("SCOUT_SUBMIT_TIMEOUT=%s: must be above 0 and at most %s (the consumer's ack wait less 30s)", c.SubmitTimeout, maxTimeout))
	}
	if c.Workers < 1 || c.Workers > 256 {
		errs = append(errs, fmt.Errorf("SCOUT_SENDER_WORKERS=%d: must be between 1 and 256", c.Workers))
	}
	if c.HeloName != "" && strings.ContainsAny(c.HeloName, " \t\r\n") {
		errs = append(errs, fmt.Errorf("SCOUT_HELO_NAME=%q: must be a host name", c.HeloName))
	}
	if len(errs) > 0 {
		return fmt.Errorf("sender configuration: %w", errors.Join(errs...))
	}
	return nil
}

// Keyring parses ProbeKeys. The error names SCOUT_PROBE_KEYS and never
// contains key material.
func (c Config) Keyring() (*probemail.Keyring, error) {
	k, err := probemail.ParseKeys(string(c.ProbeKeys))
	if err != nil {
		return nil, fmt.Errorf("SCOUT_PROBE_KEYS: %w", err)
	}
	return k, nil
}

// helo is the EHLO name: HeloName, else the return address's domain.
func (c Config) helo() string {
	if c.HeloName != "" {
		return c.HeloName
	}
	if i := strings.LastIndexByte(c.ReturnAddress, '@'); i >= 0 {
		return c.ReturnAddress[i+1:]
	}
	return "localhost"
}

// relayConfig is the submit configuration of relay delivery (without the
// TLS roots, which come from Deps).
func (c Config) relayConfig() submit.Config {
	return submit.Config{
		Addr:      c.RelayAddr,
		TLS:       c.RelayTLS,
		Username:  c.RelayUsername,
		Password:  string(c.RelayPassword),
		HelloName: c.helo(),
	}
}

// relayLogin is the OAuth login of the relay (RelayOAuth), or nil when
// the relay takes a password or no login. Its tokens come from the
// provider's endpoint through hc (nil: a 30 s client), cached on clock.
func (c Config) relayLogin(clock clockwork.Clock, hc *http.Client) (*mailauth.Login, error) {
	if c.Delivery != DeliveryRelay || c.RelayOAuth.Provider == "" {
		return nil, nil
	}
	login, err := mailauth.New(c.RelayOAuth, c.RelayUsername, mailauth.Options{Clock: clock, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("SCOUT_RELAY_OAUTH_*: %w", err)
	}
	return login, nil
}

// oauthPending stands for the relay's OAuth login in Validate, before New
// makes it.
type oauthPending struct{}

func (oauthPending) SASL(context.Context) (sasl.Client, time.Time, error) {
	return nil, time.Time{}, errors.New("no OAuth login yet")
}

// validAddress accepts a bare addr-spec that can travel in the probe header.
func validAddress(s string) bool {
	if s == "" || strings.ContainsAny(s, "; \t\r\n<>\"=") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && strings.Contains(s, "@")
}

// domainOf returns the domain of an address, lower case.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	}
	return ""
}

// isIP reports whether host is an IP literal.
func isIP(host string) bool { return net.ParseIP(host) != nil }
