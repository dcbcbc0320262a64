// Package pop3probe checks a POP3 service (RFC 1939) with STLS (RFC 2595)
// or implicit TLS (RFC 8314), using the strict client of package
// pkg/probe/pop3, and optionally logs in and reads the
// maildrop's size.
//
// The dialogue, phase by phase (probe.Phase*), on a fresh connection each
// time (a POP3 session is a snapshot of the maildrop, locked until QUIT:
// docs/field-cases.md, c14):
//
//   - dns, connect (and tls for implicit TLS).
//   - greeting: "+OK" continues; "-ERR" is a refusal, or temporary with a
//     temporary response code. Target.ExpectGreeting must match the text
//     after "+OK ".
//   - capabilities: CAPA (RFC 2449). A server without CAPA ("-ERR") is
//     allowed; its capabilities are unknown.
//   - tls (mode starttls): STLS must be listed by CAPA (when CAPA worked)
//     and answered "+OK"; plain text after the +OK fails the check; the
//     handshake must complete. Then CAPA again (RFC 2595 section 4).
//   - auth (Target.Username set): USER and PASS, only after TLS unless tls
//     is none (configured explicitly); USER must be listed when CAPA worked.
//     "-ERR [IN-USE]" (the maildrop is locked by another session, e.g. the
//     probe of another site), [LOGIN-DELAY] or [SYS/TEMP] is temporary:
//     degraded, not down. Other refusals fail with class auth.
//   - auth (Target.Auth set, OAuth): AUTH XOAUTH2 or OAUTHBEARER (RFC 5034,
//     RFC 7628), which CAPA's SASL line must list when CAPA worked; the
//     token is fetched before the dialogue, and one the token endpoint
//     refuses fails the check with class credentials (the monitor's)
//     before any connection. -ERR is class auth (temporary codes as for
//     PASS), with the server's error challenge.
//   - mailbox (after login): STAT, the message count and size.
//   - QUIT, whenever the session is still in step, so the server releases
//     the maildrop's lock at once.
package pop3probe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/pop3"
	"github.com/emersion/go-sasl"
)

// Maildrop is the Mailbox.Name reported for the POP3 maildrop.
const Maildrop = "maildrop"

// Probe runs one POP3 check against t on a new connection. Its only
// timeout is ctx's deadline; the Result is complete even when the check
// fails (see package probe for classes and statuses).
func Probe(ctx context.Context, t probe.Target) probe.Result {
	s := probe.Start(ctx, events.KindPOP3, t)
	run(s)
	return s.Finish()
}

type session struct {
	s      *probe.Session
	c      *pop3.Client
	broken bool // out of step: no QUIT
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
	ss := &session{s: s, c: pop3.NewClient(nc)}
	ss.c.Trace = s.Record

	t0 := time.Now()
	text, err := ss.c.Greeting()
	res.Timings.GreetingMS = probe.MS(time.Since(t0))
	if err != nil {
		ss.fail(probe.PhaseGreeting, err, probe.ClassRefused)
		return
	}
	if !s.GreetingMatches(text) {
		ss.quit()
		return
	}

	t0 = time.Now()
	caps, ok := ss.capa()
	res.Timings.CapsMS = probe.MS(time.Since(t0))
	if !ok {
		return
	}

	if t.TLS == probe.TLSStartTLS {
		if caps != nil && !has(caps, "STLS") {
			s.Fail(probe.PhaseTLS, probe.ClassTLS, errors.New("tls: STLS is required but the server does not list it in CAPA"))
			ss.quit()
			return
		}
		t0 = time.Now()
		if err := ss.c.STLS(); err != nil {
			ss.fail(probe.PhaseTLS, err, probe.ClassTLS)
			return
		}
		tc, err := s.Handshake(ss.c.Conn(), t0)
		if tc != nil {
			ss.c.Upgrade(tc)
		}
		if err != nil {
			if tc == nil {
				ss.broken = true
			}
			ss.quit()
			return
		}
		t0 = time.Now()
		caps, ok = ss.capa()
		res.Timings.CapsMS += probe.MS(time.Since(t0))
		if !ok {
			return
		}
	}

	if t.Username == "" {
		ss.quit()
		return
	}
	if res.TLS == nil && t.TLS != probe.TLSNone {
		// Unreachable with the modes above; a guard for the credentials.
		s.Fail(probe.PhaseAuth, probe.ClassAuth, errors.New("auth: refusing to send credentials without TLS"))
		ss.quit()
		return
	}
	if sc != nil {
		ss.oauth(caps, sc)
		return
	}
	if caps != nil && !has(caps, "USER") {
		s.Fail(probe.PhaseAuth, probe.ClassAuth, errors.New("auth: the server does not offer USER/PASS (CAPA has no USER)"))
		ss.quit()
		return
	}
	t0 = time.Now()
	err = ss.c.User(t.Username)
	if err == nil {
		err = ss.c.Pass(t.Password)
	}
	res.Timings.AuthMS = probe.MS(time.Since(t0))
	if err != nil {
		ss.fail(probe.PhaseAuth, err, probe.ClassAuth)
		return
	}

	ss.stat()
}

// stat reads the maildrop's size (phase mailbox) and quits.
func (ss *session) stat() {
	res := ss.s.Result()
	t0 := time.Now()
	n, size, err := ss.c.Stat()
	res.Timings.MailboxMS = probe.MS(time.Since(t0))
	if err != nil {
		ss.fail(probe.PhaseMailbox, err, probe.ClassRefused)
		return
	}
	res.Mailbox = &probe.Mailbox{Name: Maildrop, Messages: n, Size: size}
	ss.quit()
}

// oauth logs in with AUTH and the OAuth SASL client sc (XOAUTH2 or
// OAUTHBEARER; RFC 5034), which CAPA must list in its SASL line when
// CAPA worked, then reads the maildrop's size like a password login.
func (ss *session) oauth(caps []string, sc sasl.Client) {
	s, res := ss.s, ss.s.Result()
	mech, _, err := sc.Start()
	if err != nil {
		s.Fail(probe.PhaseAuth, probe.ClassCredentials, fmt.Errorf("auth: %w", err))
		ss.quit()
		return
	}
	if caps != nil && !hasSASL(caps, mech) {
		s.Fail(probe.PhaseAuth, probe.ClassAuth, fmt.Errorf("auth: the server does not offer SASL %s (CAPA: %q)", mech, saslLine(caps)))
		ss.quit()
		return
	}
	t0 := time.Now()
	err = ss.c.Auth(sc)
	res.Timings.AuthMS = probe.MS(time.Since(t0))
	if err != nil {
		ss.fail(probe.PhaseAuth, err, probe.ClassAuth)
		if res.Phase == probe.PhaseAuth {
			res.Err = probe.SASLFailure(sc, res.Err)
		}
		return
	}
	ss.stat()
}

// hasSASL reports whether the CAPA SASL line lists mech.
func hasSASL(caps []string, mech string) bool {
	for _, m := range strings.Fields(saslLine(caps)) {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// saslLine is the mechanisms of the CAPA SASL line ("" without).
func saslLine(caps []string) string {
	for _, line := range caps {
		if tag, rest, _ := strings.Cut(line, " "); strings.EqualFold(tag, "SASL") {
			return rest
		}
	}
	return ""
}

// capa sends CAPA and records the capabilities; nil (with true) when the
// server has no CAPA.
func (ss *session) capa() ([]string, bool) {
	caps, err := ss.c.Capa()
	var pe *pop3.Error
	if errors.As(err, &pe) && !fault.MarkedTemporary(pe) {
		ss.s.Result().Capabilities = nil
		return nil, true
	}
	if err != nil {
		ss.fail(probe.PhaseCapabilities, err, probe.ClassProtocol)
		return nil, false
	}
	ss.s.Result().Capabilities = caps
	return caps, true
}

// fail records err of phase: a temporary -ERR is ClassTemporary, another
// -ERR errClass ([SYS/PERM] is a refusal), a protocol violation
// ClassProtocol, anything else an I/O error (probe.Session.FailIO).
func (ss *session) fail(phase string, err error, errClass string) {
	var pe *pop3.Error
	var perr *pop3.ProtocolError
	switch {
	case errors.As(err, &pe):
		class := errClass
		switch {
		case fault.MarkedTemporary(pe):
			class = probe.ClassTemporary
		case pe.Code == "SYS/PERM":
			class = probe.ClassRefused
		}
		ss.s.Fail(phase, class, fmt.Errorf("%s: %w", phase, err))
		ss.quit()
	case errors.As(err, &perr):
		ss.broken = true
		ss.s.Fail(phase, probe.ClassProtocol, fmt.Errorf("%s: %w", phase, err))
	default:
		ss.broken = true
		ss.s.FailIO(phase, err)
	}
}

// quit ends a session still in step; the answer is recorded, not judged.
func (ss *session) quit() {
	if ss.broken {
		return
	}
	ss.broken = true
	_ = ss.c.Quit()
}

// has reports whether the CAPA lines list the capability name.
func has(caps []string, name string) bool {
	return slices.ContainsFunc(caps, func(line string) bool {
		tag, _, _ := strings.Cut(line, " ")
		return strings.EqualFold(tag, name)
	})
}
