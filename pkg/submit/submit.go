// Package submit hands one message to an SMTP server (a relay, a submission
// service or an MX) with go-smtp, and reports per-phase timings, the
// server's last reply and a classified error.
//
// It serves both sides of a round trip: the monitor's sender submits probes
// with it, and the reflector's SMTP output submits reflections.
//
// The timeout comes only from the context: each SMTP command and the whole
// dialogue end when ctx does. TLS modes follow RFC 3207 (STARTTLS) and
// RFC 8314 (implicit TLS); AUTH PLAIN follows RFC 4616, AUTH XOAUTH2 and
// OAUTHBEARER (RFC 7628, with OAuth tokens from pkg/mailauth) go through
// Config.Auth; credentials are only sent over TLS (or to a loopback
// server, for tests and local relays).
package submit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/transcript"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TLS modes.
const (
	TLSNone          = "none"          // plain text; never STARTTLS
	TLSOpportunistic = "opportunistic" // STARTTLS when offered
	TLSStartTLS      = "starttls"      // STARTTLS required
	TLSImplicit      = "implicit"      // TLS from the first byte (port 465)
)

// Phases, as reported in Error.Phase.
const (
	PhaseConnect  = "connect"
	PhaseGreeting = "greeting" // the banner and EHLO
	PhaseTLS      = "tls"
	PhaseAuth     = "auth"
	PhaseMail     = "mail"
	PhaseRcpt     = "rcpt"
	PhaseData     = "data"
)

// Authenticator gives the SASL client of one login (pkg/mailauth.Login
// is one: XOAUTH2 or OAUTHBEARER with a valid OAuth token), called once
// per session. The expiry it returns (zero: none) bounds the session's
// reuse in a Pool to half the token's remaining life. Its errors keep
// their pkg/fault mark: a token endpoint's 5xx is temporary, a revoked
// secret permanent.
type Authenticator interface {
	SASL(ctx context.Context) (c sasl.Client, expiry time.Time, err error)
}

// Config says where and how to submit.
type Config struct {
	Addr      string      // host:port
	TLS       string      // one of the TLS modes; empty means opportunistic
	TLSConfig *tls.Config // nil: ServerName from Addr, system roots
	Username  string      // AUTH PLAIN when not empty (and Auth is nil)
	Password  string
	// Auth, when not nil, logs in with AUTH and the SASL client it gives
	// (RFC 4954) instead of AUTH PLAIN with Username and Password.
	Auth Authenticator
	// HelloName is sent in EHLO; empty means "localhost".
	HelloName string
}

// Validate reports a configuration that can never work.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("address %q: %w", c.Addr, err))
	}
	switch c.TLS {
	case "", TLSNone, TLSOpportunistic, TLSStartTLS, TLSImplicit:
	default:
		errs = append(errs, fmt.Errorf("tls mode %q is not none, opportunistic, starttls or implicit", c.TLS))
	}
	if c.Auth == nil && c.Username != "" && c.Password == "" {
		errs = append(errs, errors.New("a username is set but no password"))
	}
	if c.Auth != nil && c.Password != "" {
		errs = append(errs, errors.New("give a password or an OAuth login, not both"))
	}
	return errors.Join(errs...)
}

// Result describes one submission, successful or not.
type Result struct {
	Timings events.Timings
	// Reply is the last server reply: the 250 to the DATA, or the refusal.
	Reply *events.SMTPReply
	// Transcript is the dialogue, credentials masked and the message left
	// out (see transcript); Server is the name in the server's 220
	// greeting; QueueID is the queue id of the 250 to DATA (QueueID).
	Transcript []string
	Server     string
	QueueID    string
	// Reused: the message went on a session that a Pool kept open from an
	// earlier message (no connect, greeting, TLS or auth phase).
	Reused bool
}

// Error is a failed submission.
type Error struct {
	Phase string            // where it failed (Phase* constants)
	Reply *events.SMTPReply // the server's refusal; nil for network and TLS errors
	Err   error
	// Challenge is, for a refused OAuth login, what the server's error
	// challenge said (RFC 7628 section 3.2.2: status, schemes, scope);
	// nil when it sent none.
	Challenge error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("smtp %s: %v", e.Phase, e.Err)
	if e.Reply != nil {
		s = fmt.Sprintf("smtp %s: %s", e.Phase, e.Reply)
	}
	if e.Challenge != nil {
		s += " (" + e.Challenge.Error() + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether trying again later may succeed: a 4xx reply, a
// network error or a timeout. 5xx replies (535: credentials refused) and
// TLS failures are permanent. In the auth phase without a reply, the
// error's own pkg/fault mark decides (a token endpoint's 5xx or a network
// error is temporary, a revoked client secret permanent; unmarked is
// permanent).
func (e *Error) Temporary() bool {
	if e.Reply != nil {
		return e.Reply.Code/100 == 4
	}
	if e.Phase == PhaseAuth {
		return fault.MarkedTemporary(e.Err)
	}
	return e.Phase != PhaseTLS
}

// Refused reports whether the server answered and said no (a reply was
// received), as opposed to a connection that failed.
func (e *Error) Refused() bool { return e.Reply != nil }

// Send submits msg from the envelope sender from to the recipients on a
// session of its own (connect, greeting, TLS, login, one transaction,
// QUIT). The returned Result has timings even on failure; the error is an
// *Error.
func Send(ctx context.Context, cfg Config, from string, to []string, msg []byte) (Result, error) {
	start := time.Now()
	var res Result
	s, err := open(ctx, cfg, &res, start)
	if err == nil {
		err = s.transaction(ctx, from, to, msg, &res)
		if err == nil {
			s.quit()
		}
		s.close()
	}
	res.Timings.TotalMS = ms(time.Since(start))
	return res, err
}

// session is an open SMTP session, greeted and logged in, ready for a
// MAIL transaction (RFC 5321 section 3.3).
type session struct {
	raw      net.Conn
	c        *smtp.Client
	tr       *transcript.Transcript
	server   string // the name in the 220 greeting
	tls      string // the TLS version, "" for none
	peer     string
	messages int         // transactions completed on it
	idleAt   time.Time   // when it was last put back in a Pool
	idle     *time.Timer // ends it once idle for the Pool's IdleTimeout
	// reuseUntil, for a login with an expiring token (Config.Auth), is
	// halfway from the login to the token's expiry: a Pool does not reuse
	// the session later, so that a server that ends sessions whose token
	// expired (Exchange Online) never sees it and the next login takes a
	// renewed token. Zero: no bound.
	reuseUntil time.Time
}

// reusable reports whether a Pool may send another message on s at now:
// it has been idle less than idleTimeout, and its login's token, if it
// expires, is not past half its life (reuseUntil).
func (s *session) reusable(now time.Time, idleTimeout time.Duration) bool {
	return now.Sub(s.idleAt) < idleTimeout && (s.reuseUntil.IsZero() || now.Before(s.reuseUntil))
}

// fail builds the *Error of phase from err, with the server's reply when
// there was one, and records the reply in res.
func fail(ctx context.Context, res *Result, phase string, err error) error {
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	e := &Error{Phase: phase, Err: err}
	var se *smtp.SMTPError
	var te *textproto.Error
	switch {
	case errors.As(err, &se):
		e.Reply = reply(se)
	case errors.As(err, &te):
		e.Reply = &events.SMTPReply{Code: te.Code, Text: te.Msg}
	}
	res.Reply = e.Reply
	return e
}

// open connects to cfg.Addr and speaks the session up to the first MAIL:
// the greeting, EHLO, STARTTLS or implicit TLS, AUTH. Timings, the peer,
// the server's name and the transcript so far go into res. On failure the
// connection is closed and the error is an *Error.
func open(ctx context.Context, cfg Config, res *Result, start time.Time) (_ *session, err error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, &Error{Phase: PhaseConnect, Err: err}
	}
	tlsConfig := cfg.TLSConfig
	if tlsConfig == nil {
		tlsConfig = &tls.Config{ServerName: host}
	} else if tlsConfig.ServerName == "" {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName = host
	}

	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", cfg.Addr)
	res.Timings.ConnectMS = ms(time.Since(start))
	if err != nil {
		return nil, &Error{Phase: PhaseConnect, Err: err}
	}
	res.Timings.PeerAddress = raw.RemoteAddr().String()
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	// The dialogue is recorded in plain text: on the TCP connection, then
	// on the TLS connection that wraps it.
	tr := transcript.New(events.KindSMTP)
	s := &session{raw: raw, tr: tr, peer: res.Timings.PeerAddress}
	defer func() {
		res.Transcript, res.Server = tr.Lines(), greetingName(tr.Lines())
		s.server = res.Server
		if err != nil {
			s.close()
		}
	}()
	conn := tr.Conn(raw)
	if cfg.TLS == TLSImplicit {
		t0 := time.Now()
		tc := tls.Client(raw, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, &Error{Phase: PhaseTLS, Err: err}
		}
		res.Timings.TLSMS = ms(time.Since(t0))
		res.Timings.TLSVersion = events.TLSVersionName(tc.ConnectionState().Version)
		conn = tr.Conn(tc)
	}
	helo := cfg.HelloName
	if helo == "" {
		helo = "localhost"
	}

	// When STARTTLS may be used, the banner, EHLO and STARTTLS are spoken
	// here, so that each phase is timed and a STARTTLS that never upgrades
	// fails in the TLS phase (docs/field-cases.md, c06); go-smtp then takes over the
	// session with a second EHLO, as RFC 3207 requires after the handshake.
	// Without TLS (and with implicit TLS) go-smtp reads the banner itself.
	preDialogue := cfg.TLS != TLSImplicit && cfg.TLS != TLSNone
	if preDialogue {
		t0 := time.Now()
		tp := textproto.NewConn(conn)
		if _, _, err := tp.ReadResponse(220); err != nil {
			return nil, fail(ctx, res, PhaseGreeting, err)
		}
		caps, err := ehlo(tp, helo)
		if err != nil {
			return nil, fail(ctx, res, PhaseGreeting, err)
		}
		res.Timings.GreetingMS = ms(time.Since(t0))
		offered := caps["STARTTLS"]
		if !offered && cfg.TLS == TLSStartTLS {
			return nil, fail(ctx, res, PhaseTLS, errors.New("STARTTLS is required but the server does not offer it"))
		}
		if offered {
			t0 = time.Now()
			if _, err := tp.Cmd("STARTTLS"); err != nil {
				return nil, fail(ctx, res, PhaseTLS, err)
			}
			if _, _, err := tp.ReadResponse(220); err != nil {
				return nil, fail(ctx, res, PhaseTLS, err)
			}
			tc := tls.Client(raw, tlsConfig)
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fail(ctx, res, PhaseTLS, err)
			}
			res.Timings.TLSMS = ms(time.Since(t0))
			res.Timings.TLSVersion = events.TLSVersionName(tc.ConnectionState().Version)
			conn = tr.Conn(tc)
		}
	}
	if preDialogue {
		s.c = smtp.NewClient(&greetedConn{Conn: conn})
	} else {
		s.c = smtp.NewClient(conn)
	}
	s.tls = res.Timings.TLSVersion
	s.deadline(ctx)
	t0 := time.Now()
	if err := s.c.Hello(helo); err != nil {
		return nil, fail(ctx, res, PhaseGreeting, err)
	}
	if !preDialogue {
		res.Timings.GreetingMS = ms(time.Since(t0))
	}

	if cfg.Username != "" || cfg.Auth != nil {
		// go-smtp cannot see the TLS under the connection wrappers
		// (greetedConn, the transcript's): the handshake above is the truth.
		if res.Timings.TLSVersion == "" && !isLoopback(conn.RemoteAddr()) {
			return nil, fail(ctx, res, PhaseAuth, errors.New("refusing to send credentials without TLS"))
		}
		t0 := time.Now()
		sc := sasl.NewPlainClient("", cfg.Username, cfg.Password)
		if cfg.Auth != nil {
			var expiry time.Time
			if sc, expiry, err = cfg.Auth.SASL(ctx); err != nil {
				return nil, fail(ctx, res, PhaseAuth, err)
			}
			if !expiry.IsZero() {
				now := time.Now()
				s.reuseUntil = now.Add(expiry.Sub(now) / 2)
			}
		}
		if err := s.c.Auth(sc); err != nil {
			err := fail(ctx, res, PhaseAuth, err)
			var se *Error
			if f, ok := sc.(interface{ Failure() error }); ok && errors.As(err, &se) {
				se.Challenge = f.Failure()
			}
			return nil, err
		}
		res.Timings.AuthMS = ms(time.Since(t0))
	}
	return s, nil
}

// deadline bounds each command of s by ctx's deadline.
func (s *session) deadline(ctx context.Context) {
	if dl, ok := ctx.Deadline(); ok {
		s.c.CommandTimeout = time.Until(dl)
		s.c.SubmissionTimeout = time.Until(dl)
	}
}

// transaction sends one message on s: MAIL, RCPT for each recipient,
// DATA. The reply, the queue id, the transfer time and the transcript go
// into res. The connection is closed when ctx ends meanwhile.
func (s *session) transaction(ctx context.Context, from string, to []string, msg []byte, res *Result) error {
	stop := context.AfterFunc(ctx, func() { _ = s.raw.Close() })
	defer stop()
	defer func() { res.Transcript = s.tr.Lines() }()
	s.deadline(ctx)
	t0 := time.Now()
	if err := s.c.Mail(from, nil); err != nil {
		return fail(ctx, res, PhaseMail, err)
	}
	for _, rcpt := range to {
		if err := s.c.Rcpt(rcpt, nil); err != nil {
			return fail(ctx, res, PhaseRcpt, err)
		}
	}
	w, err := s.c.Data()
	if err != nil {
		return fail(ctx, res, PhaseData, err)
	}
	if _, err := w.Write(msg); err != nil {
		return fail(ctx, res, PhaseData, err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return fail(ctx, res, PhaseData, err)
	}
	res.Timings.TransferMS = ms(time.Since(t0))
	res.Reply = parseOK(resp.StatusText)
	res.QueueID = QueueID(res.Reply)
	s.messages++
	return nil
}

// quit ends the session politely (QUIT).
func (s *session) quit() { _ = s.c.Quit() }

// close drops the connection.
func (s *session) close() {
	if s.c != nil {
		_ = s.c.Close()
	}
	_ = s.raw.Close()
}

// ehlo sends EHLO (HELO when EHLO is not recognised, RFC 5321 section
// 3.2) and returns the extension keywords offered, upper case.
func ehlo(tp *textproto.Conn, name string) (map[string]bool, error) {
	if _, err := tp.Cmd("EHLO %s", name); err != nil {
		return nil, err
	}
	_, msg, err := tp.ReadResponse(250)
	var te *textproto.Error
	if errors.As(err, &te) && (te.Code == 500 || te.Code == 502) {
		if _, err := tp.Cmd("HELO %s", name); err != nil {
			return nil, err
		}
		_, _, err = tp.ReadResponse(250)
		return map[string]bool{}, err
	}
	if err != nil {
		return nil, err
	}
	caps := map[string]bool{}
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			caps[strings.ToUpper(f[0])] = true
		}
	}
	return caps, nil
}

// greetedConn hands go-smtp a session whose banner was already read: it
// supplies one synthetic "220" line (RFC 3207 sends no new banner after
// STARTTLS) that never reaches the wire; go-smtp's own EHLO follows.
type greetedConn struct {
	net.Conn
	done bool
	buf  []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if !g.done {
		if g.buf == nil {
			g.buf = []byte("220 session continues\r\n")
		}
		n := copy(p, g.buf)
		g.buf = g.buf[n:]
		g.done = len(g.buf) == 0
		return n, nil
	}
	return g.Conn.Read(p)
}

func reply(se *smtp.SMTPError) *events.SMTPReply {
	r := &events.SMTPReply{Code: se.Code, Text: se.Message}
	if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
		r.Enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return r
}

// parseOK turns the text of the 250 reply to DATA into a reply, splitting an
// enhanced status code off the front.
func parseOK(text string) *events.SMTPReply {
	r := &events.SMTPReply{Code: 250, Text: text}
	if code, rest, ok := strings.Cut(text, " "); ok && strings.Count(code, ".") == 2 && len(code) <= 11 {
		r.Enhanced, r.Text = code, rest
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}
