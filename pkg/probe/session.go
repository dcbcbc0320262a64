package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emailscout/emailscout/pkg/transcript"
	"github.com/emersion/go-sasl"
)

// ProtocolError is a server response that breaks the protocol: malformed,
// unexpected, or unsolicited. It classifies as ClassProtocol.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string { return "protocol violation: " + e.Msg }

// Protocolf returns a *ProtocolError.
func Protocolf(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// CheckLine refuses a server line (without its CRLF) that holds a CR or a
// NUL: in SMTP and IMAP, CR comes only with LF as the line's end (RFC 5321
// section 2.3.8, RFC 9051 section 2.2), and such a line would otherwise
// reach results and logs. It returns a *ProtocolError or nil.
func CheckLine(line string) error {
	if strings.ContainsAny(line, "\r\x00") {
		return Protocolf("line %q holds a bare CR or a NUL", line)
	}
	return nil
}

// Session runs one probe: it dials, upgrades to TLS, keeps the phase
// timings and builds the Result. Probers create it with Start, record
// failures with Fail and end it with Finish. A Session is used by one
// goroutine, except Record, which may be called from any.
type Session struct {
	ctx    context.Context
	target Target
	start  time.Time
	raw    net.Conn // the TCP connection
	stop   func() bool
	// dialogue records what is said on the connection (Result.Transcript).
	dialogue *transcript.Transcript

	certWarning error

	mu     sync.Mutex // guards res.Replies and closed
	closed bool
	res    Result
}

// Start begins a probe of protocol (events.Kind*) against t. The probe's
// deadline is ctx's.
func Start(ctx context.Context, protocol string, t Target) *Session {
	return &Session{
		ctx: ctx, target: t, start: time.Now(), dialogue: transcript.New(protocol),
		res: Result{Protocol: protocol, Addr: t.Addr()},
	}
}

// Context returns the probe's context.
func (s *Session) Context() context.Context { return s.ctx }

// Target returns the target probed.
func (s *Session) Target() Target { return s.target }

// Result gives the prober access to the Result being built (not to
// Replies: use Record).
func (s *Session) Result() *Result { return &s.res }

// Failed reports whether a failure was recorded.
func (s *Session) Failed() bool { return s.res.Class != "" }

// Fail records the first failure of the probe (later ones are ignored,
// since they are consequences) and returns err.
func (s *Session) Fail(phase, class string, err error) error {
	if s.res.Class == "" {
		s.res.Class, s.res.Phase, s.res.Err = class, phase, err
	}
	return err
}

// GreetingMatches reports whether greeting (the text of the server's
// greeting) matches the target's expect_greeting, and is true when the
// target has none. When it does not match, the probe fails in
// PhaseGreeting with ClassProtocol.
func (s *Session) GreetingMatches(greeting string) bool {
	re := s.target.ExpectGreeting
	if re == nil || re.MatchString(greeting) {
		return true
	}
	s.Fail(PhaseGreeting, ClassProtocol, fmt.Errorf("greeting %q does not match expect_greeting %q", greeting, re))
	return false
}

// FailIO records an I/O or parse error of phase, classified: the context's
// deadline is ClassTimeout, its cancellation ClassMonitor, a
// *ProtocolError ClassProtocol, a connection closed or reset by the server
// during the greeting ClassRefused (it would not serve us), and any other
// error ClassProtocol (the server broke off the dialogue).
func (s *Session) FailIO(phase string, err error) error {
	switch {
	case errors.Is(s.ctx.Err(), context.DeadlineExceeded):
		return s.Fail(phase, ClassTimeout, fmt.Errorf("%s: no answer before the check's deadline: %w", phase, context.DeadlineExceeded))
	case s.ctx.Err() != nil:
		return s.Fail(phase, ClassMonitor, fmt.Errorf("%s: probe cancelled: %w", phase, s.ctx.Err()))
	}
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return s.Fail(phase, ClassProtocol, fmt.Errorf("%s: %w", phase, err))
	}
	closed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
	if closed {
		err = fmt.Errorf("the server closed the connection: %w", err)
		if phase == PhaseGreeting {
			return s.Fail(phase, ClassRefused, fmt.Errorf("%s: %w", phase, err))
		}
	}
	return s.Fail(phase, ClassProtocol, fmt.Errorf("%s: %w", phase, err))
}

// OAuth fetches, before the dialogue, the SASL client of the target's
// OAuth login (nil, true without one). When the token cannot be had, the
// probe fails in PhaseAuth with ClassCredentials (the monitor's
// credential, not the customer's server) and OAuth returns false: the
// prober ends without connecting.
func (s *Session) OAuth() (sasl.Client, bool) {
	if s.target.Auth == nil {
		return nil, true
	}
	sc, _, err := s.target.Auth.SASL(s.ctx)
	if err != nil {
		s.Fail(PhaseAuth, ClassCredentials, fmt.Errorf("auth: no OAuth token for %s: %w", s.target.Username, err))
		return nil, false
	}
	return sc, true
}

// SASLFailure adds to err what the SASL client kept of the server's error
// challenge (RFC 7628 section 3.2.2: status, schemes, scope), when it
// kept one (a mailauth.Client does).
func SASLFailure(sc sasl.Client, err error) error {
	if f, ok := sc.(interface{ Failure() error }); ok && f.Failure() != nil {
		return fmt.Errorf("%w (%w)", err, f.Failure())
	}
	return err
}

// Record appends one server response to Result.Replies (see MaxReplies and
// MaxReplyLen). Safe for concurrent use; ignored after Finish.
func (s *Session) Record(reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.res.Replies) >= MaxReplies {
		return
	}
	if len(reply) > MaxReplyLen {
		reply = reply[:MaxReplyLen] + "..."
	}
	s.res.Replies = append(s.res.Replies, reply)
}

// Dial resolves the target (phase dns, skipped for an IP address), connects
// to the first address that accepts (phase connect) and, for implicit TLS,
// does the handshake (phase tls). The connection is closed when the context
// ends or Finish is called. On failure the error is recorded and returned.
// What is said on the connection it returns is recorded
// (Result.Transcript).
func (s *Session) Dial() (net.Conn, error) {
	t := s.target
	if err := t.Validate(); err != nil {
		return nil, s.Fail("", ClassMonitor, fmt.Errorf("invalid target: %w", err))
	}
	addrs, err := s.resolve()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	var d net.Dialer
	var errs []error
	for _, a := range addrs {
		c, err := d.DialContext(s.ctx, "tcp", netip.AddrPortFrom(a.Unmap(), uint16(t.Port)).String())
		if err == nil {
			s.raw = c
			break
		}
		errs = append(errs, err)
		if s.ctx.Err() != nil {
			break
		}
	}
	s.res.Timings.ConnectMS = ms(time.Since(t0))
	if s.raw == nil {
		err := fmt.Errorf("connect to %s: %w", t.Addr(), errors.Join(errs...))
		switch {
		case errors.Is(s.ctx.Err(), context.DeadlineExceeded):
			return nil, s.Fail(PhaseConnect, ClassTimeout, err)
		case s.ctx.Err() != nil:
			return nil, s.Fail(PhaseConnect, ClassMonitor, err)
		}
		return nil, s.Fail(PhaseConnect, ClassRefused, err)
	}
	raw := s.raw
	s.stop = context.AfterFunc(s.ctx, func() { _ = raw.Close() })
	s.res.Timings.PeerAddress = raw.RemoteAddr().String()
	if t.TLS != TLSImplicit {
		return s.dialogue.Conn(raw), nil
	}
	tc, err := s.Handshake(raw, time.Now())
	if err != nil {
		// An invalid certificate still gives a usable session (tc), but
		// implicit TLS has no plain-text dialogue to end politely.
		return nil, err
	}
	return tc, nil
}

func (s *Session) resolve() ([]netip.Addr, error) {
	t := s.target
	if a, err := netip.ParseAddr(t.Host); err == nil {
		return []netip.Addr{a}, nil
	}
	r := t.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	t0 := time.Now()
	addrs, err := r.LookupNetIP(s.ctx, "ip", t.Host)
	s.res.Timings.DNSMS = ms(time.Since(t0))
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		err = fmt.Errorf("resolve %s: %w", t.Host, err)
		switch {
		case errors.Is(s.ctx.Err(), context.DeadlineExceeded):
			return nil, s.Fail(PhaseDNS, ClassTimeout, err)
		case s.ctx.Err() != nil:
			return nil, s.Fail(PhaseDNS, ClassMonitor, err)
		}
		return nil, s.Fail(PhaseDNS, ClassRefused, err)
	}
	return addrs, nil
}

// Handshake runs the TLS client handshake on conn (phase tls, timed from
// t0, so that a STARTTLS command can be counted in) and inspects the peer
// certificate (see Inspect), filling Result.TLS.
//
// It fails with ClassTLS when the handshake does not complete (an error, or
// the context's deadline: a server that accepted STARTTLS and then never
// handshakes, docs/field-cases.md, c06), leaving Result.TLS nil. It fails with
// ClassCertInvalid when the chain does not verify against Target.RootCAs or
// the certificate does not name Target.Host; the returned *tls.Conn is then
// usable, so that the prober can end the dialogue politely, but it must not
// send credentials. A certificate expiring within Target.CertWarningDays is
// remembered and becomes ClassCertExpiring in Finish unless the probe fails
// otherwise. conn is the connection Dial returned (the handshake runs
// under its recording); the returned one is the TLS connection, recorded
// in plain text.
func (s *Session) Handshake(conn net.Conn, t0 time.Time) (net.Conn, error) {
	host := s.target.Host
	cfg := &tls.Config{
		ServerName: trimDot(host),
		// The chain and host name are verified below by Inspect, so that an
		// invalid certificate is reported with its expiry, subject and the
		// reason, not as a bare handshake error.
		InsecureSkipVerify: true, //nolint:gosec // verified by Inspect
	}
	tc := tls.Client(transcript.Unwrap(conn), cfg)
	err := tc.HandshakeContext(s.ctx)
	s.res.Timings.TLSMS = ms(time.Since(t0))
	if err != nil {
		switch {
		case errors.Is(s.ctx.Err(), context.DeadlineExceeded):
			return nil, s.Fail(PhaseTLS, ClassTLS, fmt.Errorf("TLS handshake did not complete before the check's deadline: %w", err))
		case s.ctx.Err() != nil:
			return nil, s.Fail(PhaseTLS, ClassMonitor, fmt.Errorf("TLS handshake: probe cancelled: %w", err))
		}
		return nil, s.Fail(PhaseTLS, ClassTLS, fmt.Errorf("TLS handshake: %w", err))
	}
	info := Inspect(tc.ConnectionState(), host, s.target.RootCAs, time.Now())
	s.res.TLS = info
	s.res.Timings.TLSVersion = info.Version
	rc := s.dialogue.Conn(tc)
	switch {
	case !info.Verified:
		return rc, s.Fail(PhaseTLS, ClassCertInvalid, fmt.Errorf("certificate of %s does not verify: %s", host, info.VerifyError))
	case !info.HostnameMatch:
		return rc, s.Fail(PhaseTLS, ClassCertInvalid, fmt.Errorf("certificate (%s) does not name %s", info.PeerSubject, host))
	}
	if w := s.target.CertWarningDays; w > 0 && info.DaysLeft < w {
		s.certWarning = fmt.Errorf("certificate of %s expires in %d days (%s), within the %d-day warning",
			host, info.DaysLeft, info.PeerNotAfter.UTC().Format(time.RFC3339), w)
	}
	return rc, nil
}

// Finish closes the connection, sets the total time and returns the
// Result. An expiring certificate becomes the result's class only when
// nothing else failed.
func (s *Session) Finish() Result {
	if s.stop != nil {
		s.stop()
	}
	if s.raw != nil {
		_ = s.raw.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.res.Timings.TotalMS = ms(time.Since(s.start))
	if s.res.Class == "" && s.certWarning != nil {
		s.res.Class, s.res.Phase, s.res.Err = ClassCertExpiring, PhaseTLS, s.certWarning
	}
	r := s.res
	r.Replies = slices.Clone(s.res.Replies)
	r.Transcript = s.dialogue.Lines()
	return r
}

// MS converts a duration to milliseconds with microsecond precision, the
// unit of events.Timings.
func MS(d time.Duration) float64 { return ms(d) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func trimDot(h string) string {
	if len(h) > 1 && h[len(h)-1] == '.' {
		return h[:len(h)-1]
	}
	return h
}

// MaxRead bounds the bytes a prober reads from one connection, so that a
// hostile or broken server cannot make it use unbounded memory.
const MaxRead = 1 << 20

// LimitReader returns a reader that reads at most MaxRead bytes from r and
// then fails with a *ProtocolError.
func LimitReader(r io.Reader) io.Reader { return &limitReader{r: r, n: MaxRead} }

type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, Protocolf("the server sent more than %d bytes", MaxRead)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
