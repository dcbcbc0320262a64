// Package transcript records a mail-protocol dialogue (SMTP, IMAP, POP3)
// for a person to read: "C: " what the client sent, "S: " what the server
// answered, one line each, in the order they crossed the wire, with the
// credentials masked.
//
// It sits on the connection the dialogue is spoken on (Conn): the TCP
// connection, then the TLS connection after STARTTLS or STLS, so that the
// transcript is the plain text and never the TLS records (Unwrap gives the
// connection a TLS handshake must run on).
//
// Masked ("****"): SMTP AUTH and the SASL exchange that follows it
// (RFC 4954); IMAP LOGIN's arguments and AUTHENTICATE's exchange, up to
// the command's tagged completion (RFC 9051 sections 6.2.2, 6.2.3); POP3
// PASS, APOP's digest and AUTH's exchange (RFC 1939, RFC 5034). An SMTP
// message body is left out ("C: <message: N bytes>"). At most
// events.MaxTranscriptLines lines of events.MaxTranscriptLine bytes are
// kept; the last line then says how many were dropped.
package transcript

import (
	"bytes"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/emailscout/emailscout/pkg/events"
)

// Transcript is one dialogue's record. Safe for concurrent use.
type Transcript struct {
	protocol string

	mu      sync.Mutex
	lines   []string
	dropped int
	// Partial lines, per direction.
	client, server []byte

	// SMTP: inData is between the 354 to DATA and the lone "." that ends
	// the message; dataBytes counts it.
	inData, dataAsked bool
	dataBytes         int
	// inAuth: from a command that starts a SASL exchange to the server's
	// final answer to it; authTag is its IMAP tag. literalNext: the next
	// client line is an IMAP literal of a LOGIN.
	inAuth      bool
	authTag     string
	literalNext bool
}

// New returns an empty transcript of protocol: events.KindSMTP, KindIMAP
// or KindPOP3 (any other value is recorded as SMTP).
func New(protocol string) *Transcript { return &Transcript{protocol: protocol} }

// Conn returns c with its traffic recorded in t.
func (t *Transcript) Conn(c net.Conn) net.Conn { return &conn{Conn: c, t: t} }

// Unwrap returns the connection under a Conn wrapper, or c itself: the
// connection a TLS handshake must run on.
func Unwrap(c net.Conn) net.Conn {
	if rc, ok := c.(*conn); ok {
		return rc.Conn
	}
	return c
}

// Lines returns the transcript so far; a partial last line of either
// direction is not included.
func (t *Transcript) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if t.dropped > 0 {
		out = append(out, "... "+strconv.Itoa(t.dropped)+" more lines")
	}
	return out
}

// Reset forgets the lines recorded so far (a session kept open for the
// next transaction starts a new transcript); the protocol state is kept.
func (t *Transcript) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines, t.dropped = nil, 0
}

func (t *Transcript) add(line string) {
	if len(line) > events.MaxTranscriptLine {
		line = line[:events.MaxTranscriptLine-3] + "..."
	}
	if len(t.lines) >= events.MaxTranscriptLines-1 {
		t.dropped++
		return
	}
	t.lines = append(t.lines, line)
}

// wrote records bytes the client wrote.
func (t *Transcript) wrote(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.client = append(t.client, p...)
	for {
		i := bytes.Index(t.client, []byte("\r\n"))
		if i < 0 {
			return
		}
		line := string(t.client[:i])
		t.client = t.client[i+2:]
		switch t.protocol {
		case events.KindIMAP:
			t.clientIMAP(line)
		case events.KindPOP3:
			t.clientPOP3(line)
		default:
			t.clientSMTP(line)
		}
	}
}

// read records bytes the client read.
func (t *Transcript) read(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.server = append(t.server, p...)
	for {
		i := bytes.Index(t.server, []byte("\r\n"))
		if i < 0 {
			return
		}
		line := string(t.server[:i])
		t.server = t.server[i+2:]
		switch t.protocol {
		case events.KindIMAP:
			t.serverIMAP(line)
		case events.KindPOP3:
			t.serverPOP3(line)
		default:
			t.serverSMTP(line)
		}
	}
}

// clientSMTP: AUTH's initial response and the SASL responses after it
// are masked (RFC 4954 section 4); the message between 354 and "." is
// counted, not kept.
func (t *Transcript) clientSMTP(line string) {
	switch {
	case t.inData:
		if line == "." {
			t.inData = false
			t.add("C: <message: " + strconv.Itoa(t.dataBytes) + " bytes>")
			t.add("C: .")
			return
		}
		t.dataBytes += len(line) + 2
	case t.inAuth && !strings.Contains(line, " "):
		t.add("C: ****") // a SASL response: base64, one word
	case hasVerb(line, "AUTH"):
		t.inAuth = true
		t.add("C: " + maskAfter(line, 2))
	default:
		t.inAuth = false // a command: the exchange is over
		if strings.EqualFold(line, "DATA") {
			t.dataAsked = true
		}
		t.add("C: " + line)
	}
}

// serverSMTP: a 334 challenge is masked (it may carry an OAuth error
// status or a digest challenge); the last line of any other reply ends
// the AUTH exchange.
func (t *Transcript) serverSMTP(line string) {
	last := len(line) < 4 || line[3] != '-'
	if t.inAuth && strings.HasPrefix(line, "334") {
		t.add("S: 334 ****")
		return
	}
	if t.inAuth && last {
		t.inAuth = false
	}
	if t.dataAsked && strings.HasPrefix(line, "354") {
		t.dataAsked, t.inData, t.dataBytes = false, true, 0
	} else if last {
		t.dataAsked = false
	}
	t.add("S: " + line)
}

// clientIMAP: "tag LOGIN ..." keeps the tag and command only, and a
// literal that follows it (a password sent as {n}) is masked;
// AUTHENTICATE's SASL responses (base64, one word each) are masked up to
// the tagged completion or the next command (RFC 9051 sections 6.2.2,
// 6.2.3, 4.3).
func (t *Transcript) clientIMAP(line string) {
	switch {
	case t.literalNext:
		t.literalNext = literal.MatchString(line)
		t.add("C: ****")
		return
	case t.inAuth && !strings.Contains(line, " "):
		t.add("C: ****")
		return
	}
	t.inAuth = false
	tag, rest, _ := strings.Cut(line, " ")
	switch {
	case hasVerb(rest, "LOGIN"):
		t.literalNext = literal.MatchString(line)
		t.add("C: " + tag + " " + maskAfter(rest, 1))
	case hasVerb(rest, "AUTHENTICATE"):
		t.inAuth, t.authTag = true, tag
		t.add("C: " + tag + " " + maskAfter(rest, 2))
	default:
		t.add("C: " + line)
	}
}

// literal is an IMAP synchronizing or non-synchronizing literal's
// announcement at the end of a line (RFC 9051 section 4.3, RFC 7888).
var literal = regexp.MustCompile(`\{\d+\+?\}$`)

// serverIMAP: a continuation request during AUTHENTICATE is masked (it
// may carry the OAuth error status); its tagged completion ends it.
func (t *Transcript) serverIMAP(line string) {
	if t.inAuth {
		if strings.HasPrefix(line, "+") {
			t.add("S: + ****")
			return
		}
		if strings.HasPrefix(line, t.authTag+" ") {
			t.inAuth = false
		}
	}
	t.add("S: " + line)
}

// clientPOP3: PASS's argument, APOP's digest and AUTH's exchange are
// masked.
func (t *Transcript) clientPOP3(line string) {
	if t.inAuth && !strings.Contains(line, " ") {
		t.add("C: ****") // a SASL response: base64, one word
		return
	}
	t.inAuth = false
	switch {
	case hasVerb(line, "PASS"):
		t.add("C: " + maskAfter(line, 1))
	case hasVerb(line, "APOP"):
		t.add("C: " + maskAfter(line, 2))
	case hasVerb(line, "AUTH") && len(strings.Fields(line)) > 1:
		// A bare AUTH lists the mechanisms (RFC 5034 section 4 leaves it
		// to CAPA; some servers still answer it): no exchange follows.
		t.inAuth = true
		t.add("C: " + maskAfter(line, 2))
	default:
		t.add("C: " + line)
	}
}

// serverPOP3: a "+ " challenge during AUTH is masked; +OK or -ERR ends
// the exchange.
func (t *Transcript) serverPOP3(line string) {
	if t.inAuth {
		if line == "+" || strings.HasPrefix(line, "+ ") {
			t.add("S: + ****")
			return
		}
		t.inAuth = false
	}
	t.add("S: " + line)
}

// hasVerb reports whether line's first word is verb, in any case.
func hasVerb(line, verb string) bool {
	w, _, _ := strings.Cut(line, " ")
	return strings.EqualFold(w, verb)
}

// maskAfter keeps the first n words of line and replaces the rest, if
// any, with "****".
func maskAfter(line string, n int) string {
	f := strings.Fields(line)
	if len(f) <= n {
		return line
	}
	return strings.Join(f[:n], " ") + " ****"
}

// conn is a net.Conn whose traffic a Transcript records.
type conn struct {
	net.Conn
	t *Transcript
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.t.read(p[:n])
	}
	return n, err
}

// Write records p before writing it: the answer to a command may be read
// (on another goroutine) before Write returns.
func (c *conn) Write(p []byte) (int, error) {
	c.t.wrote(p)
	return c.Conn.Write(p)
}
