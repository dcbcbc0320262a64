package dsn

import (
	"bufio"
	"bytes"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// parseStatus reads a message/delivery-status body (RFC 3464 section 2.1):
// blocks of header-like fields separated by blank lines, the first holding
// the per-message fields (section 2.2), each other the fields of one
// recipient (section 2.3). A block is a recipient's when it has
// Final-Recipient or Original-Recipient; per-message fields are read from
// the first block that has them, wherever it is (some MTAs drop the blank
// line between). A block with a malformed line keeps the fields before it.
// It returns an error wrapping ErrNoRecipient when no block names a
// recipient.
func parseStatus(body []byte, r *Report) error {
	for _, blk := range blocks(body) {
		h := message.Header{Header: readFields(blk)}
		perMessage(h, r)
		if !h.Has("Final-Recipient") && !h.Has("Original-Recipient") {
			continue
		}
		if len(r.Recipients) < MaxRecipients {
			r.Recipients = append(r.Recipients, recipient(h))
		}
	}
	if len(r.Recipients) == 0 {
		return fmt.Errorf("%w: the delivery-status part has no per-recipient fields (RFC 3464 section 2.1)", ErrNoRecipient)
	}
	r.Parser = ParserRFC3464
	return nil
}

// perMessage reads the per-message fields of RFC 3464 section 2.2 that r
// does not have yet.
func perMessage(h message.Header, r *Report) {
	if r.ReportingMTA == "" {
		r.ReportingMTA = mtaName(fieldText(h, "Reporting-MTA"))
	}
	if r.ArrivalDate.IsZero() {
		r.ArrivalDate = date(fieldText(h, "Arrival-Date"))
	}
	if r.OriginalEnvelopeID == "" {
		r.OriginalEnvelopeID = fieldText(h, "Original-Envelope-Id")
	}
}

// blocks splits body at empty lines, dropping empty blocks. A line of white
// space only is a continuation line, not a separator (RFC 5322 section
// 2.2.3).
func blocks(body []byte) [][]byte {
	var out [][]byte
	var cur []byte
	for _, l := range lines(body) {
		if l == "" {
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, l...)
		cur = append(cur, '\r', '\n')
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// readFields reads one block of fields with go-message's header reader; on
// a malformed line it keeps the fields read before it.
func readFields(blk []byte) textproto.Header {
	blk = append(blk, '\r', '\n')
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(blk)))
	return h
}

// recipient reads the per-recipient fields of RFC 3464 section 2.3.
func recipient(h message.Header) Recipient {
	rc := Recipient{
		FinalRecipient:    address(fieldText(h, "Final-Recipient")),
		OriginalRecipient: address(fieldText(h, "Original-Recipient")),
		Action:            action(fieldText(h, "Action")),
		Status:            status(fieldText(h, "Status")),
		RemoteMTA:         mtaName(fieldText(h, "Remote-MTA")),
		LastAttemptDate:   date(fieldText(h, "Last-Attempt-Date")),
		WillRetryUntil:    date(fieldText(h, "Will-Retry-Until")),
	}
	typ, diag := typed(fieldText(h, "Diagnostic-Code"))
	rc.DiagnosticType, rc.Diagnostic = typ, diagnostic(diag)
	rc.Code = smtpCode(rc.Diagnostic)
	if rc.FinalRecipient == "" {
		rc.FinalRecipient = rc.OriginalRecipient
	}
	return rc
}

// typed splits "type; value" (RFC 3464 section 2.1.2: address-type,
// diagnostic-type, mta-name-type) into its trimmed parts. A value whose
// text before the first ";" is not an atom (RFC 5322 section 3.2.3), such
// as "550 5.1.1 x; y", has no type.
func typed(v string) (typ, val string) {
	typ, val, ok := strings.Cut(v, ";")
	typ = strings.TrimSpace(typ)
	if !ok || !typePattern.MatchString(typ) {
		return "", strings.TrimSpace(v)
	}
	return typ, strings.TrimSpace(val)
}

var typePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,63}$`)

// address returns the address of an address field ("rfc822; <a@b>" gives
// "a@b").
func address(v string) string {
	_, a := typed(v)
	return strings.TrimSpace(strings.Trim(a, "<> \t"))
}

// mtaName returns the host name of an MTA field: its first word without
// type, brackets, comment or final dot ("dns; mx.example. (192.0.2.1)"
// gives "mx.example").
func mtaName(v string) string {
	_, name := typed(v)
	if i := strings.IndexAny(name, " \t("); i >= 0 {
		name = name[:i]
	}
	return strings.TrimSuffix(strings.Trim(name, "[]"), ".")
}

// action returns the lower-case action (RFC 3464 section 2.3.3), or "" for
// a value that is none of the five.
func action(v string) string {
	f := strings.Fields(strings.ToLower(v))
	if len(f) == 0 {
		return ""
	}
	switch f[0] {
	case ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded:
		return f[0]
	}
	return ""
}

var statusPattern = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// status returns the RFC 3463 status code a Status field starts with ("5.1.1
// (bad mailbox)" gives "5.1.1"), or "".
func status(v string) string {
	f := strings.Fields(v)
	if len(f) == 0 || !statusPattern.MatchString(f[0]) {
		return ""
	}
	return f[0]
}

// date parses an RFC 5322 date-time (RFC 3464 section 2.1.1 refers to it),
// with or without a trailing comment; zero when it does not parse.
func date(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	if t, err := mail.ParseDate(v); err == nil {
		return t.UTC()
	}
	if i := strings.IndexByte(v, '('); i > 0 {
		if t, err := mail.ParseDate(strings.TrimSpace(v[:i])); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

var replyStart = regexp.MustCompile(`^([2-5]\d\d)([- ])(?:([245]\.\d{1,3}\.\d{1,3})\s)?`)

// diagnostic puts a diagnostic on one line. The text of a multi-line SMTP
// reply (RFC 5321 section 4.2.1), "550-5.1.1 a 550-5.1.1 b 550 5.1.1 c"
// once unfolded, keeps its code and enhanced code once: "550 5.1.1 a b c".
func diagnostic(v string) string {
	v = oneLine(v)
	m := replyStart.FindStringSubmatch(v)
	if m == nil || m[2] != "-" {
		return v
	}
	code, enhanced := m[1], m[3]
	head, rest := code+" ", v[len(m[0]):]
	if enhanced != "" {
		head += enhanced + " "
	}
	for _, sep := range []string{"-", " "} {
		repeat := " " + code + sep
		if enhanced != "" {
			repeat += enhanced
		}
		rest = strings.ReplaceAll(" "+rest, repeat, " ")
	}
	return oneLine(head + rest)
}
