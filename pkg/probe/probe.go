package probe

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emersion/go-sasl"
)

// Phases of a service-check dialogue (Result.Phase, events.CheckResult.Phase).
const (
	PhaseDNS          = "dns"          // resolving Target.Host
	PhaseConnect      = "connect"      // the TCP connection
	PhaseGreeting     = "greeting"     // the server's banner (SMTP 220, IMAP * OK, POP3 +OK)
	PhaseTLS          = "tls"          // STARTTLS/STLS and the handshake, or implicit TLS
	PhaseCapabilities = "capabilities" // SMTP EHLO/HELO, IMAP CAPABILITY, POP3 CAPA
	PhaseAuth         = "auth"         // SMTP AUTH, IMAP LOGIN or AUTHENTICATE, POP3 USER/PASS or AUTH; an OAuth token's fetch
	PhaseMailbox      = "mailbox"      // IMAP EXAMINE INBOX, POP3 STAT
)

// Error classes (Result.Class, events.CheckResult.ErrorClass). See the
// package documentation for what each means and the status it maps to.
const (
	ClassRefused      = "refused"
	ClassTimeout      = "timeout"
	ClassProtocol     = "protocol"
	ClassTLS          = "tls"
	ClassAuth         = "auth"
	ClassCertExpiring = "cert_expiring"
	ClassCertInvalid  = "cert_invalid"
	ClassTemporary    = "temporary"
	ClassMonitor      = "monitor"
)

// Classes of a service check the monitor could not run at all, decided by
// the sender before any dialogue; like ClassMonitor they are
// events.StatusMonitorError, never the customer's fault.
const (
	ClassStale      = "stale"       // picked up after its send window: not run
	ClassNoPassword = "no_password" // the variable named by password_env is unset or empty
	ClassBadTarget  = "probe_build" // the check's target cannot be probed
	// ClassCredentials: the OAuth token of the check's login could not be
	// had: the token endpoint refused the monitor's credential (a revoked
	// client secret, AADSTS7000215; a service account without domain-wide
	// delegation, unauthorized_client) or could not be reached. Our
	// credential, not the customer's server: no dialogue took place. A
	// server that refuses a valid token is ClassAuth.
	ClassCredentials = "credentials"
)

// TLS modes of Target.TLS: the values of the check file's tls field
// (pkg/checks: TLSNone, TLSStartTLS, TLSImplicit), repeated here so that a
// prober does not need the check file's parser.
const (
	TLSNone     = "none"     // plain text
	TLSStartTLS = "starttls" // STARTTLS, STLS
	TLSImplicit = "implicit" // TLS from the first byte (RFC 8314)
)

// Authenticator gives the SASL client of an OAuth login (XOAUTH2 or
// OAUTHBEARER with a valid token; *mailauth.Login is one) and when its
// token expires (zero: not known). It is asked once per probe, before the
// dialogue; its error classifies as ClassCredentials.
type Authenticator interface {
	SASL(ctx context.Context) (c sasl.Client, expiry time.Time, err error)
}

// Resolver looks host names up; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Target is one service to probe.
type Target struct {
	Host string // DNS name or IP address; also the name the certificate must match
	Port int    // 1..65535
	// TLS is TLSNone, TLSStartTLS or TLSImplicit.
	TLS string
	// Username, when not empty, makes the probe log in with Password, or,
	// with Auth, with OAuth (SASL XOAUTH2 or OAUTHBEARER as Username).
	Username string
	Password string
	// Auth, when not nil, logs in as Username with the SASL client it
	// gives: IMAP AUTHENTICATE (RFC 9051 section 6.2.2), POP3 AUTH
	// (RFC 5034), SMTP AUTH (RFC 4954).
	Auth Authenticator
	// Mailbox is the IMAP mailbox examined after the login; "" means
	// INBOX.
	Mailbox string
	// ExpectGreeting, when not nil, must match the greeting text.
	ExpectGreeting *regexp.Regexp
	// CertWarningDays: a certificate expiring within this many days makes
	// the result degraded (ClassCertExpiring); 0 turns the warning off.
	CertWarningDays int
	// RootCAs verifies the peer certificate chain; nil means the system
	// roots.
	RootCAs *x509.CertPool
	// HelloName is the SMTP EHLO/HELO name; empty means "localhost".
	HelloName string
	// Resolver looks Host up; nil means net.DefaultResolver.
	Resolver Resolver
}

// Addr returns host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// LogValue implements slog.LogValuer: the password never reaches a log.
func (t Target) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", t.Addr()),
		slog.String("tls", t.TLS),
		slog.String("username", t.Username),
		slog.Bool("password_set", t.Password != ""),
		slog.Bool("oauth", t.Auth != nil),
	)
}

// Validate reports a target that can never be probed.
func (t Target) Validate() error {
	var errs []error
	if t.Host == "" {
		errs = append(errs, errors.New("host is empty"))
	}
	if t.Port < 1 || t.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is not between 1 and 65535", t.Port))
	}
	switch t.TLS {
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		errs = append(errs, fmt.Errorf("tls mode %q is not none, starttls or implicit", t.TLS))
	}
	switch {
	case t.Auth != nil && t.Password != "":
		errs = append(errs, errors.New("give a password or an OAuth login, not both"))
	case t.Auth != nil && t.Username == "":
		errs = append(errs, errors.New("an OAuth login needs the username (the mailbox)"))
	case t.Auth == nil && t.Username != "" && t.Password == "":
		errs = append(errs, errors.New("a username is set but the password is empty"))
	}
	return errors.Join(errs...)
}

// MissingPasswordError is FromCheck's error when the environment variable
// named by a check's password_env is unset or empty: a fault of the
// monitor's deployment (the Secret is not mapped), not of the customer.
type MissingPasswordError struct {
	Check    string // check id
	Variable string // the password_env name
	// Field names the check's field that names the variable: ""
	// (password_env), oauth.client_secret_env or
	// oauth.service_account_file_env.
	Field string
}

func (e *MissingPasswordError) Error() string {
	field := e.Field
	if field == "" {
		field = "password_env"
	}
	return fmt.Sprintf("check %q: %s: environment variable %s is not set or empty", e.Check, field, e.Variable)
}

// Mailbox is what the mailbox phase saw.
type Mailbox struct {
	Name     string // "INBOX" (IMAP) or "maildrop" (POP3)
	Messages int    // messages in the mailbox
	Size     int64  // POP3 maildrop size in octets; 0 for IMAP
}

// Result is the outcome of one probe.
type Result struct {
	Protocol string // events.KindSMTP, KindIMAP, KindPOP3
	Addr     string // host:port probed
	Timings  events.Timings
	// TLS describes the completed TLS session; nil when no handshake
	// completed (tls none, or a failed or missing upgrade).
	TLS *events.TLSInfo
	// Capabilities are the last capabilities the server advertised (after
	// TLS when the session was upgraded): SMTP EHLO keywords with their
	// parameters, IMAP capability atoms, POP3 CAPA lines.
	Capabilities []string
	// Replies are the server's responses in order: one entry per SMTP reply
	// (lines joined with "\n") or per IMAP/POP3 line, at most MaxReplies,
	// each cut at MaxReplyLen bytes.
	Replies []string
	// Reply is the SMTP reply that made the check fail or degrade; nil
	// otherwise and for IMAP and POP3 (their response is in Err).
	Reply *events.SMTPReply
	// Transcript is the dialogue as pkg/transcript records it: "C: " and
	// "S: " lines, credentials masked, TLS connections in plain text,
	// at most events.MaxTranscriptLines lines.
	Transcript []string
	Mailbox    *Mailbox // nil when the mailbox phase did not run
	// Class is the error class ("" when the check passed), Phase the phase
	// it happened in and Err the details.
	Class string
	Phase string
	Err   error
}

// Limits of Result.Replies.
const (
	MaxReplies  = 64
	MaxReplyLen = 1024
)

// Status is StatusOf(r.Class).
func (r Result) Status() string { return StatusOf(r.Class) }

// StatusOf maps an error class to the status of the attempt, before the
// slow threshold (see the package documentation): "" is events.StatusOK,
// cert_expiring and temporary StatusDegraded, timeout StatusTimeout, the
// monitor's classes (monitor, stale, no_password, probe_build,
// credentials) StatusMonitorError, any other class StatusFailed. It is the table the
// evaluator makes service-check verdicts with, and `scout check` shows.
func StatusOf(class string) string {
	switch class {
	case "":
		return events.StatusOK
	case ClassCertExpiring, ClassTemporary:
		return events.StatusDegraded
	case ClassTimeout:
		return events.StatusTimeout
	case ClassMonitor, ClassStale, ClassNoPassword, ClassBadTarget, ClassCredentials:
		return events.StatusMonitorError
	}
	return events.StatusFailed
}

// ServiceStatus is the status of a service-check attempt: StatusOf(class),
// except that an ok dialogue whose whole time totalMS (milliseconds) was
// slow or longer is events.StatusSlow (a warning, as a slow round trip
// is); slow <= 0 turns that off. A failure stays a failure and degraded
// warns already. The evaluator makes its verdicts with it and `scout
// check` shows it (docs/evaluation.md).
func ServiceStatus(class string, totalMS float64, slow time.Duration) string {
	status := StatusOf(class)
	if status == events.StatusOK && slow > 0 && totalMS >= float64(slow)/float64(time.Millisecond) {
		return events.StatusSlow
	}
	return status
}
