// Package imapprobe checks an IMAP service (RFC 9051, RFC 3501) with
// STARTTLS (RFC 2595, RFC 9051 section 6.2.1) or implicit TLS (RFC 8314),
// and optionally logs in and opens INBOX read-only.
//
// The dialogue, phase by phase (probe.Phase*):
//
//   - dns, connect (and tls for implicit TLS).
//   - greeting: one untagged line: "* OK" continues, "* PREAUTH" continues
//     already authenticated, "* BYE" is a refusal; anything else is a
//     protocol error. Target.ExpectGreeting must match the text after the
//     status word, a [CAPABILITY ...] code included.
//   - capabilities: from the greeting's [CAPABILITY ...] code when present,
//     else a CAPABILITY command, which must complete with OK and a
//   - CAPABILITY response.
//   - tls (mode starttls): STARTTLS must be advertised and answered with the
//     tagged OK; bytes after that OK and before the handshake are an
//     injection and fail the check; the handshake must complete (a server
//     that says OK and stays in plain text fails with class tls and no
//     certificate data). A PREAUTH greeting on a plain connection fails:
//     STARTTLS is impossible once authenticated. After the handshake the
//     capabilities are read again with CAPABILITY (RFC 9051 section 6.2.1).
//   - auth (Target.Auth set, OAuth): AUTHENTICATE with the mechanism of
//     the SASL client (XOAUTH2 or OAUTHBEARER, RFC 7628), which must be
//     advertised (AUTH=XOAUTH2); the token is fetched before the
//     dialogue, and a token the endpoint refuses fails the check with
//     class credentials (the monitor's) before any connection. A NO is
//     class auth, with the server's error challenge.
//   - auth (Target.Username set, a password): LOGINDISABLED must be gone
//     (docs/field-cases.md, c07: it is advertised until STARTTLS); the probe never sends LOGIN
//     while it is advertised. LOGIN OK passes; NO [UNAVAILABLE] or [INUSE]
//     (RFC 5530) is temporary; other NOs fail with class auth.
//   - mailbox (after the login or PREAUTH): EXAMINE Target.Mailbox, INBOX
//     by default (SELECT read-only, so
//     the probe changes no \Recent or \Seen state); the message count is
//     reported.
//   - LOGOUT, whenever the session is still in step.
//
// # Why two halves
//
// The greeting, CAPABILITY, STARTTLS and CAPABILITY again are spoken here
// on net/textproto; from LOGIN on, the session is handed to go-imap/v2's
// imapclient. imapclient does that part well (quoting and literals in LOGIN,
// parsing SELECT data, unknown tags and malformed responses as errors) but
// cannot serve the first half: it does not expose the greeting's text (for
// expect_greeting), it offers STARTTLS only inside NewStartTLS, which
// joins greeting, STARTTLS and handshake in one call (no per-phase timing),
// handshakes without a context and verifies the certificate itself (an
// invalid certificate would come back as a bare error, without the expiry
// and host details the check reports), does not check for bytes injected
// before the handshake, sets its own 30 s read deadlines, and sends
// CAPABILITY commands of its own in the background whenever it has none.
// The hand-off replays a greeting that carries the capabilities the probe
// read last (so imapclient starts in the right state without asking again)
// and turns imapclient's deadlines into no-ops: the only timeout is the
// context's. After LOGIN, imapclient still re-reads the capabilities in the
// background (pipelined with EXAMINE) unless the server put them in the
// LOGIN reply; RFC 9051 allows both.
package imapprobe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// Mailbox is the mailbox the probe examines after logging in.
const Mailbox = "INBOX"

// Probe runs one IMAP check against t. Its only timeout is ctx's deadline;
// the Result is complete even when the check fails (see package probe for
// classes and statuses).
func Probe(ctx context.Context, t probe.Target) probe.Result {
	s := probe.Start(ctx, events.KindIMAP, t)
	run(s)
	return s.Finish()
}

func run(s *probe.Session) {
	t := s.Target()
	res := s.Result()
	sc, ok := s.OAuth()
	if !ok {
		return
	}
	nc, err := s.Dial()
	if err != nil {
		return
	}
	p := newPlain(s, nc)

	t0 := time.Now()
	g, err := p.greeting()
	res.Timings.GreetingMS = probe.MS(time.Since(t0))
	if err != nil {
		s.FailIO(probe.PhaseGreeting, err)
		return
	}
	switch g.status {
	case "BYE":
		s.Fail(probe.PhaseGreeting, probe.ClassRefused, fmt.Errorf("greeting: the server refused the session: %q", g.line))
		return
	case "PREAUTH":
		if t.TLS == probe.TLSStartTLS {
			s.Fail(probe.PhaseTLS, probe.ClassTLS, errors.New("tls: PREAUTH greeting on a plain-text connection: STARTTLS is impossible once authenticated (RFC 9051 section 6.2.1)"))
			p.logout()
			return
		}
	}
	if !s.GreetingMatches(g.text) {
		p.logout()
		return
	}

	caps := g.caps
	if caps == nil {
		t0 = time.Now()
		caps, err = p.capability()
		res.Timings.CapsMS = probe.MS(time.Since(t0))
		if err != nil {
			p.fail(probe.PhaseCapabilities, err)
			return
		}
	}
	res.Capabilities = caps
	if t.TLS == probe.TLSStartTLS {
		if !slices.Contains(caps, "STARTTLS") {
			s.Fail(probe.PhaseTLS, probe.ClassTLS, errors.New("tls: STARTTLS is required but the server does not advertise it"))
			p.logout()
			return
		}
		t0 = time.Now()
		if err := p.startTLS(); err != nil {
			p.fail(probe.PhaseTLS, err)
			return
		}
		tc, err := s.Handshake(nc, t0)
		if tc != nil {
			p = newPlain(s, tc)
		}
		if err != nil {
			if tc != nil {
				p.logout()
			}
			return
		}
		// The capabilities before TLS are forgotten and asked again
		// (RFC 9051 section 6.2.1).
		t0 = time.Now()
		caps, err = p.capability()
		res.Timings.CapsMS += probe.MS(time.Since(t0))
		if err != nil {
			p.fail(probe.PhaseCapabilities, err)
			return
		}
		res.Capabilities = caps
	}
	session(s, p, g.status, caps, sc)
}

// session runs the second half of the dialogue on imapclient, which starts
// from a replayed greeting that carries the capabilities already known (so
// that it does not ask for them again).
func session(s *probe.Session, p *plain, status string, caps []string, sc sasl.Client) {
	t := s.Target()
	res := s.Result()
	replay := fmt.Sprintf("* %s [CAPABILITY %s] replayed by the probe\r\n", status, strings.Join(caps, " "))
	h := &handoff{Conn: p.nc, r: io.MultiReader(strings.NewReader(replay), &recorder{r: p.br, s: s})}
	c := imapclient.New(h, nil)
	defer func() { _ = c.Close() }()
	if err := c.WaitGreeting(); err != nil {
		s.FailIO(probe.PhaseGreeting, err)
		return
	}

	authed := c.State() == imap.ConnStateAuthenticated
	if sc != nil && !authed {
		if !authenticate(s, c, caps, sc) {
			logout(c)
			return
		}
		authed = true
	} else if t.Username != "" && !authed {
		if slices.Contains(caps, string(imap.CapLoginDisabled)) {
			when := "over TLS"
			if res.TLS == nil {
				when = "without TLS"
			}
			s.Fail(probe.PhaseAuth, probe.ClassAuth, fmt.Errorf("auth: the server advertises LOGINDISABLED %s; LOGIN was not sent", when))
			logout(c)
			return
		}
		t0 := time.Now()
		err := c.Login(t.Username, t.Password).Wait()
		res.Timings.AuthMS = probe.MS(time.Since(t0))
		if err != nil {
			fail(s, probe.PhaseAuth, err, probe.ClassAuth)
			logout(c)
			return
		}
		authed = true
	}
	if authed {
		mailbox := t.Mailbox
		if mailbox == "" {
			mailbox = Mailbox
		}
		t0 := time.Now()
		data, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		res.Timings.MailboxMS = probe.MS(time.Since(t0))
		if err != nil {
			fail(s, probe.PhaseMailbox, err, probe.ClassRefused)
			logout(c)
			return
		}
		res.Mailbox = &probe.Mailbox{Name: mailbox, Messages: int(data.NumMessages)}
	}
	logout(c)
}

// authenticate logs in with AUTHENTICATE and the OAuth SASL client sc
// (XOAUTH2 or OAUTHBEARER, RFC 7628), which the server must advertise
// (AUTH=<mechanism>). A NO is class auth (the server refused a token the
// endpoint issued: the customer's side), with the server's error
// challenge when it sent one; [UNAVAILABLE] is temporary.
func authenticate(s *probe.Session, c *imapclient.Client, caps []string, sc sasl.Client) bool {
	res := s.Result()
	mech, _, err := sc.Start()
	if err != nil {
		s.Fail(probe.PhaseAuth, probe.ClassCredentials, fmt.Errorf("auth: %w", err))
		return false
	}
	if !slices.Contains(caps, "AUTH="+mech) {
		s.Fail(probe.PhaseAuth, probe.ClassAuth, fmt.Errorf("auth: the server does not offer AUTHENTICATE %s (no AUTH=%s capability)", mech, mech))
		return false
	}
	t0 := time.Now()
	err = c.Authenticate(dummyResponse{sc})
	res.Timings.AuthMS = probe.MS(time.Since(t0))
	if err != nil {
		fail(s, probe.PhaseAuth, err, probe.ClassAuth)
		if res.Phase == probe.PhaseAuth {
			res.Err = probe.SASLFailure(sc, res.Err)
		}
		return false
	}
	return true
}

// dummyResponse sends an empty SASL response (XOAUTH2's answer to an
// error challenge) as the one byte 0x01, the dummy response of RFC 7628
// section 3.2.3: imapclient writes an empty response as "=", which
// Dovecot 2.3 refuses in a continued response with BAD, hiding its real
// refusal (the same as pkg/imapwatch).
type dummyResponse struct{ sasl.Client }

func (d dummyResponse) Next(challenge []byte) ([]byte, error) {
	resp, err := d.Client.Next(challenge)
	if err == nil && len(resp) == 0 {
		resp = []byte{0x01}
	}
	return resp, err
}

// fail classifies an imapclient error: a tagged NO with [UNAVAILABLE] or
// [INUSE] (RFC 5530) is temporary, a BAD a protocol error, another NO
// noClass; anything else an I/O or parse error (probe.Session.FailIO).
func fail(s *probe.Session, phase string, err error, noClass string) {
	var ie *imap.Error
	if !errors.As(err, &ie) {
		s.FailIO(phase, err)
		return
	}
	class := noClass
	switch {
	case ie.Code == imap.ResponseCodeUnavailable || ie.Code == imap.ResponseCodeInUse:
		class = probe.ClassTemporary
	case ie.Type == imap.StatusResponseTypeBad:
		class = probe.ClassProtocol
	}
	s.Fail(phase, class, fmt.Errorf("%s: the server replied %s", phase, ie))
}

func logout(c *imapclient.Client) {
	_ = c.Logout().Wait()
}

// handoff is the connection imapclient gets: reads come from r (the
// replayed greeting, then the wire through the recorder), writes go to the
// wire, and deadlines are ignored because the context bounds the probe.
type handoff struct {
	net.Conn
	r io.Reader
}

func (h *handoff) Read(p []byte) (int, error)       { return h.r.Read(p) }
func (h *handoff) SetDeadline(time.Time) error      { return nil }
func (h *handoff) SetReadDeadline(time.Time) error  { return nil }
func (h *handoff) SetWriteDeadline(time.Time) error { return nil }

// recorder passes reads through and records each complete line the server
// sent in the session's replies.
type recorder struct {
	r    io.Reader
	s    *probe.Session
	mu   sync.Mutex
	line []byte
}

func (rc *recorder) Read(p []byte) (int, error) {
	n, err := rc.r.Read(p)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rest := p[:n]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if len(rc.line) < probe.MaxReplyLen {
				rc.line = append(rc.line, rest...)
			}
			break
		}
		rc.line = append(rc.line, rest[:i]...)
		rc.s.Record(strings.TrimSuffix(string(rc.line), "\r"))
		rc.line = rc.line[:0]
		rest = rest[i+1:]
	}
	return n, err
}

// plain speaks the first half of the dialogue line by line.
type plain struct {
	s   *probe.Session
	nc  net.Conn
	br  *bufio.Reader
	r   *textproto.Reader
	tag int
	// broken: the session is out of step, so no LOGOUT.
	broken bool
}

func newPlain(s *probe.Session, nc net.Conn) *plain {
	br := bufio.NewReader(probe.LimitReader(nc))
	return &plain{s: s, nc: nc, br: br, r: textproto.NewReader(br)}
}

// literal matches a line that announces a literal (RFC 9051 section 4.3,
// with the LITERAL+ form of RFC 7888).
var literal = regexp.MustCompile(`\{[0-9]+\+?\}$`)

type greeting struct {
	line   string
	status string   // OK, PREAUTH or BYE
	text   string   // after the status word
	caps   []string // from a [CAPABILITY ...] code, upper case; nil without
}

// readLine reads one server line and records it. A literal ({n} at the end)
// is not expected in this half of the dialogue, nor a CR or NUL inside the
// line (probe.CheckLine).
func (p *plain) readLine() (string, error) {
	line, err := p.r.ReadLine()
	if err != nil {
		p.broken = true
		return "", err
	}
	p.s.Record(line)
	if err := probe.CheckLine(line); err != nil {
		p.broken = true
		return line, err
	}
	if literal.MatchString(line) {
		p.broken = true
		return line, probe.Protocolf("unexpected literal in %q", line)
	}
	return line, nil
}

func (p *plain) greeting() (greeting, error) {
	line, err := p.readLine()
	if err != nil {
		return greeting{}, err
	}
	rest, ok := strings.CutPrefix(line, "* ")
	if !ok {
		p.broken = true
		return greeting{}, probe.Protocolf("greeting %q is not an untagged response", line)
	}
	status, text, _ := strings.Cut(rest, " ")
	g := greeting{line: line, status: strings.ToUpper(status), text: text}
	switch g.status {
	case "OK", "PREAUTH", "BYE":
	default:
		p.broken = true
		return g, probe.Protocolf("greeting %q is not OK, PREAUTH or BYE", line)
	}
	g.caps = capsCode(text)
	return g, nil
}

// capsCode returns the atoms of a leading [CAPABILITY ...] response code.
func capsCode(text string) []string {
	code, ok := strings.CutPrefix(text, "[")
	if !ok {
		return nil
	}
	code, _, ok = strings.Cut(code, "]")
	if !ok {
		return nil
	}
	atoms := strings.Fields(strings.ToUpper(code))
	if len(atoms) == 0 || atoms[0] != "CAPABILITY" {
		return nil
	}
	return atoms[1:]
}

// command sends one tagged command and returns its tag. Data the server
// sent before it (other than untagged responses, read as they come) is
// read with the response.
func (p *plain) command(cmd string) (string, error) {
	p.tag++
	tag := fmt.Sprintf("a%d", p.tag)
	if _, err := fmt.Fprintf(p.nc, "%s %s\r\n", tag, cmd); err != nil {
		p.broken = true
		return tag, err
	}
	return tag, nil
}

// completion reads up to the tagged completion of tag, passing untagged
// lines to untagged. It returns the status word (OK, NO, BAD) and the line.
func (p *plain) completion(tag string, untagged func(line string) error) (string, string, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			return "", line, err
		}
		if rest, ok := strings.CutPrefix(line, "* "); ok {
			if strings.HasPrefix(strings.ToUpper(rest), "BYE") {
				p.broken = true
				return "", line, probe.Protocolf("the server ended the session: %q", line)
			}
			if untagged != nil {
				if err := untagged(rest); err != nil {
					p.broken = true
					return "", line, err
				}
			}
			continue
		}
		t, rest, _ := strings.Cut(line, " ")
		if t != tag {
			p.broken = true
			return "", line, probe.Protocolf("response %q does not answer command %s", line, tag)
		}
		status, _, _ := strings.Cut(rest, " ")
		status = strings.ToUpper(status)
		switch status {
		case "OK", "NO", "BAD":
			return status, line, nil
		}
		p.broken = true
		return "", line, probe.Protocolf("tagged response %q is not OK, NO or BAD", line)
	}
}

// capability sends CAPABILITY and returns the atoms, upper case.
func (p *plain) capability() ([]string, error) {
	tag, err := p.command("CAPABILITY")
	if err != nil {
		return nil, err
	}
	var caps []string
	status, line, err := p.completion(tag, func(rest string) error {
		if a := strings.Fields(strings.ToUpper(rest)); len(a) > 0 && a[0] == "CAPABILITY" {
			caps = append(caps, a[1:]...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if status != "OK" {
		p.broken = true
		return nil, probe.Protocolf("CAPABILITY failed: %q", line)
	}
	if caps == nil {
		p.broken = true
		return nil, probe.Protocolf("CAPABILITY completed without a * CAPABILITY response")
	}
	return caps, nil
}

// refusal is a tagged NO or BAD to STARTTLS.
type refusal struct{ line string }

func (r *refusal) Error() string { return fmt.Sprintf("the server refused STARTTLS: %q", r.line) }

// startTLS sends STARTTLS and expects the tagged OK with nothing after it.
func (p *plain) startTLS() error {
	tag, err := p.command("STARTTLS")
	if err != nil {
		return err
	}
	status, line, err := p.completion(tag, nil)
	if err != nil {
		return err
	}
	if status != "OK" {
		return &refusal{line: line}
	}
	if n := p.br.Buffered(); n > 0 {
		p.broken = true
		b, _ := p.br.Peek(min(n, 80))
		return probe.Protocolf("%d bytes of plain text arrived after the OK to STARTTLS, before the handshake (command injection): %q", n, b)
	}
	return nil
}

// fail records an error of the first half: a STARTTLS refusal is class
// tls, anything else an I/O or protocol error; a session still in step is
// ended with LOGOUT.
func (p *plain) fail(phase string, err error) {
	var r *refusal
	if errors.As(err, &r) {
		p.s.Fail(phase, probe.ClassTLS, fmt.Errorf("%s: %w", phase, err))
		p.logout()
		return
	}
	p.s.FailIO(phase, err)
	p.logout()
}

// logout ends a session that is still in step; the answer is recorded, not
// judged.
func (p *plain) logout() {
	if p.broken {
		return
	}
	p.broken = true
	tag, err := p.command("LOGOUT")
	if err != nil {
		return
	}
	_, _, _ = p.completion(tag, nil)
}
