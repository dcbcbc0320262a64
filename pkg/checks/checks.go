// Package checks loads and validates the check definition file: which mail
// systems Email Scout watches, from which sites, how often, and whom to tell.
//
// The file is YAML (in Kubernetes, a ConfigMap). Decoding is strict: an
// unknown key is an error, so a typo never silently turns a setting off.
// Defaults come from three layers, first match wins: the check itself, the
// file's "defaults" block, then the built-in defaults (DefaultRoundTrip,
// DefaultService; docs/configuration.md, "The check file"). Every field is documented in
// docs/configuration.md.
//
// Load reports every problem at once, each naming the file, the line, the
// check id and the field:
//
//	checks.yaml:14: check "acme-mx": slow: must be shorter than timeout (10m0s)
package checks

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"go.yaml.in/yaml/v3"
)

// Settings are the timing and confirmation settings of a check.
type Settings struct {
	// Interval between two regular tests of the check at one site.
	Interval time.Duration
	// Timeout after which an attempt without a return (or answer) times out.
	Timeout time.Duration
	// Slow: a return at or after this, but before Timeout, is "slow".
	Slow time.Duration
	// RetryDelay: wait this long after a timeout, then send a fresh probe.
	RetryDelay time.Duration
	// Retries is the number of confirmation attempts before a site declares
	// the check down (0: the first timeout is a down verdict).
	Retries int
	// Quorum is the number of sites that must agree before an incident
	// opens; capped at the number of sites (see Check.EffectiveQuorum).
	Quorum int
}

// DefaultRoundTrip are the defaults of a round-trip check
// (docs/configuration.md, "The check file"; docs/evaluation.md, section 5).
var DefaultRoundTrip = Settings{
	Interval:   20 * time.Minute,
	Timeout:    10 * time.Minute,
	Slow:       2 * time.Minute,
	RetryDelay: 30 * time.Second,
	Retries:    1,
	Quorum:     2,
}

// DefaultService are the defaults of an smtp, imap or pop3 service check.
var DefaultService = Settings{
	Interval:   5 * time.Minute,
	Timeout:    30 * time.Second,
	Slow:       10 * time.Second,
	RetryDelay: 30 * time.Second,
	Retries:    1,
	Quorum:     2,
}

// Return paths of a round-trip check (Check.Return, the file's "return").
const (
	ReturnReflector = "reflector" // scout-reflector stamps the probe and mails it back
	ReturnForward   = "forward"   // a forwarding rule sends the probe itself back (docs/reflector.md)
)

// TLS modes of a service check (Service.TLS).
const (
	// TLSNone: plain text from start to end; STARTTLS is not attempted even
	// when offered.
	TLSNone = "none"
	// TLSStartTLS: the session starts in plain text and must be upgraded
	// (SMTP STARTTLS, RFC 3207; IMAP STARTTLS and POP3 STLS, RFC 2595). A
	// server that does not offer the upgrade fails the check.
	TLSStartTLS = "starttls"
	// TLSImplicit: TLS from the first byte (RFC 8314): ports 465, 993, 995.
	TLSImplicit = "implicit"
)

// DefaultCertWarningDays: a peer certificate that expires within this many
// days makes a service check degraded (Service.CertWarningDays).
const DefaultCertWarningDays = 14

// DefaultPort returns the standard port of a service kind in a TLS mode:
// smtp 25 (465 implicit), imap 143 (993 implicit), pop3 110 (995 implicit);
// 0 for other kinds. Port 25 is the MX port; use port 587 for a submission
// service.
func DefaultPort(kind, tlsMode string) int {
	implicit := tlsMode == TLSImplicit
	switch kind {
	case events.KindSMTP:
		if implicit {
			return 465
		}
		return 25
	case events.KindIMAP:
		if implicit {
			return 993
		}
		return 143
	case events.KindPOP3:
		if implicit {
			return 995
		}
		return 110
	}
	return 0
}

// Service is the part of a check that only service checks (kinds smtp,
// imap, pop3) have; it is the zero value for round trips.
type Service struct {
	Host string // DNS name or IP address, without a port
	Port int    // 1..65535; DefaultPort when the file has none
	TLS  string // TLSNone, TLSStartTLS (default) or TLSImplicit
	// Username, when not empty, makes the check log in (SMTP AUTH, IMAP
	// LOGIN, POP3 USER/PASS).
	Username string
	// PasswordEnv is the NAME of the environment variable that holds the
	// password (in Kubernetes, filled from a Secret with secretKeyRef). The
	// check file never holds the password itself.
	PasswordEnv string
	// ExpectGreeting, when not nil, must match the server's greeting text
	// (for SMTP, the lines of the 220 reply without their codes, joined
	// with "\n").
	ExpectGreeting *regexp.Regexp
	// CertWarningDays: a certificate that expires within this many days
	// makes the check degraded. 0 turns the warning off.
	CertWarningDays int
	// OAuth, when not nil, makes the check log in as Username with an
	// OAuth 2.0 token (SMTP AUTH, IMAP AUTHENTICATE, POP3 AUTH with
	// XOAUTH2 or OAUTHBEARER) instead of a password; PasswordEnv is then
	// empty.
	OAuth *OAuth
}

// OAuth providers of a service check's oauth block (OAuth.Provider).
const (
	// OAuthMicrosoft: the client credentials grant of the Microsoft
	// identity platform (an app registration with IMAP.AccessAsApp,
	// POP.AccessAsApp or SMTP.SendAsApp).
	OAuthMicrosoft = "microsoft"
	// OAuthGoogle: a Google service account with domain-wide delegation
	// of https://mail.google.com/ (the JWT bearer grant).
	OAuthGoogle = "google"
)

// OAuth is a service check's oauth block: where the monitor gets the
// token it logs in with. Like password_env, it names environment
// variables, never secrets (docs/configuration.md, "Service checks").
type OAuth struct {
	Provider string // OAuthMicrosoft or OAuthGoogle
	// Tenant is the Microsoft Entra tenant (id or domain); microsoft,
	// required unless TokenURL is set.
	Tenant string
	// ClientID is the app registration's application (client) id;
	// microsoft, required.
	ClientID string
	// ClientSecretEnv is the NAME of the sender's environment variable
	// that holds the client secret; microsoft, required.
	ClientSecretEnv string
	// ServiceAccountFileEnv is the NAME of the sender's environment
	// variable that holds the PATH of the service account's JSON key
	// file (a mounted Secret); google, required.
	ServiceAccountFileEnv string
	// Subject is the mailbox the service account acts for (domain-wide
	// delegation); google, default the check's username.
	Subject string
	// Scopes requested; default by provider
	// (https://outlook.office365.com/.default, https://mail.google.com/).
	Scopes []string
	// Mechanism is xoauth2 (default) or oauthbearer (RFC 7628).
	Mechanism string
	// TokenURL overrides the token endpoint (sovereign clouds, tests):
	// https, or http to a loopback address.
	TokenURL string
}

// Addr returns "host:port" (IPv6 addresses in brackets).
func (s Service) Addr() string {
	return net.JoinHostPort(s.Host, fmt.Sprint(s.Port))
}

// Contact is someone told by SMS when an incident of the check opens and
// resolves.
type Contact struct {
	Name  string `yaml:"name"`
	Phone string `yaml:"phone"` // E.164 after Load, e.g. "+15555550100" (PhoneNumber)
}

// Check is one validated check with every default applied.
type Check struct {
	ID       string // [a-z0-9_-]{1,63}; part of NATS subjects
	Customer string // [a-z0-9_-]{1,63}; selects the probe signing keys
	Name     string // human name for SMS and dashboards; defaults to ID
	Kind     string // events.KindRoundTrip, KindSMTP, KindIMAP, KindPOP3
	// Target is the probe mailbox for round trips (e.g.
	// "webscout@customer.example").
	Target string
	// Service is set for kinds smtp, imap and pop3, nil for round trips
	// (a pointer: a million round-trip checks do not each carry an empty
	// one; docs/capacity.md, "Memory").
	Service *Service
	Sites   []string // the sites that run the check
	Settings
	Contacts []Contact
	// NotifyWarnings sends SMS for warning incidents (slow / degraded) too.
	NotifyWarnings bool
	// Return is how the probe comes back (roundtrip only): ReturnReflector
	// (scout-reflector stamps and mails it back, the default) or
	// ReturnForward (a forwarding rule sends the probe itself to the site's
	// return address: nothing installed at the customer, no legs).
	Return string
	// Canary marks a check of the monitor's own infrastructure (a mailbox
	// the operator controls). It never opens a customer incident; a site
	// whose canary is down does not vote in other checks' quorums.
	Canary bool
	// Maintenance windows: incidents that open inside one are recorded, not
	// sent (see Window and MaintenanceAt).
	Maintenance []Window

	// Line is where the check starts in the file (for messages).
	Line int
}

// Where returns what the check watches: the probe mailbox of a round trip,
// host:port of a service check.
func (c *Check) Where() string {
	if c.Kind == events.KindRoundTrip {
		return c.Target
	}
	return c.Service.Addr()
}

// EffectiveQuorum is Quorum capped at the number of sites.
func (c *Check) EffectiveQuorum() int {
	return min(c.Quorum, len(c.Sites))
}

// SendWindow is how long after its scheduled time a test may still be
// sent: a quarter of the interval, between 1s and 2m. A sender that picks a
// test up later reports a monitor_error instead of sending a stale probe
// (events.TestScheduled.NotAfter).
func (c *Check) SendWindow() time.Duration {
	return min(max(c.Interval/4, time.Second), 2*time.Minute)
}

// DetectionBound is the longest an outage that begins right after a good
// test stays untold (docs/evaluation.md, section 5): the next regular test
// starts one interval later and times out, then each of the Retries
// confirmations waits RetryDelay and times out in turn. The confirmation
// fan-out keeps the bound with several sites; the evaluator's settle (1s
// by default) comes on top. With the defaults: 20m + 10m + 1 × (30s +
// 10m) = 40m30s.
func (c *Check) DetectionBound() time.Duration {
	return c.Interval + c.Timeout + time.Duration(c.Retries)*(c.RetryDelay+c.Timeout)
}

// Phase is the check's stable offset within its interval: tests of
// different checks spread over the interval instead of all starting at :00.
// It depends only on the check id (FNV-1a), so every scheduler replica
// computes the same slots.
func (c *Check) Phase() time.Duration {
	h := fnv.New64a()
	h.Write([]byte(c.ID))
	return time.Duration(h.Sum64() % uint64(c.Interval))
}

// HasSite reports whether the check runs at site.
func (c *Check) HasSite(site string) bool {
	for _, s := range c.Sites {
		if s == site {
			return true
		}
	}
	return false
}

// File is a loaded check definition file.
type File struct {
	// Warnings are settings that work but are probably not what was meant
	// (a quorum larger than the sites, a check nobody is told about), one
	// *Error each; services log them at start, check-config prints them.
	Warnings []*Error
	Path     string   // as given to Load (for messages)
	Sites    []string // the file's "sites"
	Checks   []*Check // in file order

	byID map[string]*Check
}

// Lookup returns the check with the given id, or nil.
func (f *File) Lookup(id string) *Check {
	return f.byID[id]
}

// ForSite returns the checks that run at site, in file order.
func (f *File) ForSite(site string) []*Check {
	var out []*Check
	for _, c := range f.Checks {
		if c.HasSite(site) {
			out = append(out, c)
		}
	}
	return out
}

// AllSites returns every site named by the file or its checks, sorted.
func (f *File) AllSites() []string {
	seen := map[string]bool{}
	for _, s := range f.Sites {
		seen[s] = true
	}
	for _, c := range f.Checks {
		for _, s := range c.Sites {
			seen[s] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Error is one problem in a check file. Check and Field are empty when the
// problem is not about one check or field.
type Error struct {
	File  string
	Line  int
	Check string
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Check != "" {
		fmt.Fprintf(&b, "check %q: ", e.Check)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and validates the check file at path. The error, when not nil,
// joins one *Error per problem (errors.As finds them), or wraps the
// os.ReadFile error when the file cannot be read.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read check file: %w", err)
	}
	return Parse(path, data)
}

// Parse validates data as a check file; name is used in messages. Every
// problem is reported at once: unknown keys and values of the wrong type
// do not hide the validation of everything else.
func Parse(name string, data []byte) (*File, error) {
	var raw rawFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var decodeErrs []error
	pos := positionsOf(data)
	if err := dec.Decode(&raw); err != nil {
		var te *yaml.TypeError
		switch {
		case errors.Is(err, io.EOF):
			return nil, &Error{File: name, Msg: "the file is empty"}
		case errors.As(err, &te):
			// yaml.v3 decodes all it can before it reports type errors.
			decodeErrs = decodeErrors(name, te, pos)
		default:
			return nil, yamlErrors(name, err)
		}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{File: name, Line: extra.Line, Msg: "only one YAML document is allowed"}
	}
	f, err := raw.resolve(name, pos)
	if err != nil || len(decodeErrs) > 0 {
		all := decodeErrs
		if err != nil {
			all = append(all, err.(interface{ Unwrap() []error }).Unwrap()...)
		}
		return nil, errors.Join(sortErrors(all)...)
	}
	return f, nil
}

// yamlErrors turns yaml.v3's "line N: ..." messages into *Error values.
func yamlErrors(name string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		line := 0
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if n, rest, ok := splitLine(msg); ok {
			line, msg = n, rest
		}
		return &Error{File: name, Line: line, Msg: msg}
	}
	var errs []error
	for _, m := range te.Errors {
		line, msg := 0, m
		if n, rest, ok := splitLine(m); ok {
			line, msg = n, rest
		}
		msg = strings.ReplaceAll(msg, "in type checks.rawCheck", "in a check")
		msg = strings.ReplaceAll(msg, "in type checks.rawFile", "at the top level")
		msg = strings.ReplaceAll(msg, "in type checks.rawSettings", "in defaults")
		msg = strings.ReplaceAll(msg, "in type checks.Contact", "in a contact")
		msg = strings.ReplaceAll(msg, "in type checks.rawService", "in a check")
		msg = strings.ReplaceAll(msg, "in type checks.rawOAuth", "in an oauth block")
		errs = append(errs, &Error{File: name, Line: line, Msg: msg})
	}
	return errors.Join(errs...)
}

func splitLine(m string) (int, string, bool) {
	var n int
	if _, err := fmt.Sscanf(m, "line %d:", &n); err != nil {
		return 0, m, false
	}
	_, rest, _ := strings.Cut(m, ":")
	return n, strings.TrimSpace(rest), true
}

// Duration is a time.Duration written as "20m", "30s", "1h30m" in YAML.
type Duration struct {
	D    time.Duration
	Line int
	// Invalid: the value did not parse (already reported); defaults apply.
	Invalid bool
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	d.Line = n.Line
	if n.Kind != yaml.ScalarNode {
		d.Invalid = true
		return typeError("line %d: a duration such as 30s or 20m is expected", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.Invalid = true
		return typeError("line %d: %q is not a duration such as 30s or 20m", n.Line, n.Value)
	}
	d.D = v
	return nil
}

// text is a string setting that remembers its line. A list or map in its
// place sets NotScalar, reported later with the field's name.
type text struct {
	S         string
	Line      int
	NotScalar bool
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *text) UnmarshalYAML(n *yaml.Node) error {
	t.Line = n.Line
	t.NotScalar = n.Kind != yaml.ScalarNode
	if !t.NotScalar {
		t.S = n.Value
	}
	return nil
}

// Int is an integer setting that remembers its line.
type Int struct {
	N    int
	Line int
	// Invalid: the value did not parse (already reported); defaults apply.
	Invalid bool
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (i *Int) UnmarshalYAML(n *yaml.Node) error {
	i.Line = n.Line
	if err := n.Decode(&i.N); err != nil {
		i.Invalid = true
		return typeError("line %d: %q is not a whole number", n.Line, n.Value)
	}
	return nil
}

type rawSettings struct {
	Interval   *Duration `yaml:"interval"`
	Timeout    *Duration `yaml:"timeout"`
	Slow       *Duration `yaml:"slow"`
	RetryDelay *Duration `yaml:"retry_delay"`
	Retries    *Int      `yaml:"retries"`
	Quorum     *Int      `yaml:"quorum"`
}

type rawCheck struct {
	ID             string    `yaml:"id"`
	Customer       string    `yaml:"customer"`
	Name           string    `yaml:"name"`
	Kind           string    `yaml:"kind"`
	Target         string    `yaml:"target"`
	Sites          []string  `yaml:"sites"`
	Contacts       []Contact `yaml:"contacts"`
	NotifyWarnings bool      `yaml:"notify_warnings"`
	Canary         bool      `yaml:"canary"`
	Return         string    `yaml:"return"`
	rawSettings    `yaml:",inline"`
	rawService     `yaml:",inline"`

	line int

	// Maintenance windows as written (see rawWindow).
	Maintenance []rawWindow `yaml:"maintenance"`
}

// rawService holds the service-check fields; nil means "not in the file".
type rawService struct {
	Host            *text     `yaml:"host"`
	Port            *Int      `yaml:"port"`
	TLS             *text     `yaml:"tls"`
	Username        *text     `yaml:"username"`
	PasswordEnv     *text     `yaml:"password_env"`
	ExpectGreeting  *text     `yaml:"expect_greeting"`
	CertWarningDays *Int      `yaml:"cert_warning_days"`
	OAuth           *rawOAuth `yaml:"oauth"`

	oauthLine int // the line of the oauth key, for its missing fields
}

// rawOAuth is a service check's oauth block as written.
type rawOAuth struct {
	Provider              *text    `yaml:"provider"`
	Tenant                *text    `yaml:"tenant"`
	ClientID              *text    `yaml:"client_id"`
	ClientSecretEnv       *text    `yaml:"client_secret_env"`
	ServiceAccountFileEnv *text    `yaml:"service_account_file_env"`
	Subject               *text    `yaml:"subject"`
	Scopes                []string `yaml:"scopes"`
	Mechanism             *text    `yaml:"mechanism"`
	TokenURL              *text    `yaml:"token_url"`
}

type rawFile struct {
	Sites    []string    `yaml:"sites"`
	Defaults rawSettings `yaml:"defaults"`
	Checks   []rawCheck  `yaml:"checks"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (r *rawFile) resolve(name string, pos positions) (*File, error) {
	f := &File{Path: name, Sites: r.Sites, byID: map[string]*Check{}}
	var errs []error
	add := func(line int, check, field, format string, args ...any) {
		errs = append(errs, &Error{File: name, Line: line, Check: check, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	for i, s := range r.Sites {
		if !events.ValidToken(s) {
			add(0, "", fmt.Sprintf("sites[%d]", i), "%q must be 1 to 63 characters of a-z, 0-9, '-' and '_'", s)
		}
	}
	if len(r.Checks) == 0 {
		add(0, "", "checks", "no checks are defined")
	}
	firstLine := map[string]int{}
	shared := newInterner()
	for i := range r.Checks {
		rc := &r.Checks[i]
		if i < len(pos.checks) {
			rc.line = pos.checks[i].line
		}
		c, cerrs := rc.resolve(name, i, r, pos, shared)
		errs = append(errs, cerrs...)
		if rc.ID != "" {
			if prev, dup := firstLine[rc.ID]; dup {
				add(rc.line, rc.ID, "id", "duplicate: already defined on line %d", prev)
				continue
			}
			firstLine[rc.ID] = rc.line
		}
		if c == nil {
			continue
		}
		f.Warnings = append(f.Warnings, warnings(name, c, i, pos)...)
		f.byID[c.ID] = c
		f.Checks = append(f.Checks, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

func (rc *rawCheck) resolve(name string, index int, file *rawFile, pos positions, shared *interner) (*Check, []error) {
	var errs []error
	id := rc.ID
	add := func(line int, field, format string, args ...any) {
		if line == 0 {
			line = pos.line(index, field)
		}
		if line == 0 {
			line = rc.line
		}
		errs = append(errs, &Error{File: name, Line: line, Check: id, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if id == "" {
		id = fmt.Sprintf("#%d", index+1)
		add(0, "id", "is required")
	} else if !events.ValidToken(id) {
		add(0, "id", "must be 1 to 63 characters of a-z, 0-9, '-' and '_' (it is part of NATS subjects)")
	}
	c := &Check{
		ID: rc.ID, Customer: rc.Customer, Name: rc.Name, Kind: rc.Kind, Target: rc.Target,
		Contacts: rc.Contacts, NotifyWarnings: rc.NotifyWarnings, Canary: rc.Canary, Line: rc.line, Return: rc.Return,
	}
	if c.Name == "" {
		c.Name = c.ID
	}
	if c.Customer == "" {
		add(0, "customer", "is required (it selects the probe signing keys)")
	} else if !events.ValidToken(c.Customer) {
		add(0, "customer", "must be 1 to 63 characters of a-z, 0-9, '-' and '_'")
	}
	c.Customer = shared.str(c.Customer)
	base := DefaultService
	rc.rawService.oauthLine = pos.line(index, "oauth")
	if rc.rawService.oauthLine == 0 {
		rc.rawService.oauthLine = rc.line
	}
	switch c.Kind {
	case "":
		add(0, "kind", "is required: roundtrip, smtp, imap or pop3")
	case events.KindRoundTrip:
		base = DefaultRoundTrip
		if c.Target == "" {
			add(0, "target", "is required for a roundtrip check (the probe mailbox, e.g. webscout@customer.example)")
		} else if a, err := mail.ParseAddress(c.Target); err != nil || a.Name != "" || a.Address != c.Target {
			add(0, "target", "%q is not a plain email address", c.Target)
		}
		rc.noService(add)
		switch c.Return {
		case "":
			c.Return = ReturnReflector
		case ReturnReflector, ReturnForward:
		default:
			add(0, "return", "%q is not reflector or forward", c.Return)
		}
	case events.KindSMTP, events.KindIMAP, events.KindPOP3:
		if c.Return != "" {
			add(0, "return", "is only for roundtrip checks")
		}
		if c.Target != "" {
			add(0, "target", "is only for roundtrip checks; %s checks use host and port", c.Kind)
		}
		svc := rc.service(c.Kind, add)
		c.Service = &svc
	default:
		add(0, "kind", "%q is not one of roundtrip, smtp, imap, pop3", c.Kind)
	}
	c.Settings = merge(base, file.Defaults, rc.rawSettings)

	c.Sites = rc.Sites
	if len(c.Sites) == 0 {
		c.Sites = file.Sites
	}
	if len(c.Sites) == 0 {
		add(0, "sites", "no sites: list them here or in the file's top-level sites")
	}
	seen := map[string]bool{}
	for _, s := range c.Sites {
		switch {
		case !events.ValidToken(s):
			add(0, "sites", "%q must be 1 to 63 characters of a-z, 0-9, '-' and '_'", s)
		case seen[s]:
			add(0, "sites", "%q is listed twice", s)
		case len(file.Sites) > 0 && !contains(file.Sites, s):
			add(0, "sites", "%q is not one of the file's sites %v", s, file.Sites)
		}
		seen[s] = true
	}

	st := c.Settings
	line := func(d *Duration) int {
		if d != nil {
			return d.Line
		}
		return 0
	}
	intLine := func(i *Int) int {
		if i != nil {
			return i.Line
		}
		return 0
	}
	if st.Interval < time.Second {
		add(line(rc.Interval), "interval", "must be at least 1s, got %v", st.Interval)
	}
	if st.Timeout <= 0 {
		add(line(rc.Timeout), "timeout", "must be positive, got %v", st.Timeout)
	}
	if st.Slow <= 0 || st.Slow >= st.Timeout {
		add(line(rc.Slow), "slow", "must be positive and shorter than timeout (%v), got %v", st.Timeout, st.Slow)
	}
	if st.RetryDelay < 0 {
		add(line(rc.RetryDelay), "retry_delay", "must not be negative, got %v", st.RetryDelay)
	}
	if st.Retries < 0 || st.Retries > 5 {
		add(intLine(rc.Retries), "retries", "must be between 0 and 5, got %d", st.Retries)
	}
	if st.Quorum < 1 {
		add(intLine(rc.Quorum), "quorum", "must be at least 1, got %d", st.Quorum)
	}
	c.Contacts = slices.Clone(c.Contacts)
	for i, ct := range c.Contacts {
		field := fmt.Sprintf("contacts[%d]", i)
		if ct.Name == "" {
			add(0, field+".name", "is required")
		}
		phone, err := shared.phone(ct.Phone)
		if err != nil {
			add(0, field+".phone", "%v", err)
			continue
		}
		c.Contacts[i].Name, c.Contacts[i].Phone = shared.str(ct.Name), phone
	}
	c.Contacts = shared.contacts(c.Contacts)
	for i := range rc.Maintenance {
		w, ok := rc.Maintenance[i].resolve(func(line int, field, format string, args ...any) {
			name := fmt.Sprintf("maintenance[%d]", i)
			if field != "" {
				name += "." + field
			}
			add(line, name, format, args...)
		})
		if ok {
			c.Maintenance = append(c.Maintenance, w)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// interner shares what many checks of one file repeat (a customer's name,
// its contact list, a phone number's E.164 form), so that a file of a
// million checks holds each once (docs/capacity.md, "Memory"). What it
// returns is shared: read-only, as every parsed Check is.
type interner struct {
	strs   map[string]string
	phones map[string]phoneResult
	lists  map[string][]Contact // contact lists by their names and phones
}

type phoneResult struct {
	e164 string
	err  error
}

func newInterner() *interner {
	return &interner{strs: map[string]string{}, phones: map[string]phoneResult{}, lists: map[string][]Contact{}}
}

func (in *interner) str(s string) string {
	if v, ok := in.strs[s]; ok {
		return v
	}
	in.strs[s] = s
	return s
}

// phone is PhoneNumber, parsed once per distinct input.
func (in *interner) phone(raw string) (string, error) {
	r, ok := in.phones[raw]
	if !ok {
		r.e164, r.err = PhoneNumber(raw)
		r.e164 = in.str(r.e164)
		in.phones[raw] = r
	}
	return r.e164, r.err
}

// contacts returns the first list equal to cs (the same names and
// phones in the same order), or cs.
func (in *interner) contacts(cs []Contact) []Contact {
	if len(cs) == 0 {
		return nil
	}
	var key strings.Builder
	for _, c := range cs {
		key.WriteString(c.Name)
		key.WriteByte(0)
		key.WriteString(c.Phone)
		key.WriteByte(0)
	}
	if v, ok := in.lists[key.String()]; ok {
		return v
	}
	cs = slices.Clip(cs)
	in.lists[key.String()] = cs
	return cs
}

// noService reports the service-check fields set on a round-trip check.
func (rc *rawCheck) noService(add func(line int, field, format string, args ...any)) {
	r := rc.rawService
	texts := []struct {
		field string
		v     *text
	}{{"host", r.Host}, {"tls", r.TLS}, {"username", r.Username}, {"password_env", r.PasswordEnv}, {"expect_greeting", r.ExpectGreeting}}
	for _, t := range texts {
		if t.v != nil {
			add(t.v.Line, t.field, "is only for smtp, imap and pop3 checks")
		}
	}
	if r.OAuth != nil {
		add(r.oauthLine, "oauth", "is only for smtp, imap and pop3 checks")
	}
	ints := []struct {
		field string
		v     *Int
	}{{"port", r.Port}, {"cert_warning_days", r.CertWarningDays}}
	for _, i := range ints {
		if i.v != nil {
			add(i.v.Line, i.field, "is only for smtp, imap and pop3 checks")
		}
	}
}

// service validates the service-check fields and applies their defaults.
func (rc *rawCheck) service(kind string, add func(line int, field, format string, args ...any)) Service {
	r := rc.rawService
	get := func(field string, t *text) (string, int) {
		if t == nil {
			return "", 0
		}
		if t.NotScalar {
			add(t.Line, field, "must be a single value, not a list or map")
		}
		return t.S, t.Line
	}
	s := Service{TLS: TLSStartTLS, CertWarningDays: DefaultCertWarningDays}

	host, hostLine := get("host", r.Host)
	switch {
	case r.Host != nil && r.Host.NotScalar:
		// reported by get
	case host == "":
		add(hostLine, "host", "is required for %s checks (the server's DNS name or IP address)", kind)
	case !validHost(host):
		add(hostLine, "host", "%q is not a DNS name or IP address (without a port: the port goes in port)", host)
	}
	s.Host = host

	tlsMode, tlsLine := get("tls", r.TLS)
	switch tlsMode {
	case TLSNone, TLSStartTLS, TLSImplicit:
		s.TLS = tlsMode
	case "":
		if r.TLS != nil {
			add(tlsLine, "tls", "must not be empty: none, starttls or implicit")
		}
	default:
		add(tlsLine, "tls", "%q is not one of none, starttls, implicit", tlsMode)
	}

	s.Port = DefaultPort(kind, s.TLS)
	if r.Port != nil && !r.Port.Invalid {
		s.Port = r.Port.N
		if s.Port < 1 || s.Port > 65535 {
			add(r.Port.Line, "port", "must be between 1 and 65535, got %d", s.Port)
		}
	}

	user, userLine := get("username", r.Username)
	pwEnv, pwLine := get("password_env", r.PasswordEnv)
	s.Username, s.PasswordEnv = user, pwEnv
	if r.OAuth != nil {
		s.OAuth = rc.oauth(user, add)
	}
	switch {
	case s.OAuth != nil && pwEnv != "":
		add(pwLine, "password_env", "give password_env or an oauth block, not both")
	case r.OAuth != nil && user == "":
		add(r.oauthLine, "username", "is required with oauth: the mailbox to log in as (e.g. webscout@acme.example)")
	case r.OAuth != nil && kind == events.KindSMTP && s.TLS == TLSNone:
		add(userLine, "username", "an smtp check sends credentials only over TLS: set tls to starttls or implicit")
	case r.OAuth != nil:
	case user != "" && pwEnv == "":
		add(userLine, "password_env", "is required with username (or an oauth block): the NAME of the environment variable that holds the password")
	case user == "" && pwEnv != "":
		add(pwLine, "username", "is required with password_env")
	case user != "" && kind == events.KindSMTP && s.TLS == TLSNone:
		add(userLine, "username", "an smtp check sends credentials only over TLS: set tls to starttls or implicit")
	}
	if pwEnv != "" && !envName.MatchString(pwEnv) {
		add(pwLine, "password_env", "%q is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*); it names the variable that holds the password, never the password itself", pwEnv)
	}

	if pat, line := get("expect_greeting", r.ExpectGreeting); pat != "" {
		re, err := regexp.Compile(pat)
		if err != nil {
			add(line, "expect_greeting", "%q is not a regular expression: %v", pat, err)
		}
		s.ExpectGreeting = re
	}

	if r.CertWarningDays != nil && !r.CertWarningDays.Invalid {
		s.CertWarningDays = r.CertWarningDays.N
		switch {
		case s.CertWarningDays < 0 || s.CertWarningDays > 365:
			add(r.CertWarningDays.Line, "cert_warning_days", "must be between 0 and 365, got %d", s.CertWarningDays)
		case s.TLS == TLSNone:
			add(r.CertWarningDays.Line, "cert_warning_days", "has no effect with tls: none")
		}
	}
	return s
}

// oauth validates a service check's oauth block; every problem names
// the field, e.g. oauth.client_secret_env. It returns nil when the block
// cannot be used.
func (rc *rawCheck) oauth(user string, add func(line int, field, format string, args ...any)) *OAuth {
	r := rc.rawService.OAuth
	bad := false
	fail := func(line int, field, format string, args ...any) {
		if line == 0 {
			line = rc.oauthLine
		}
		add(line, "oauth."+field, format, args...)
		bad = true
	}
	get := func(field string, t *text) (string, int) {
		if t == nil {
			return "", 0
		}
		if t.NotScalar {
			fail(t.Line, field, "must be a single value, not a list or map")
		}
		return t.S, t.Line
	}
	o := &OAuth{Scopes: r.Scopes}
	var lines = map[string]int{}
	for _, f := range []struct {
		name string
		t    *text
		v    *string
	}{{"provider", r.Provider, &o.Provider}, {"tenant", r.Tenant, &o.Tenant}, {"client_id", r.ClientID, &o.ClientID},
		{"client_secret_env", r.ClientSecretEnv, &o.ClientSecretEnv}, {"service_account_file_env", r.ServiceAccountFileEnv, &o.ServiceAccountFileEnv},
		{"subject", r.Subject, &o.Subject}, {"mechanism", r.Mechanism, &o.Mechanism}, {"token_url", r.TokenURL, &o.TokenURL}} {
		*f.v, lines[f.name] = get(f.name, f.t)
	}
	set := func(field string) bool { _, ok := lines[field]; return ok && lines[field] > 0 }
	notFor := func(fields ...string) {
		for _, f := range fields {
			if set(f) {
				fail(lines[f], f, "is not used by provider %s", o.Provider)
			}
		}
	}
	envVar := func(field, value, holds string) {
		switch {
		case value == "":
			fail(lines[field], field, "is required by provider %s: the NAME of the environment variable that holds %s", o.Provider, holds)
		case !envName.MatchString(value):
			// The value is not quoted: it may be the secret itself.
			fail(lines[field], field, "is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*); it names the variable that holds %s, never the secret itself", holds)
		}
	}
	switch o.Provider {
	case OAuthMicrosoft:
		if o.Tenant == "" && o.TokenURL == "" {
			fail(lines["tenant"], "tenant", "is required by provider microsoft (the Entra tenant id or domain)")
		}
		if strings.ContainsAny(o.Tenant, "/?#% ") {
			fail(lines["tenant"], "tenant", "%q is not a tenant id or domain", o.Tenant)
		}
		if o.ClientID == "" {
			fail(lines["client_id"], "client_id", "is required by provider microsoft (the application (client) id)")
		}
		envVar("client_secret_env", o.ClientSecretEnv, "the client secret")
		notFor("service_account_file_env", "subject")
	case OAuthGoogle:
		envVar("service_account_file_env", o.ServiceAccountFileEnv, "the path of the service account's JSON key")
		notFor("tenant", "client_id", "client_secret_env")
		if o.Subject == "" {
			o.Subject = user
		}
		if a, err := mail.ParseAddress(o.Subject); err != nil || a.Address != o.Subject {
			fail(lines["subject"], "subject", "%q is not a mailbox address (the user the service account acts for)", o.Subject)
		}
	case "":
		fail(lines["provider"], "provider", "is required: microsoft or google")
	default:
		fail(lines["provider"], "provider", "%q is not microsoft or google", o.Provider)
	}
	switch strings.ToLower(o.Mechanism) {
	case "", "xoauth2", "oauthbearer":
		o.Mechanism = strings.ToLower(o.Mechanism)
	default:
		fail(lines["mechanism"], "mechanism", "%q is not xoauth2 or oauthbearer", o.Mechanism)
	}
	if o.TokenURL != "" {
		u, err := url.Parse(o.TokenURL)
		loopback := false
		if err == nil {
			ip, perr := netip.ParseAddr(u.Hostname())
			loopback = u.Hostname() == "localhost" || (perr == nil && ip.IsLoopback())
		}
		if err != nil || u.Host == "" || !(u.Scheme == "https" || (u.Scheme == "http" && loopback)) {
			fail(lines["token_url"], "token_url", "%q is not an https URL (http only to a loopback address)", o.TokenURL)
		}
	}
	for _, sc := range o.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\r\n") {
			fail(0, "scopes", "%q is not one scope", sc)
		}
	}
	if bad {
		return nil
	}
	return o
}

// validHost reports whether h is an IP address or a DNS name (RFC 1123
// labels: letters, digits and inner hyphens, 1 to 63 characters each, 253
// in all; one trailing dot allowed).
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// warnings returns the doubtful settings of a valid check.
func warnings(name string, c *Check, index int, pos positions) []*Error {
	var out []*Error
	warn := func(field, format string, args ...any) {
		line := pos.line(index, field)
		if line == 0 {
			line = c.Line
		}
		out = append(out, &Error{File: name, Line: line, Check: c.ID, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Quorum > len(c.Sites) {
		warn("quorum", "%d is capped at the check's %d site(s): %d must agree", c.Quorum, len(c.Sites), len(c.Sites))
	}
	if len(c.Contacts) == 0 && !c.Canary {
		warn("contacts", "none: incidents are recorded and published, but nobody is sent a message")
	}
	if c.Interval < c.Timeout {
		warn("interval", "%v is shorter than timeout %v: attempts of consecutive slots overlap", c.Interval, c.Timeout)
	}
	return out
}

func merge(base Settings, layers ...rawSettings) Settings {
	s := base
	for _, l := range layers {
		if l.Interval != nil && !l.Interval.Invalid {
			s.Interval = l.Interval.D
		}
		if l.Timeout != nil && !l.Timeout.Invalid {
			s.Timeout = l.Timeout.D
		}
		if l.Slow != nil && !l.Slow.Invalid {
			s.Slow = l.Slow.D
		}
		if l.RetryDelay != nil && !l.RetryDelay.Invalid {
			s.RetryDelay = l.RetryDelay.D
		}
		if l.Retries != nil && !l.Retries.Invalid {
			s.Retries = l.Retries.N
		}
		if l.Quorum != nil && !l.Quorum.Invalid {
			s.Quorum = l.Quorum.N
		}
	}
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
