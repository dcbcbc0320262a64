// Package smtpprobe checks an SMTP service (RFC 5321) the way a careful
// client talks to it, with STARTTLS (RFC 3207) or implicit TLS (RFC 8314)
// and optional AUTH PLAIN (RFC 4616) or LOGIN (RFC 4954).
//
// The dialogue, phase by phase (probe.Phase*):
//
//   - dns, connect: resolve the host and open TCP (and, for implicit TLS,
//     the handshake: phase tls).
//   - greeting: read the WHOLE greeting, every line of a multi-line 220,
//     before writing a byte (RFC 5321 section 4.3.1; servers such as
//     Postfix's postscreen reject clients that talk first, docs/field-cases.md, c03;
//     a greeting may pause between lines, c04). 220 continues; 554 is a
//     refusal (failed); 4xx is temporary (degraded). Target.ExpectGreeting
//     must match the greeting's text.
//   - capabilities: EHLO; on 500/502, HELO (RFC 5321 section 3.2). 250
//     continues; 4xx is temporary; any other 5xx fails with the reply in the
//     result (c03 server B answers EHLO with 554).
//   - tls (mode starttls): STARTTLS must be offered (in any line of the EHLO
//     reply: c04 lists it last) and answered 220; then the handshake must
//     complete (c06: a server that answers 220 and keeps talking plain text
//     fails with class tls and no certificate data). Bytes that arrive
//     after the 220 and before the handshake are an injection attack
//     (CVE-2011-0411) and fail the check. After the handshake the client
//     forgets the capabilities and sends EHLO again (RFC 3207 section 4.2).
//   - auth (when Target.Username is set): only over TLS; AUTH PLAIN with an
//     initial response, else AUTH LOGIN; 235 passes, 4xx is temporary,
//     other replies fail with class auth. With Target.Auth (OAuth), AUTH
//     XOAUTH2 or OAUTHBEARER (RFC 7628), which the server must offer; the
//     token is fetched before the dialogue, and one the token endpoint
//     refuses fails the check with class credentials (the monitor's)
//     before any connection.
//   - QUIT: sent whenever the session is still in step, its reply recorded
//     but not judged (the check has passed or failed by then).
//
// Every command is paired strictly with one reply: a reply line that is
// malformed, a continuation line with another code, a reply code the
// command cannot have, or data the server sends before the client has
// spoken (unsolicited lines) is a protocol error. The package speaks SMTP
// with net/textproto directly instead of an SMTP client library, which
// would hide the pairing and the per-phase timing the check needs.
package smtpprobe

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emersion/go-sasl"
)

// maxReplyLines bounds the lines of one reply (see also probe.MaxRead).
const maxReplyLines = 256

// Probe runs one SMTP check against t. Its only timeout is ctx's deadline;
// the Result is complete even when the check fails (see package probe for
// classes and statuses).
func Probe(ctx context.Context, t probe.Target) probe.Result {
	s := probe.Start(ctx, events.KindSMTP, t)
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
	c := newConn(s, nc)

	t0 := time.Now()
	greeting, err := c.read()
	res.Timings.GreetingMS = probe.MS(time.Since(t0))
	if err != nil {
		s.FailIO(probe.PhaseGreeting, err)
		return
	}
	if greeting.Code != 220 {
		c.negative(probe.PhaseGreeting, greeting, greetingClass(greeting.Code))
		c.quit()
		return
	}
	if !s.GreetingMatches(greeting.text()) {
		c.quit()
		return
	}

	t0 = time.Now()
	caps, ok := c.hello()
	res.Timings.CapsMS = probe.MS(time.Since(t0))
	if !ok {
		return
	}

	if t.TLS == probe.TLSStartTLS {
		if _, offered := caps["STARTTLS"]; !offered {
			s.Fail(probe.PhaseTLS, probe.ClassTLS, errors.New("tls: STARTTLS is required but the server does not offer it"))
			c.quit()
			return
		}
		t0 = time.Now()
		rep, err := c.exchange("STARTTLS")
		if err != nil {
			s.FailIO(probe.PhaseTLS, err)
			return
		}
		if rep.Code != 220 {
			c.negative(probe.PhaseTLS, rep, probe.ClassTLS)
			c.quit()
			return
		}
		if n := c.br.Buffered(); n > 0 {
			s.Fail(probe.PhaseTLS, probe.ClassProtocol, probe.Protocolf(
				"%d bytes of plain text arrived after the 220 to STARTTLS, before the handshake (command injection): %q",
				n, peek(c.br)))
			return
		}
		tc, err := s.Handshake(nc, t0)
		if tc != nil {
			c = newConn(s, tc)
		}
		if err != nil {
			if tc != nil {
				c.quit()
			}
			return
		}
		t0 = time.Now()
		caps, ok = c.hello()
		res.Timings.CapsMS += probe.MS(time.Since(t0))
		if !ok {
			return
		}
	}

	if t.Username != "" {
		t0 = time.Now()
		ok := c.auth(caps, sc)
		res.Timings.AuthMS = probe.MS(time.Since(t0))
		if !ok {
			return
		}
	}
	c.quit()
}

// greetingClass is the class of a greeting that is not 220: 554 is the
// server's refusal to serve (RFC 5321 section 3.1), 4xx temporary, any
// other code a protocol error (negative applies the 4xx rule itself).
func greetingClass(code int) string {
	if code == 554 {
		return probe.ClassRefused
	}
	return probe.ClassProtocol
}

// reply is one SMTP reply (RFC 5321 section 4.2).
type reply struct {
	Code  int
	Lines []string // the text of each line, without code and separator
	Raw   []string // the lines as received
}

func (r reply) text() string { return strings.Join(r.Lines, "\n") }

func (r reply) String() string { return strings.Join(r.Raw, "\n") }

// event returns the reply as an events.SMTPReply, with the RFC 3463
// enhanced status code split off when every line starts with the same one.
func (r reply) event() *events.SMTPReply {
	e := &events.SMTPReply{Code: r.Code, Text: r.text()}
	first, _, _ := strings.Cut(r.Lines[0], " ")
	if !enhanced(first, r.Code) {
		return e
	}
	lines := make([]string, len(r.Lines))
	for i, l := range r.Lines {
		code, rest, _ := strings.Cut(l, " ")
		if code != first {
			return e
		}
		lines[i] = rest
	}
	e.Enhanced, e.Text = first, strings.Join(lines, "\n")
	return e
}

// enhanced reports whether s is an RFC 3463 status code (class.subject.detail)
// whose class matches the reply code's first digit.
func enhanced(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || len(p) > 3 {
			return false
		}
	}
	return true
}

type conn struct {
	s  *probe.Session
	br *bufio.Reader
	r  *textproto.Reader
	w  *textproto.Writer
	// broken: the session is out of step (I/O or protocol error), so no QUIT.
	broken bool
}

func newConn(s *probe.Session, nc net.Conn) *conn {
	br := bufio.NewReader(probe.LimitReader(nc))
	return &conn{s: s, br: br, r: textproto.NewReader(br), w: textproto.NewWriter(bufio.NewWriter(nc))}
}

// read reads one complete reply, strictly: every line is a 3-digit code
// from 200 to 559 followed by "-" (more lines follow), " " or the end of
// the line (the last line), and every line has the same code.
func (c *conn) read() (reply, error) {
	var r reply
	for {
		line, err := c.r.ReadLine()
		if err != nil {
			c.broken = true
			if len(r.Raw) > 0 {
				c.s.Record(r.String())
			}
			return r, err
		}
		r.Raw = append(r.Raw, line)
		code, more, text, perr := parseLine(line)
		if perr == nil && len(r.Raw) > 1 && code != r.Code {
			perr = probe.Protocolf("reply line %q has code %d inside a %d reply", line, code, r.Code)
		}
		if perr == nil && len(r.Raw) > maxReplyLines {
			perr = probe.Protocolf("reply longer than %d lines", maxReplyLines)
		}
		if perr != nil {
			c.broken = true
			c.s.Record(r.String())
			return r, perr
		}
		r.Code = code
		r.Lines = append(r.Lines, text)
		if !more {
			c.s.Record(r.String())
			return r, nil
		}
	}
}

// parseLine splits one reply line (RFC 5321 section 4.2) into its code,
// whether more lines follow, and its text; a CR or NUL inside the line is
// a protocol error (probe.CheckLine).
func parseLine(line string) (code int, more bool, text string, err error) {
	if err := probe.CheckLine(line); err != nil {
		return 0, false, "", err
	}
	if len(line) < 3 || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
		return 0, false, "", probe.Protocolf("malformed reply line %q", line)
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, false, "", probe.Protocolf("malformed reply line %q", line)
		}
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if line[0] < '2' || line[0] > '5' || line[1] > '5' {
		return 0, false, "", probe.Protocolf("reply code %d is not one of 2yz..5yz with y 0..5 (RFC 5321 section 4.2)", code)
	}
	if len(line) > 3 {
		more = line[3] == '-'
		text = line[4:]
	}
	return code, more, text, nil
}

// exchange sends one command and reads its reply. Data the server sent
// before the command (unsolicited lines) is a protocol error.
func (c *conn) exchange(cmd string) (reply, error) {
	if n := c.br.Buffered(); n > 0 {
		c.broken = true
		return reply{}, probe.Protocolf("%d bytes of unsolicited data before %s: %q", n, verb(cmd), peek(c.br))
	}
	if err := c.w.PrintfLine("%s", cmd); err != nil {
		c.broken = true
		return reply{}, err
	}
	return c.read()
}

// negative records a reply that ends the check: 4xx is temporary, 5xx is
// class5xx, and any other code is a protocol error (the command cannot have
// it).
func (c *conn) negative(phase string, r reply, class5xx string) {
	class := class5xx
	switch r.Code / 100 {
	case 4:
		class = probe.ClassTemporary
	case 5:
	default:
		class = probe.ClassProtocol
	}
	c.s.Result().Reply = r.event()
	c.s.Fail(phase, class, fmt.Errorf("%s: the server replied %q", phase, strings.Join(r.Raw, " / ")))
}

// hello sends EHLO, falling back to HELO on 500 or 502 (RFC 5321 section
// 3.2), and returns the extension keywords (upper case) with their
// parameters; it records the capabilities in the result.
func (c *conn) hello() (map[string]string, bool) {
	t := c.s.Target()
	name := t.HelloName
	if name == "" {
		name = "localhost"
	}
	const phase = probe.PhaseCapabilities
	rep, err := c.exchange("EHLO " + name)
	if err != nil {
		c.s.FailIO(phase, err)
		return nil, false
	}
	if rep.Code == 500 || rep.Code == 502 {
		rep, err = c.exchange("HELO " + name)
		if err != nil {
			c.s.FailIO(phase, err)
			return nil, false
		}
		if rep.Code != 250 {
			c.negative(phase, rep, probe.ClassRefused)
			c.quit()
			return nil, false
		}
		c.s.Result().Capabilities = nil
		return map[string]string{}, true
	}
	if rep.Code != 250 {
		c.negative(phase, rep, probe.ClassRefused)
		c.quit()
		return nil, false
	}
	caps := map[string]string{}
	var list []string
	for _, l := range rep.Lines[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(l), " ")
		if kw == "" {
			continue
		}
		kw = strings.ToUpper(kw)
		// "AUTH=PLAIN LOGIN" is the pre-RFC 4954 spelling some servers still send.
		if rest, ok := strings.CutPrefix(kw, "AUTH="); ok {
			kw, params = "AUTH", strings.TrimSpace(rest+" "+params)
		}
		if prev, ok := caps[kw]; ok && prev != "" {
			params = prev + " " + params
		}
		caps[kw] = params
		list = append(list, strings.TrimSpace(l))
	}
	c.s.Result().Capabilities = list
	return caps, true
}

// auth logs in with the OAuth SASL client sc when there is one (see
// oauth), else with AUTH PLAIN (RFC 4616, initial response as in RFC 4954
// section 4) or AUTH LOGIN; never without TLS.
func (c *conn) auth(caps map[string]string, sc sasl.Client) bool {
	const phase = probe.PhaseAuth
	t := c.s.Target()
	if c.s.Result().TLS == nil {
		c.s.Fail(phase, probe.ClassAuth, errors.New("auth: refusing to send credentials without TLS"))
		c.quit()
		return false
	}
	mechs := map[string]bool{}
	for _, m := range strings.Fields(caps["AUTH"]) {
		mechs[strings.ToUpper(m)] = true
	}
	if sc != nil {
		return c.oauth(mechs, sc)
	}
	b64 := base64.StdEncoding.EncodeToString
	var rep reply
	var err error
	switch {
	case mechs["PLAIN"]:
		rep, err = c.exchange("AUTH PLAIN " + b64([]byte("\x00"+t.Username+"\x00"+t.Password)))
	case mechs["LOGIN"]:
		steps := []string{"AUTH LOGIN", b64([]byte(t.Username)), b64([]byte(t.Password))}
		for i, step := range steps {
			rep, err = c.exchange(step)
			if err != nil || rep.Code != 334 || i == len(steps)-1 {
				break
			}
		}
	default:
		c.s.Fail(phase, probe.ClassAuth, fmt.Errorf("auth: the server offers neither AUTH PLAIN nor LOGIN (AUTH %q)", caps["AUTH"]))
		c.quit()
		return false
	}
	if err != nil {
		c.s.FailIO(phase, err)
		return false
	}
	switch {
	case rep.Code == 235:
		return true
	case rep.Code == 334:
		// A challenge we did not expect: cancel the exchange (RFC 4954 section 4).
		c.s.Result().Reply = rep.event()
		c.s.Fail(phase, probe.ClassProtocol, probe.Protocolf("auth: unexpected challenge %q", rep.String()))
		if _, err := c.exchange("*"); err == nil {
			c.quit()
		}
		return false
	}
	c.negative(phase, rep, probe.ClassAuth)
	c.quit()
	return false
}

// oauth logs in with AUTH and the OAuth SASL client sc (XOAUTH2, or
// OAUTHBEARER, RFC 7628), which the server must offer: the initial
// response on the AUTH line (RFC 4954 section 4), then one answer per 334
// challenge (an error challenge gets the client's empty or dummy
// response, after which the server refuses). 235 passes, 4xx is
// temporary, a 5xx (535 5.7.8) fails with class auth and the server's
// error challenge.
func (c *conn) oauth(mechs map[string]bool, sc sasl.Client) bool {
	const phase = probe.PhaseAuth
	b64 := base64.StdEncoding.EncodeToString
	mech, ir, err := sc.Start()
	if err != nil {
		c.s.Fail(phase, probe.ClassCredentials, fmt.Errorf("auth: %w", err))
		c.quit()
		return false
	}
	if !mechs[mech] {
		c.s.Fail(phase, probe.ClassAuth, fmt.Errorf("auth: the server does not offer AUTH %s", mech))
		c.quit()
		return false
	}
	cmd := "AUTH " + mech
	switch {
	case ir == nil:
	case len(ir) == 0:
		cmd += " ="
	default:
		cmd += " " + b64(ir)
	}
	rep, err := c.exchange(cmd)
	for i := 0; err == nil && rep.Code == 334 && i < 3; i++ {
		challenge, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.Join(rep.Lines, "")))
		if derr != nil {
			c.s.Result().Reply = rep.event()
			c.s.Fail(phase, probe.ClassProtocol, probe.Protocolf("auth: challenge %q is not base64", rep.String()))
			if _, err := c.exchange("*"); err == nil {
				c.quit()
			}
			return false
		}
		resp, serr := sc.Next(challenge)
		if serr != nil {
			c.s.Fail(phase, probe.ClassAuth, fmt.Errorf("auth: %w", serr))
			if _, err := c.exchange("*"); err == nil {
				c.quit()
			}
			return false
		}
		rep, err = c.exchange(b64(resp))
	}
	if err != nil {
		c.s.FailIO(phase, err)
		return false
	}
	switch rep.Code {
	case 235:
		return true
	case 334:
		c.s.Result().Reply = rep.event()
		c.s.Fail(phase, probe.ClassProtocol, probe.Protocolf("auth: challenge after challenge %q", rep.String()))
		if _, err := c.exchange("*"); err == nil {
			c.quit()
		}
		return false
	}
	c.negative(phase, rep, probe.ClassAuth)
	if res := c.s.Result(); res.Phase == phase {
		res.Err = probe.SASLFailure(sc, res.Err)
	}
	c.quit()
	return false
}

// quit ends a session that is still in step with QUIT; its reply is
// recorded, not judged.
func (c *conn) quit() {
	if c.broken {
		return
	}
	_, _ = c.exchange("QUIT")
	c.broken = true
}

func verb(cmd string) string {
	v, _, _ := strings.Cut(cmd, " ")
	return v
}

// peek returns up to 80 buffered bytes for an error message.
func peek(br *bufio.Reader) string {
	b, _ := br.Peek(min(br.Buffered(), 80))
	return string(b)
}
