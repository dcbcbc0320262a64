// Package checks loads and validates the check definition file: which mail
// systems Email Scout watches, from which sites, how often, and whom to tell.
//
// The file is YAML (in Kubernetes, a ConfigMap). Decoding is strict: an
// unknown key is an error, so a typo never silently turns a setting off.
// Defaults come from three layers, first match wins: the check itself, the
// file's "defaults" block, then the built-in defaults of DESIGN.md
// (DefaultRoundTrip, DefaultService). Every field is documented in
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
	"net/mail"
	"os"
	"regexp"
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

// DefaultRoundTrip are the defaults of a round-trip check (DESIGN.md,
// "Defaults").
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

// Contact is someone told by SMS when an incident of the check opens and
// resolves.
type Contact struct {
	Name  string `yaml:"name"`
	Phone string `yaml:"phone"` // E.164, e.g. "+15555550100"
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
	Sites  []string // the sites that run the check
	Settings
	Contacts []Contact
	// NotifyWarnings sends SMS for warning incidents (slow / degraded) too.
	NotifyWarnings bool
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
	Path   string   // as given to Load (for messages)
	Sites  []string // the file's "sites"
	Checks []*Check // in file order

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

// Parse validates data as a check file; name is used in messages.
func Parse(name string, data []byte) (*File, error) {
	var raw rawFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "the file is empty"}
		}
		return nil, yamlErrors(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{File: name, Line: extra.Line, Msg: "only one YAML document is allowed"}
	}
	return raw.resolve(name, checkLines(data))
}

// checkLines returns the line on which each item of the top-level "checks"
// sequence starts. The strict decode above has already accepted data.
func checkLines(data []byte) []int {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "checks" {
			continue
		}
		var lines []int
		for _, item := range root.Content[i+1].Content {
			lines = append(lines, item.Line)
		}
		return lines
	}
	return nil
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
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	d.Line = n.Line
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration such as 30s or 20m is expected", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 20m", n.Line, n.Value)
	}
	d.D = v
	return nil
}

// Int is an integer setting that remembers its line.
type Int struct {
	N    int
	Line int
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (i *Int) UnmarshalYAML(n *yaml.Node) error {
	i.Line = n.Line
	if err := n.Decode(&i.N); err != nil {
		return fmt.Errorf("line %d: %q is not a whole number", n.Line, n.Value)
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
	rawSettings    `yaml:",inline"`

	line int

	// Maintenance windows as written (see rawWindow).
	Maintenance []rawWindow `yaml:"maintenance"`
}

type rawFile struct {
	Sites    []string    `yaml:"sites"`
	Defaults rawSettings `yaml:"defaults"`
	Checks   []rawCheck  `yaml:"checks"`
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func (r *rawFile) resolve(name string, lines []int) (*File, error) {
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
	for i := range r.Checks {
		rc := &r.Checks[i]
		if i < len(lines) {
			rc.line = lines[i]
		}
		c, cerrs := rc.resolve(name, i, r)
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
		f.byID[c.ID] = c
		f.Checks = append(f.Checks, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

func (rc *rawCheck) resolve(name string, index int, file *rawFile) (*Check, []error) {
	var errs []error
	id := rc.ID
	add := func(line int, field, format string, args ...any) {
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
		Contacts: rc.Contacts, NotifyWarnings: rc.NotifyWarnings, Canary: rc.Canary, Line: rc.line,
	}
	if c.Name == "" {
		c.Name = c.ID
	}
	if c.Customer == "" {
		add(0, "customer", "is required (it selects the probe signing keys)")
	} else if !events.ValidToken(c.Customer) {
		add(0, "customer", "must be 1 to 63 characters of a-z, 0-9, '-' and '_'")
	}
	base := DefaultService
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
	case events.KindSMTP, events.KindIMAP, events.KindPOP3:
		add(0, "kind", "%q service checks are not supported by this version yet", c.Kind)
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
	for i, ct := range c.Contacts {
		field := fmt.Sprintf("contacts[%d]", i)
		if ct.Name == "" {
			add(0, field+".name", "is required")
		}
		if !e164.MatchString(ct.Phone) {
			add(0, field+".phone", "%q is not an E.164 number such as +15555550100", ct.Phone)
		}
	}
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

func merge(base Settings, layers ...rawSettings) Settings {
	s := base
	for _, l := range layers {
		if l.Interval != nil {
			s.Interval = l.Interval.D
		}
		if l.Timeout != nil {
			s.Timeout = l.Timeout.D
		}
		if l.Slow != nil {
			s.Slow = l.Slow.D
		}
		if l.RetryDelay != nil {
			s.RetryDelay = l.RetryDelay.D
		}
		if l.Retries != nil {
			s.Retries = l.Retries.N
		}
		if l.Quorum != nil {
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
