package probemail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// BuildOptions are the presentational parts of a probe.
type BuildOptions struct {
	// From is the header From address; empty means the probe's ReturnTo.
	From string
	// FromName is the display name of From; empty means "Email Scout".
	FromName string
	// CheckName is the human check name shown in the body; empty means the
	// check id.
	CheckName string
}

// MaxMessageBytes bounds messages this package reads (ParseReturned,
// Reflect). Probes are about 1 KiB; mail systems add headers and
// disclaimers, rarely more than a few KiB.
const MaxMessageBytes = 256 << 10

// Build returns a complete RFC 5322 probe message for p, addressed to to
// (the probe mailbox) and signed with key. Lines end in CRLF. It returns an
// error when p or to cannot be signed (see Sign).
func Build(p Probe, to string, key Key, opt BuildOptions) ([]byte, error) {
	sig, err := Sign(p, to, key)
	if err != nil {
		return nil, err
	}
	p.KeyID = key.ID
	if !validAddr(to) {
		return nil, fmt.Errorf("build probe: to %q is not a plain address", to)
	}
	from := opt.From
	if from == "" {
		from = p.ReturnTo
	}
	name := opt.FromName
	if name == "" {
		name = "Email Scout"
	}
	checkName := opt.CheckName
	if checkName == "" {
		checkName = p.CheckID
	}
	var h mail.Header
	h.SetDate(p.StartedAt)
	h.SetAddressList("From", []*mail.Address{{Name: name, Address: from}})
	h.SetAddressList("To", []*mail.Address{{Address: to}})
	h.SetSubject(fmt.Sprintf("Email Scout probe %s (%s, site %s, attempt %d)", p.TestID, p.CheckID, p.Site, p.Attempt))
	h.SetMessageID(ProbeMessageID(p.TestID, p.ReturnTo))
	h.Set(HeaderProbe, sig)
	h.Set("MIME-Version", "1.0")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Transfer-Encoding", "8bit")
	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, h.Header.Header); err != nil {
		return nil, fmt.Errorf("build probe: %w", err)
	}
	fmt.Fprintf(&buf, "This message is an Email Scout round-trip probe. The reflector at this\r\n"+
		"mailbox answers it automatically; nobody needs to read or keep it.\r\n\r\n"+
		"Check:   %s (%s)\r\nSite:    %s\r\nAttempt: %d\r\nTest:    %s\r\nStarted: %s\r\n",
		checkName, p.CheckID, p.Site, p.Attempt, p.TestID, p.StartedAt.UTC().Format(StampLayout))
	return buf.Bytes(), nil
}

// ProbeMessageID returns the Message-ID (without <>) of the probe for
// testID: "scout.<test id>@<domain of returnTo>".
func ProbeMessageID(testID, returnTo string) string {
	return "scout." + testID + "@" + domainOf(returnTo)
}

// ReflectedMessageID returns the Message-ID (without <>) of the reflection:
// "reflected.<test id>@<domain of the probe mailbox>".
func ReflectedMessageID(testID, probeTo string) string {
	return "reflected." + testID + "@" + domainOf(probeTo)
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && i+1 < len(addr) {
		return addr[i+1:]
	}
	return "localhost"
}

// StampLayout is the reflection time format: RFC 3339, UTC, milliseconds.
const StampLayout = "2006-01-02T15:04:05.000Z07:00"

// Reflect returns the reflection of a verified probe: the message msg with
// the reflection header fields set (see the package documentation), From set
// to from (the probe mailbox), addressed to p.ReturnTo, and every line
// ending in CRLF. at is the reflector's clock. probeTo is the address the
// probe was verified for. It fails only when msg's header cannot be read.
func Reflect(msg []byte, p Probe, probeTo, from string, at time.Time) ([]byte, error) {
	br := bufio.NewReader(bytes.NewReader(msg))
	th, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("reflect: read header: %w", err)
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return nil, fmt.Errorf("reflect: read body: %w", err)
	}
	h := mail.Header{Header: messageHeader(th)}
	subject, err := h.Subject()
	if err != nil {
		subject = h.Get("Subject")
	}
	origID, _ := h.MessageID()
	stamp := at.UTC().Format(StampLayout)
	for _, k := range []string{
		"Return-Path", "Delivered-To", "X-Original-To", "DKIM-Signature", "ARC-Seal",
		"ARC-Message-Signature", "ARC-Authentication-Results", "To", "Cc", "Bcc",
		"In-Reply-To", "References", "Auto-Submitted", "Message-Id", "Date", "From",
		"Sender", "Reply-To", HeaderReflectedAt, HeaderProbeTo,
	} {
		h.Del(k)
	}
	h.SetAddressList("From", []*mail.Address{{Address: from}})
	h.SetAddressList("To", []*mail.Address{{Address: p.ReturnTo}})
	h.SetDate(at)
	h.SetSubject(subject + " [reflected " + stamp + "]")
	h.SetMessageID(ReflectedMessageID(p.TestID, probeTo))
	if origID != "" {
		h.SetMsgIDList("In-Reply-To", []string{origID})
		h.SetMsgIDList("References", []string{origID})
	}
	h.Set("Auto-Submitted", "auto-replied")
	h.Set(HeaderReflectedAt, stamp)
	h.Set(HeaderProbeTo, probeTo)
	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, h.Header.Header); err != nil {
		return nil, fmt.Errorf("reflect: write header: %w", err)
	}
	buf.Write(crlf(body))
	return buf.Bytes(), nil
}

// crlf turns bare LF line ends into CRLF.
func crlf(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) {
		return b
	}
	out := make([]byte, 0, len(b)+bytes.Count(b, []byte("\n")))
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// StripMboxFrom removes a leading mbox "From " line (as Postfix's local
// delivery agent writes before piping a message to a command).
func StripMboxFrom(msg []byte) []byte {
	if !bytes.HasPrefix(msg, []byte("From ")) {
		return msg
	}
	if i := bytes.IndexByte(msg, '\n'); i >= 0 {
		return msg[i+1:]
	}
	return nil
}

// ErrTooLarge is returned when a message exceeds MaxMessageBytes.
var ErrTooLarge = errors.New("message too large")

// ReadMessage reads at most MaxMessageBytes from r, failing with ErrTooLarge
// beyond.
func ReadMessage(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxMessageBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, MaxMessageBytes)
	}
	return b, nil
}
