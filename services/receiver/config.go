package receiver

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/imapwatch"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/probemail"
)

// Modes (Config.Mode).
const (
	// ModeSMTP: the receiver is the SMTP server of the return domain.
	ModeSMTP = "smtp"
	// ModeIMAP: the receiver watches the mailbox the return addresses are
	// delivered to, over IMAP.
	ModeIMAP = "imap"
)

// IMAP TLS modes (Config.IMAPTLS), as in pkg/imapwatch.
const (
	IMAPTLSImplicit = imapwatch.TLSImplicit // TLS from the first byte (port 993, RFC 8314)
	IMAPTLSStartTLS = imapwatch.TLSStartTLS // STARTTLS (RFC 3501 section 6.2.1)
	IMAPTLSNone     = imapwatch.TLSNone     // plain text; loopback servers only
)

// MaxRecipients bounds RCPT commands per message. A return has one
// recipient; an MTA may batch a few returns for one address.
const MaxRecipients = 10

// maxConnectionsLimit bounds Config.MaxConnections: each connection is a
// file descriptor and up to MaxBytes of memory.
const maxConnectionsLimit = 100000

// Config configures the receiver of one site. Every field is read from the
// environment variable in its env tag (docs/configuration.md, "receiver").
type Config struct {
	// Site is this receiver's site ([a-z0-9_-]{1,63}), for logs and metrics.
	// Returns are published under the probe's own signed site.
	Site string `env:"SCOUT_SITE,required"`
	// Mode is how returns come in: ModeSMTP or ModeIMAP.
	Mode string `env:"SCOUT_RECEIVER_MODE" envDefault:"smtp"`
	// Listen is the SMTP listen address (host:port); SMTP mode only.
	Listen string `env:"SCOUT_RECEIVER_LISTEN" envDefault:":2525"`
	// ReturnAddresses are the only recipients accepted (compared
	// case-insensitively): the r= addresses of the senders' probes. In IMAP
	// mode, a message is this receiver's only if its signed r= is one of
	// them (and its signed site is Site).
	ReturnAddresses []string `env:"SCOUT_RETURN_ADDRESSES,required" envSeparator:","`
	// ProbeKeys is the key list in probemail.ParseKeys format.
	ProbeKeys Secret `env:"SCOUT_PROBE_KEYS,required"`
	// Domain is the name in the SMTP banner and EHLO reply; empty means the
	// domain of the first return address.
	Domain string `env:"SCOUT_RECEIVER_DOMAIN"`
	// MaxBytes bounds one message (the SIZE extension, RFC 1870); at most
	// probemail.MaxMessageBytes.
	MaxBytes int64 `env:"SCOUT_RECEIVER_MAX_BYTES" envDefault:"262144"`
	// TLSCert and TLSKey are PEM files; when both are set, STARTTLS is
	// offered (RFC 3207).
	TLSCert string `env:"SCOUT_RECEIVER_TLS_CERT"`
	TLSKey  string `env:"SCOUT_RECEIVER_TLS_KEY"`
	// MaxAge: a return whose signed start is older is a replay and refused.
	MaxAge time.Duration `env:"SCOUT_RECEIVER_MAX_AGE" envDefault:"48h"`
	// Timeout bounds the transfer of one message (from the 354 to the
	// final <CRLF>.<CRLF>, RFC 5321 section 4.5.3.2.5-6) and each write.
	Timeout time.Duration `env:"SCOUT_RECEIVER_TIMEOUT" envDefault:"5m"`
	// CommandTimeout bounds the wait for each command line: from the
	// greeting to the first command and between commands, a whole line
	// (however slowly it trickles in) within it. Shorter than the 5
	// minutes of RFC 5321 section 4.5.3.2.7, so that idle and slowloris
	// clients give their connection back soon; an MTA sends its commands
	// at once. After it the answer is 421 4.4.2 and the connection closes.
	CommandTimeout time.Duration `env:"SCOUT_RECEIVER_COMMAND_TIMEOUT" envDefault:"1m"`
	// MaxConnections caps the SMTP connections open at once; one more is
	// answered 421 4.7.0 and closed (RFC 5321 section 4.2.3 allows 421 at
	// the greeting). Each costs about 13 KB idle, up to MaxBytes in DATA.
	MaxConnections int `env:"SCOUT_RECEIVER_MAX_CONNECTIONS" envDefault:"1000"`
	// MaxConnectionsPerIP caps the connections open at once from one
	// remote IPv4 address or IPv6 /64, as MaxConnections.
	MaxConnectionsPerIP int `env:"SCOUT_RECEIVER_MAX_CONNECTIONS_PER_IP" envDefault:"50"`
	// StoreTimeout bounds the wait for JetStream's acknowledgement of
	// mail.returned; after it the answer is 451 and the MTA retries.
	StoreTimeout time.Duration `env:"SCOUT_RECEIVER_STORE_TIMEOUT" envDefault:"10s"`

	// IMAP mode: the mailbox is watched with pkg/imapwatch.

	// IMAPServer is the IMAP server's host name or address.
	IMAPServer string `env:"SCOUT_RECEIVER_IMAP_SERVER"`
	// IMAPPort is its port; 0 means 993 with implicit TLS, else 143.
	IMAPPort int `env:"SCOUT_RECEIVER_IMAP_PORT"`
	// IMAPTLS is IMAPTLSImplicit, IMAPTLSStartTLS or IMAPTLSNone (loopback
	// servers only). The certificate is verified against the system roots
	// (SSL_CERT_FILE and SSL_CERT_DIR add others).
	IMAPTLS string `env:"SCOUT_RECEIVER_IMAP_TLS" envDefault:"implicit"`
	// IMAPUser and IMAPPassword log in (IMAP LOGIN, RFC 3501 section 6.2.3).
	IMAPUser     string `env:"SCOUT_RECEIVER_IMAP_USER"`
	IMAPPassword Secret `env:"SCOUT_RECEIVER_IMAP_PASSWORD"`
	// IMAPOAuth, when its Provider is set, logs in as IMAPUser with
	// AUTHENTICATE XOAUTH2 or OAUTHBEARER (RFC 7628) and an OAuth 2.0
	// token (pkg/mailauth: Microsoft client credentials, a Google service
	// account, a refresh-token file) instead of IMAPPassword: Microsoft
	// 365 and Google Workspace mailboxes (docs/reflector.md, "OAuth 2.0").
	IMAPOAuth mailauth.Config `envPrefix:"SCOUT_RECEIVER_IMAP_OAUTH_"`
	// IMAPRenewBeforeExpiry: with OAuth, a session logs out and in again
	// with a fresh token this long before its token expires (servers end
	// sessions whose token expired).
	IMAPRenewBeforeExpiry time.Duration `env:"SCOUT_RECEIVER_IMAP_RENEW_BEFORE_EXPIRY" envDefault:"1m"`
	// IMAPMailbox is the folder the returns are delivered to.
	IMAPMailbox string `env:"SCOUT_RECEIVER_IMAP_MAILBOX" envDefault:"INBOX"`
	// IMAPPollInterval is the scan interval when the server does not offer
	// IDLE (RFC 2177): it adds up to this much to a measured round trip.
	IMAPPollInterval time.Duration `env:"SCOUT_RECEIVER_IMAP_POLL_INTERVAL" envDefault:"10s"`
	// IMAPFastPoll, when positive, is the scan interval while one of this
	// site's probes is out (a mail.sent of the site, until its check's
	// timeout): IDLE is left and the mailbox asked with NOOP this often,
	// so that a return is seen within IMAPFastPoll of its delivery instead
	// of after the server's IDLE notification (Dovecot: about 0.5 s), and
	// received_at is the middle of that window (docs/configuration.md).
	// Zero: IDLE only. Needs Deps.Sent.
	IMAPFastPoll time.Duration `env:"SCOUT_RECEIVER_IMAP_FAST_POLL" envDefault:"100ms" zero:"setting"`
	// IMAPIdleRefresh is how long one IDLE runs before it is re-issued
	// (RFC 2177 asks for less than 29 minutes).
	IMAPIdleRefresh time.Duration `env:"SCOUT_RECEIVER_IMAP_IDLE_REFRESH" envDefault:"9m"`
	// IMAPCleanupMargin: a message carrying a verified probe of this site
	// that could not be taken (a replay, an unknown check, a bounce) is
	// deleted once the probe's signed start is older than the longest
	// check timeout plus this margin; younger ones are kept.
	IMAPCleanupMargin time.Duration `env:"SCOUT_RECEIVER_IMAP_CLEANUP_MARGIN" envDefault:"1h"`
	// DKIM: read each return's DKIM signatures and record whether one is
	// valid and aligned with its From (DNS TXT lookups, at most
	// DKIMTimeout); false: not checked.
	DKIM        bool          `env:"SCOUT_RECEIVER_DKIM" envDefault:"true"`
	DKIMTimeout time.Duration `env:"SCOUT_RECEIVER_DKIM_TIMEOUT" envDefault:"2s"`
}

// Secret is a value that is never logged (platform.Secret).
type Secret = platform.Secret

// Defaults is the configuration of an empty environment (the envDefault
// tags above: the one place the defaults are written).
func Defaults() Config { return platform.Defaults[Config]() }

// Validate reports every setting that can never work, each naming its
// environment variable. It does not parse the keys (see Keyring) nor read
// the certificate files (New does).
func (c Config) Validate() error {
	var errs []error
	if !events.ValidToken(c.Site) {
		errs = append(errs, fmt.Errorf("SCOUT_SITE=%q: must be 1 to 63 characters of [a-z0-9_-]", c.Site))
	}
	switch c.Mode {
	case ModeSMTP:
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_LISTEN=%q: %w", c.Listen, err))
		}
	case ModeIMAP:
		errs = append(errs, c.validateIMAP()...)
	default:
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_MODE=%q: must be %q or %q", c.Mode, ModeSMTP, ModeIMAP))
	}
	if len(c.ReturnAddresses) == 0 {
		errs = append(errs, errors.New("SCOUT_RETURN_ADDRESSES: no address"))
	}
	for _, a := range c.ReturnAddresses {
		if !validAddress(strings.TrimSpace(a)) {
			errs = append(errs, fmt.Errorf("SCOUT_RETURN_ADDRESSES: %q is not a plain address such as scout-return+eu-west@monitor.example", a))
		}
	}
	if strings.TrimSpace(string(c.ProbeKeys)) == "" {
		errs = append(errs, errors.New("SCOUT_PROBE_KEYS: is empty"))
	}
	if c.MaxBytes < 1024 || c.MaxBytes > probemail.MaxMessageBytes {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_MAX_BYTES=%d: must be between 1024 and %d", c.MaxBytes, probemail.MaxMessageBytes))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_TLS_CERT=%q, SCOUT_RECEIVER_TLS_KEY=%q: set both or neither", c.TLSCert, c.TLSKey))
	}
	if c.MaxAge < time.Minute {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_MAX_AGE=%s: must be at least 1m (and longer than any check's timeout)", c.MaxAge))
	}
	if c.Timeout < time.Second {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_TIMEOUT=%s: must be at least 1s", c.Timeout))
	}
	if c.CommandTimeout < time.Second || c.CommandTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_COMMAND_TIMEOUT=%s: must be between 1s and 5m (RFC 5321 section 4.5.3.2.7)", c.CommandTimeout))
	}
	if c.MaxConnections < 1 || c.MaxConnections > maxConnectionsLimit {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_MAX_CONNECTIONS=%d: must be between 1 and %d", c.MaxConnections, maxConnectionsLimit))
	}
	if c.MaxConnectionsPerIP < 1 || c.MaxConnectionsPerIP > c.MaxConnections && c.MaxConnections >= 1 {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_MAX_CONNECTIONS_PER_IP=%d: must be between 1 and SCOUT_RECEIVER_MAX_CONNECTIONS (%d)", c.MaxConnectionsPerIP, c.MaxConnections))
	}
	if c.StoreTimeout <= 0 || c.StoreTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_STORE_TIMEOUT=%s: must be above 0 and at most 5m (MTAs wait 10m for the reply to DATA)", c.StoreTimeout))
	}
	if c.Domain != "" && strings.ContainsAny(c.Domain, " \t\r\n") {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_DOMAIN=%q: must be a host name", c.Domain))
	}
	if len(errs) > 0 {
		return fmt.Errorf("receiver configuration: %w", errors.Join(errs...))
	}
	return nil
}

// validateIMAP checks the IMAP mode settings.
func (c Config) validateIMAP() []error {
	var errs []error
	if h := c.IMAPServer; h == "" || strings.ContainsAny(h, " \t\r\n/") || strings.Contains(h, ":") && net.ParseIP(h) == nil {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_IMAP_SERVER=%q: imap mode needs the IMAP server's host name or address (the port goes in SCOUT_RECEIVER_IMAP_PORT)", c.IMAPServer))
	}
	if c.IMAPPort < 0 || c.IMAPPort > 65535 {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_IMAP_PORT=%d: must be a TCP port (1-65535), or 0 for the default", c.IMAPPort))
	}
	switch c.IMAPTLS {
	case IMAPTLSImplicit, IMAPTLSStartTLS:
	case IMAPTLSNone:
		if !loopback(c.IMAPServer) {
			errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_IMAP_TLS=none: would send the password in clear to %q; allowed only on loopback", c.IMAPServer))
		}
	default:
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_IMAP_TLS=%q: must be implicit, starttls or none", c.IMAPTLS))
	}
	if c.IMAPUser == "" {
		errs = append(errs, errors.New("SCOUT_RECEIVER_IMAP_USER: imap mode needs the mailbox's user name"))
	}
	switch {
	case c.IMAPOAuth.Provider != "" && c.IMAPPassword != "":
		errs = append(errs, errors.New("SCOUT_RECEIVER_IMAP_PASSWORD and SCOUT_RECEIVER_IMAP_OAUTH_PROVIDER: give a password or an OAuth login, not both"))
	case c.IMAPOAuth.Provider != "":
		if err := c.IMAPOAuth.ValidateEnv("SCOUT_RECEIVER_IMAP_OAUTH_"); err != nil {
			errs = append(errs, err)
		}
	case c.IMAPPassword == "":
		errs = append(errs, errors.New("SCOUT_RECEIVER_IMAP_PASSWORD: imap mode needs the mailbox's password (or an OAuth login: SCOUT_RECEIVER_IMAP_OAUTH_PROVIDER)"))
	}
	if c.IMAPFastPoll != 0 && (c.IMAPFastPoll < 10*time.Millisecond || c.IMAPFastPoll > time.Minute) {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_IMAP_FAST_POLL=%s: must be 0 (off) or between 10ms and 1m", c.IMAPFastPoll))
	}
	if c.IMAPRenewBeforeExpiry < 0 {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_IMAP_RENEW_BEFORE_EXPIRY=%s: must not be negative", c.IMAPRenewBeforeExpiry))
	}
	if strings.TrimSpace(c.IMAPMailbox) == "" {
		errs = append(errs, errors.New("SCOUT_RECEIVER_IMAP_MAILBOX: is empty"))
	}
	if c.IMAPPollInterval < time.Second {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_IMAP_POLL_INTERVAL=%s: must be at least 1s", c.IMAPPollInterval))
	}
	if c.IMAPIdleRefresh < time.Second || c.IMAPIdleRefresh > 29*time.Minute {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_IMAP_IDLE_REFRESH=%s: must be between 1s and 29m (RFC 2177)", c.IMAPIdleRefresh))
	}
	if c.IMAPCleanupMargin < time.Minute {
		errs = append(errs, fmt.Errorf("SCOUT_RECEIVER_IMAP_CLEANUP_MARGIN=%s: must be at least 1m", c.IMAPCleanupMargin))
	}
	return errs
}

// imapAddr is the IMAP server's host:port.
func (c Config) imapAddr() string {
	port := c.IMAPPort
	if port == 0 {
		port = 143
		if c.IMAPTLS == IMAPTLSImplicit {
			port = 993
		}
	}
	return net.JoinHostPort(c.IMAPServer, strconv.Itoa(port))
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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

// banner is the server's name: Domain, else the first return address's
// domain.
func (c Config) banner() string {
	if c.Domain != "" {
		return c.Domain
	}
	for _, a := range c.ReturnAddresses {
		if i := strings.LastIndexByte(a, '@'); i >= 0 {
			return strings.TrimSpace(a[i+1:])
		}
	}
	return "localhost"
}

func validAddress(s string) bool {
	if s == "" || strings.ContainsAny(s, "; \t\r\n<>\"=") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && strings.Contains(s, "@")
}
