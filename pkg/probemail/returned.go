package probemail

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// How ParseReturned found the test id, most trustworthy first.
const (
	MatchHeader     = "header"      // the X-Scout-Probe field (verifiable)
	MatchMessageID  = "message-id"  // "scout.<id>@" or "reflected.<id>@"
	MatchInReplyTo  = "in-reply-to" // the reflection's reference to the probe
	MatchReferences = "references"
	MatchSubject    = "subject" // decoded, unfolded Subject
)

// Returned is what ParseReturned learned from a message. Nothing in it is
// verified: call Verify with HeaderValue and ProbeTo before trusting Probe.
type Returned struct {
	// HeaderValue is the X-Scout-Probe value, unfolded; empty when absent.
	HeaderValue string
	// Probe holds the fields of HeaderValue when it parsed (HeaderErr nil).
	Probe     Probe
	HeaderErr error
	// ProbeTo is the X-Scout-Probe-To the reflector wrote (empty for a probe
	// that was not reflected).
	ProbeTo string
	// TestID and MatchedBy: the test the message belongs to, and how that
	// was found. TestID is empty when nothing matched.
	TestID    string
	MatchedBy string
	// ReflectedAt is the reflector's stamp from X-Scout-Reflected-At, or from
	// the Subject when a system dropped the header; nil when absent.
	ReflectedAt *time.Time
	Subject     string // decoded
	MessageID   string
	// AutoSubmitted is the Auto-Submitted value ("" when absent or "no").
	AutoSubmitted string
	From          string   // first From address, lower case
	To            []string // the To addresses, lower case (the probe's recipient: its signature covers it)
	Hops          int      // Received: fields
	// Received are those fields read as hops, oldest first (Hops).
	Received []events.Hop
}

// Reflected reports whether the message carries a reflection stamp.
func (r *Returned) Reflected() bool { return r.ReflectedAt != nil }

var (
	idPattern      = regexp.MustCompile(`(?:^|[^a-z0-9])([a-z2-7]{24})(?:$|[^a-z0-9])`)
	msgIDPattern   = regexp.MustCompile(`^(?:scout|reflected)\.([a-z0-9_-]{1,63})@`)
	stampPattern   = regexp.MustCompile(`\[reflected (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))\]`)
	subjectPattern = regexp.MustCompile(`(?i)email scout probe\s+([a-z0-9_-]{1,63})`)
)

// ParseReturned reads a message (at most MaxMessageBytes; a leading mbox
// "From " line is skipped) and finds the probe it belongs to. It returns an
// error only when the header cannot be read at all; a message with no probe
// has an empty TestID.
func ParseReturned(msg []byte) (*Returned, error) {
	if len(msg) > MaxMessageBytes {
		return nil, fmt.Errorf("parse returned message: %w", ErrTooLarge)
	}
	th, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(StripMboxFrom(msg))))
	if err != nil {
		return nil, fmt.Errorf("parse returned message: %w", err)
	}
	h := mail.Header{Header: messageHeader(th)}
	r := &Returned{}

	r.HeaderValue = unfold(h.Get(HeaderProbe))
	if r.HeaderValue != "" {
		r.Probe, _, r.HeaderErr = ParseHeader(r.HeaderValue)
	} else {
		r.HeaderErr = ErrNoProbe
	}
	r.ProbeTo = strings.TrimSpace(decodeWords(unfold(h.Get(HeaderProbeTo))))
	if s, err := h.Subject(); err == nil {
		r.Subject = s
	} else {
		r.Subject = decodeWords(unfold(h.Get("Subject")))
	}
	r.Subject = unfold(r.Subject)
	r.MessageID, _ = h.MessageID()
	if v := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); v != "" && v != "no" {
		r.AutoSubmitted = v
	}
	if from, err := h.AddressList("From"); err == nil && len(from) > 0 {
		r.From = strings.ToLower(from[0].Address)
	}
	if to, err := h.AddressList("To"); err == nil {
		for _, a := range to {
			r.To = append(r.To, strings.ToLower(a.Address))
		}
	}
	r.Hops = len(h.Values("Received"))
	r.Received = Hops(h.Values("Received"))

	if v := strings.TrimSpace(unfold(h.Get(HeaderReflectedAt))); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			t = t.UTC()
			r.ReflectedAt = &t
		}
	}
	if r.ReflectedAt == nil {
		if m := stampPattern.FindStringSubmatch(r.Subject); m != nil {
			if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
				t = t.UTC()
				r.ReflectedAt = &t
			}
		}
	}

	switch {
	case r.HeaderErr == nil:
		r.TestID, r.MatchedBy = r.Probe.TestID, MatchHeader
	case matchMsgID(r.MessageID) != "":
		r.TestID, r.MatchedBy = matchMsgID(r.MessageID), MatchMessageID
	default:
		for _, f := range []struct{ key, how string }{{"In-Reply-To", MatchInReplyTo}, {"References", MatchReferences}} {
			ids, _ := h.MsgIDList(f.key)
			for _, id := range ids {
				if t := matchMsgID(id); t != "" {
					r.TestID, r.MatchedBy = t, f.how
					break
				}
			}
			if r.TestID != "" {
				break
			}
		}
		if r.TestID == "" {
			if t := matchSubject(r.Subject); t != "" {
				r.TestID, r.MatchedBy = t, MatchSubject
			}
		}
	}
	return r, nil
}

func matchMsgID(id string) string {
	if m := msgIDPattern.FindStringSubmatch(strings.ToLower(strings.Trim(id, "<> "))); m != nil {
		return m[1]
	}
	return ""
}

// matchSubject finds the test id after "Email Scout probe", whatever was
// added before it; failing that, any token shaped like a NewTestID id.
func matchSubject(s string) string {
	if m := subjectPattern.FindStringSubmatch(s); m != nil {
		return strings.ToLower(m[1])
	}
	if m := idPattern.FindStringSubmatch(strings.ToLower(s)); m != nil {
		return m[1]
	}
	return ""
}

// unfold removes the CRLF of folded header lines (RFC 5322 section 2.2.3).
func unfold(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "")
	return strings.ReplaceAll(s, "\n", "")
}

func messageHeader(th textproto.Header) message.Header {
	return message.Header{Header: th}
}
