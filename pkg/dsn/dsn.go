package dsn

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emailscout/emailscout/pkg/probemail"
)

// Parsers (Report.Parser): which reading of the bounce matched.
const (
	ParserRFC3464  = "rfc3464"  // a message/delivery-status part (RFC 3464)
	ParserExchange = "exchange" // Microsoft Exchange / Exchange Online NDR text
	ParserQmail    = "qmail"    // "Hi. This is the qmail-send program at ..."
	ParserExim     = "exim"     // "This message was created automatically by mail delivery software."
)

// Actions (Recipient.Action), RFC 3464 section 2.3.3, lower case.
const (
	ActionFailed    = "failed"
	ActionDelayed   = "delayed"
	ActionDelivered = "delivered"
	ActionRelayed   = "relayed"
	ActionExpanded  = "expanded"
)

// Limits on what Parse reads.
const (
	// MaxMessageBytes bounds a bounce, in bytes. A bounce of a probe (about
	// 1 KiB) with its notice, report and returned original is a few KiB;
	// the limit leaves room for HTML notices and large returned headers.
	MaxMessageBytes = 1 << 20
	// MaxOriginalHeaderBytes bounds the returned original's header that is
	// read, in bytes; a longer header is cut at a line end and
	// Original.Truncated is set.
	MaxOriginalHeaderBytes = 64 << 10
	// MaxRecipients bounds the per-recipient blocks kept; the rest are
	// ignored.
	MaxRecipients = 100
	// MaxSummaryBytes bounds Summary's line, in bytes.
	MaxSummaryBytes = 300

	maxHeaderBytes = 256 << 10 // the bounce's and each part's header
	maxTextBytes   = 64 << 10  // a human-readable part, and a delivery-status part
	maxParts       = 64        // MIME parts visited
	maxDepth       = 4         // multipart nesting visited
)

// Errors returned by Parse, each wrapped with detail.
var (
	// ErrTooLarge: the bounce is over MaxMessageBytes.
	ErrTooLarge = errors.New("bounce too large")
	// ErrMalformed: the bounce's header cannot be read.
	ErrMalformed = errors.New("malformed message")
	// ErrNotBounce: neither a delivery status report nor a known
	// non-standard notice.
	ErrNotBounce = errors.New("not a bounce")
	// ErrNoRecipient: a delivery report or notice from which no recipient
	// could be read (RFC 3464 section 2.1 requires at least one
	// per-recipient block).
	ErrNoRecipient = errors.New("bounce names no recipient")
)

// Report is what Parse learned from one bounce. Text fields are decoded
// (RFC 2047), unfolded (RFC 5322 section 2.2.3) and trimmed; times are zero
// when absent or unreadable.
type Report struct {
	// Parser names the reading that matched: ParserRFC3464, ParserExchange,
	// ParserQmail or ParserExim.
	Parser string
	// From, To, Subject and MessageID are the bounce's own header fields:
	// the first From and To addresses (To is usually the probe's envelope
	// sender, see probemail.ParseVERP) and the Message-ID without <>.
	From, To, Subject, MessageID string
	// ReportingMTA is the name of the MTA that wrote the report, without its
	// type ("dns; mx.example" gives "mx.example"), RFC 3464 section 2.2.2;
	// for a non-standard notice, the host it names, or the domain of From.
	ReportingMTA string
	// ArrivalDate is when the reporting MTA received the probe, RFC 3464
	// section 2.2.5.
	ArrivalDate time.Time
	// OriginalEnvelopeID is the ENVID given at submission (RFC 3461
	// section 4.4), RFC 3464 section 2.2.1.
	OriginalEnvelopeID string
	// Recipients has one entry per recipient reported on, at least one
	// and at most MaxRecipients.
	Recipients []Recipient
	// Original is the returned probe's header; nil when the bounce returns
	// none.
	Original *Original
}

// Recipient is one per-recipient block, RFC 3464 section 2.3, or what a
// non-standard notice says of one recipient.
type Recipient struct {
	// FinalRecipient is the address the report is about, without its type
	// ("rfc822; a@b" gives "a@b"), RFC 3464 section 2.3.2.
	FinalRecipient string
	// OriginalRecipient is the address given in RCPT TO, when reported
	// (section 2.3.1).
	OriginalRecipient string
	// Action is one of the Action constants (section 2.3.3), or empty when
	// absent or none of them. Non-standard notices give ActionFailed or
	// ActionDelayed.
	Action string
	// Status is the RFC 3463 status "class.subject.detail", e.g. "5.1.1"
	// (section 2.3.4); empty when absent or not of that shape.
	Status string
	// DiagnosticType is the type of Diagnostic-Code, e.g. "smtp" or
	// "X-Postfix" (section 2.3.6); empty for a non-standard notice.
	DiagnosticType string
	// Diagnostic is the text of Diagnostic-Code without its type, on one
	// line; the codes that repeat on each line of a multi-line SMTP reply
	// (RFC 5321 section 4.2.1) are kept once: "550-5.1.1 a\n 550 5.1.1 b"
	// gives "550 5.1.1 a b".
	Diagnostic string
	// Code is the SMTP reply code that Diagnostic starts with (RFC 5321
	// section 4.2), 0 when it starts with none.
	Code int
	// RemoteMTA is the name of the MTA that gave the diagnostic, without
	// its type or comments (section 2.3.5).
	RemoteMTA string
	// LastAttemptDate (section 2.3.7) and WillRetryUntil (section 2.3.8),
	// in UTC; zero when absent or unreadable.
	LastAttemptDate, WillRetryUntil time.Time
}

// Original is the header of the returned probe: the third part of an RFC
// 3464 report (message/rfc822, message/global, or text/rfc822-headers), or
// the copy a non-standard notice quotes. Nothing in it is verified: pass
// Probe to probemail.Verify with the recipient before trusting it.
type Original struct {
	// Probe is the X-Scout-Probe value, unfolded; empty when absent.
	Probe string
	// MessageID is the original's Message-ID without <>.
	MessageID string
	// Subject is the original's decoded Subject.
	Subject string
	// TestID is the test the original belongs to, as
	// probemail.ParseReturned finds it (X-Scout-Probe, then Message-ID,
	// then Subject), and MatchedBy says how (probemail.MatchHeader, ...);
	// both empty when nothing matched.
	TestID, MatchedBy string
	// Truncated is set when the header was longer than
	// MaxOriginalHeaderBytes and was cut.
	Truncated bool
}

// Parse reads one bounce (at most MaxMessageBytes; a leading mbox "From "
// line is skipped) and returns its report. It returns an error wrapping
// ErrTooLarge, ErrMalformed (the header cannot be read), ErrNotBounce, or
// ErrNoRecipient (a report or notice that names no recipient). A Report
// returned without error has a Parser and at least one Recipient.
func Parse(msg []byte) (*Report, error) {
	if len(msg) > MaxMessageBytes {
		return nil, fmt.Errorf("parse bounce: %w: %d bytes, over %d", ErrTooLarge, len(msg), MaxMessageBytes)
	}
	b, err := readBounce(probemail.StripMboxFrom(msg))
	if err != nil {
		return nil, fmt.Errorf("parse bounce: %w", err)
	}
	r := b.header
	switch {
	case b.status != nil:
		if err := parseStatus(b.status, &r); err != nil && !parseText(b.text, &r) {
			return nil, fmt.Errorf("parse bounce: %w", err)
		}
	case !parseText(b.text, &r):
		if r.Parser != "" {
			return nil, fmt.Errorf("parse bounce: %w: a %s notice without a recognisable address", ErrNoRecipient, r.Parser)
		}
		return nil, fmt.Errorf("parse bounce: %w: %s", ErrNotBounce, b.what)
	}
	if r.ReportingMTA == "" {
		r.ReportingMTA = domainOf(r.From)
	}
	switch {
	case b.original != nil:
		r.Original = readOriginal(b.original)
	default:
		r.Original = quotedOriginal(b.text)
	}
	return &r, nil
}

// Permanent reports whether the recipient's delivery failed for good:
// Action failed; or, with no Action, a 5.x.x Status (RFC 3463 section 3.1),
// or a 5xx reply code when there is no Status. Delayed, delivered, relayed
// and expanded recipients are never permanent failures.
func (r Recipient) Permanent() bool {
	switch r.Action {
	case ActionFailed:
		return true
	case "":
		if r.Status != "" {
			return r.Status[0] == '5'
		}
		return r.Code/100 == 5
	}
	return false
}

// Delayed reports whether the recipient's delivery is still being tried:
// Action delayed (RFC 3464 section 2.3.3), whatever the Status (usually
// 4.x.x). A delay is a warning, never a failure.
func (r Recipient) Delayed() bool { return r.Action == ActionDelayed }

// Permanent reports whether any recipient failed permanently (see
// Recipient.Permanent).
func (r *Report) Permanent() bool {
	for _, rc := range r.Recipients {
		if rc.Permanent() {
			return true
		}
	}
	return false
}

// Delayed reports whether the report is a delay warning: no recipient failed
// permanently and at least one is delayed.
func (r *Report) Delayed() bool {
	if r.Permanent() {
		return false
	}
	for _, rc := range r.Recipients {
		if rc.Delayed() {
			return true
		}
	}
	return false
}

// Summary returns one line of evidence, at most MaxSummaryBytes, for the
// recipient that matters most (the first permanent failure, else the first
// delay, else the first recipient):
//
//	<MTA> refused the probe: <diagnostic>
//	<MTA> delayed the probe: <diagnostic>
//	<MTA> reported "<action>" for the probe: <diagnostic>
//
// where <MTA> is the Remote-MTA when known, else the Reporting-MTA, else
// "the mail system", and <diagnostic> the Diagnostic (preceded by the
// Status when it does not contain it), else the Status. Control characters
// and runs of white space become one space.
func (r *Report) Summary() string {
	if len(r.Recipients) == 0 {
		return ""
	}
	rc := r.primary()
	mta := firstOf(rc.RemoteMTA, r.ReportingMTA, "the mail system")
	verb := "reported \"" + firstOf(rc.Action, "no action") + "\" for the probe"
	switch {
	case rc.Permanent():
		verb = "refused the probe"
	case rc.Delayed():
		verb = "delayed the probe"
	}
	detail := rc.Diagnostic
	if rc.Status != "" && !strings.Contains(detail, rc.Status) {
		detail = strings.TrimSpace(rc.Status + " " + detail)
	}
	line := mta + " " + verb
	if detail != "" {
		line += ": " + detail
	}
	return truncate(oneLine(line), MaxSummaryBytes)
}

// primary returns the first permanent failure, else the first delay, else
// the first recipient. r has at least one recipient.
func (r *Report) primary() Recipient {
	for _, rc := range r.Recipients {
		if rc.Permanent() {
			return rc
		}
	}
	for _, rc := range r.Recipients {
		if rc.Delayed() {
			return rc
		}
	}
	return r.Recipients[0]
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// oneLine turns control characters and runs of white space into one space.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError
	}), " ")
}

// truncate cuts s to at most n bytes at a rune boundary, ending in "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// domainOf returns the domain of an address, or "".
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// smtpCode returns the reply code a diagnostic starts with ("550 ..." or
// "550-..."), or 0.
func smtpCode(s string) int {
	if len(s) < 3 || (len(s) > 3 && s[3] != ' ' && s[3] != '-') {
		return 0
	}
	n, err := strconv.Atoi(s[:3])
	if err != nil || n < 200 || n > 599 {
		return 0
	}
	return n
}

// lines splits text into lines without their CR.
func lines(text []byte) []string {
	out := strings.Split(string(text), "\n")
	for i, l := range out {
		out[i] = strings.TrimSuffix(l, "\r")
	}
	return out
}

// hasFold reports whether b contains needle, ignoring ASCII case.
func hasFold(b []byte, needle string) bool {
	return bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(needle)))
}
