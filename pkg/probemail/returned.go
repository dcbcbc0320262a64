package probemail

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
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
	// Path is how the probe came back: PathReflector (stamped by
	// scout-reflector), PathForward (a forwarding rule: the probe itself,
	// no stamp) or PathForwardAttachment (forwarded as an attached
	// message/rfc822, whose header carries the probe's); empty when no
	// probe header was found.
	Path string
}

// Return paths (Returned.Path, events.MailReturned.Path).
const (
	PathReflector         = "reflector"
	PathForward           = "forward"
	PathForwardAttachment = "forward_attachment"
)

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
	attached := false
	if r.HeaderValue == "" {
		// Forwarded as an attachment: the probe is a message/rfc822 part.
		if inner, ok := attachedProbe(msg); ok {
			r.HeaderValue, attached = unfold(inner.Get(HeaderProbe)), true
		}
	}
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
	case r.HeaderValue == "":
	case attached:
		r.Path = PathForwardAttachment
	case r.ReflectedAt != nil:
		r.Path = PathReflector
	default:
		r.Path = PathForward
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

// maxAttachDepth bounds the MIME nesting searched for an attached probe.
const maxAttachDepth = 3

// attachedProbe finds, in a message forwarded as an attachment, the first
// message/rfc822 (or message/global, RFC 6532) part whose header has an
// X-Scout-Probe field, at most maxAttachDepth multiparts deep, and returns
// that header.
func attachedProbe(msg []byte) (message.Header, bool) {
	e, err := message.Read(bytes.NewReader(StripMboxFrom(msg)))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return message.Header{}, false
	}
	return findAttached(e, 0)
}

func findAttached(e *message.Entity, depth int) (message.Header, bool) {
	mr := e.MultipartReader()
	if mr == nil || depth >= maxAttachDepth {
		return message.Header{}, false
	}
	for {
		p, err := mr.NextPart()
		if err != nil {
			return message.Header{}, false
		}
		ct, _, _ := p.Header.ContentType()
		switch strings.ToLower(ct) {
		case "message/rfc822", "message/global":
			th, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(p.Body, MaxMessageBytes)))
			if err != nil {
				continue
			}
			if h := messageHeader(th); h.Get(HeaderProbe) != "" {
				return h, true
			}
		default:
			if strings.HasPrefix(strings.ToLower(ct), "multipart/") {
				if h, ok := findAttached(p, depth+1); ok {
					return h, true
				}
			}
		}
	}
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
