package pop3probe

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
)

// maildrop is the server-side state shared by the sessions of a scripted
// server: the messages and the exclusive lock of RFC 1939 section 8. Like
// some real servers, it releases the lock only on QUIT.
type maildrop struct {
	mu       sync.Mutex
	messages int
	locked   bool
	sessions int
	quits    int
	commands []string // "CMD" or "tls:CMD", all sessions
	plainPW  bool     // PASS arrived without TLS
}

func (m *maildrop) arrive() {
	m.mu.Lock()
	m.messages++
	m.mu.Unlock()
}

func (m *maildrop) stats() (sessions, quits int, cmds []string, plainPW bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions, m.quits, append([]string(nil), m.commands...), m.plainPW
}

// script is a scripted POP3 server.
type script struct {
	Implicit *tls.Config // TLS from the first byte
	Greeting string      // default "+OK POP3 ready"
	Capa     []string    // CAPA lines before TLS; nil answers -ERR
	CapaTLS  []string    // after STLS
	TLS      *tls.Config // STLS upgrade
	// AfterSTLS replaces the upgrade; the session ends when it returns.
	AfterSTLS func(p *probetest.Peer)
	Pass      func(m *maildrop, pw string) string // answer to PASS; nil: "s3cret" locks the maildrop
	Stat      string                              // answer to STAT; "" for "+OK <n> <n*160>"
	// Tokens are the bearer tokens AUTH XOAUTH2 and OAUTHBEARER accept
	// (RFC 5034; nil: AUTH is unknown).
	Tokens map[string]bool
}

func (sc script) start(t testing.TB, m *maildrop) string {
	t.Helper()
	return mailtest.Script(t, func(c net.Conn) {
		p := &probetest.Peer{C: c}
		m.mu.Lock()
		m.sessions++
		m.mu.Unlock()
		inTLS := false
		if sc.Implicit != nil {
			if err := p.StartTLS(sc.Implicit); err != nil {
				return
			}
			inTLS = true
		}
		g := sc.Greeting
		if g == "" {
			g = "+OK POP3 ready"
		}
		if err := p.Send(g); err != nil {
			return
		}
		// holds: this session holds the lock. A connection that ends
		// without QUIT leaves it locked (stale), as on servers that wait
		// for a timeout to release it.
		holds := false
		snapshot := -1
		for {
			line, err := p.Line()
			if err != nil {
				return
			}
			cmd, arg, _ := strings.Cut(line, " ")
			cmd = strings.ToUpper(cmd)
			rec := cmd
			if inTLS {
				rec = "tls:" + cmd
			}
			m.mu.Lock()
			m.commands = append(m.commands, rec)
			m.mu.Unlock()
			switch cmd {
			case "CAPA":
				caps := sc.Capa
				if inTLS && sc.CapaTLS != nil {
					caps = sc.CapaTLS
				}
				if caps == nil {
					_ = p.Send("-ERR unknown command")
					continue
				}
				_ = p.Send(append(append([]string{"+OK Capability list follows"}, caps...), ".")...)
			case "STLS":
				if sc.AfterSTLS != nil {
					sc.AfterSTLS(p)
					return
				}
				_ = p.Send("+OK Begin TLS negotiation")
				if err := p.StartTLS(sc.TLS); err != nil {
					return
				}
				inTLS = true
			case "AUTH":
				if sc.Tokens == nil {
					_ = p.Send("-ERR unknown command")
					continue
				}
				if !sc.auth(p, arg) {
					continue
				}
				m.mu.Lock()
				m.locked, holds, snapshot = true, true, m.messages
				m.mu.Unlock()
				_ = p.Send("+OK Logged in")
			case "USER":
				_ = p.Send("+OK")
			case "PASS":
				m.mu.Lock()
				if !inTLS {
					m.plainPW = true
				}
				var reply string
				switch {
				case sc.Pass != nil:
					reply = sc.Pass(m, arg)
				case arg != "s3cret":
					reply = "-ERR [AUTH] Authentication failed"
				case m.locked:
					reply = "-ERR [IN-USE] Mailbox is locked by another POP3 session"
				default:
					m.locked, holds, snapshot = true, true, m.messages
					reply = fmt.Sprintf("+OK Logged in, %d messages", snapshot)
				}
				m.mu.Unlock()
				_ = p.Send(reply)
			case "STAT":
				if sc.Stat != "" {
					_ = p.Send(sc.Stat)
					continue
				}
				_ = p.Send(fmt.Sprintf("+OK %d %d", snapshot, snapshot*160))
			case "QUIT":
				m.mu.Lock()
				m.quits++
				if holds {
					m.locked, holds = false, false
				}
				m.mu.Unlock()
				_ = p.Send("+OK Logging out")
				return
			default:
				_ = p.Send("-ERR unknown command")
			}
		}
	})
}

// auth is the server side of AUTH XOAUTH2 / OAUTHBEARER (RFC 5034): the
// initial response on the line or after an empty challenge; a token not
// in sc.Tokens gets the RFC 7628 error challenge, then -ERR [AUTH]. It
// reports whether the login passed (the caller answers +OK).
func (sc script) auth(p *probetest.Peer, arg string) bool {
	_, ir, _ := strings.Cut(arg, " ")
	if ir == "" {
		_ = p.Send("+ ")
		var err error
		if ir, err = p.Line(); err != nil {
			return false
		}
	}
	dec, _ := base64.StdEncoding.DecodeString(ir)
	for tok := range sc.Tokens {
		if strings.Contains(string(dec), "Bearer "+tok+"\x01") {
			return true
		}
	}
	_ = p.Send("+ " + base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_token","schemes":"bearer","scope":"mail"}`)))
	_, _ = p.Line()
	_ = p.Send("-ERR [AUTH] Authentication failed.")
	return false
}

func target(t testing.TB, addr, mode string) probe.Target {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return probe.Target{Host: host, Port: p, TLS: mode, CertWarningDays: 14, Username: "webscout", Password: "s3cret"}
}

func wantResult(t *testing.T, r probe.Result, status, class, phase string) {
	t.Helper()
	if r.Status() != status || r.Class != class || r.Phase != phase {
		t.Fatalf("status %q class %q phase %q (err %v), want %q %q %q\nreplies: %q",
			r.Status(), r.Class, r.Phase, r.Err, status, class, phase, r.Replies)
	}
}

// c07 (POP3): CAPA lists STLS; the probe sends STLS, expects +OK,
// handshakes, and only then sends USER/PASS.
func TestCaseC07POP3_STLSBeforeUserPass(t *testing.T) {
	cfg, pool := probetest.ServerTLS(t, probetest.Valid)
	m := &maildrop{messages: 2}
	addr := script{
		Greeting: "+OK ready",
		Capa:     []string{"STLS", "TOP", "UIDL", "RESP-CODES"},
		CapaTLS:  []string{"USER", "TOP", "UIDL", "RESP-CODES"},
		TLS:      cfg,
	}.start(t, m)
	tg := target(t, addr, checks.TLSStartTLS)
	tg.RootCAs = pool
	r := Probe(probetest.Context(t), tg)
	wantResult(t, r, events.StatusOK, "", "")

	_, quits, cmds, plainPW := m.stats()
	if got := strings.Join(cmds, " "); got != "CAPA STLS tls:CAPA tls:USER tls:PASS tls:STAT tls:QUIT" {
		t.Errorf("commands = %s, want CAPA STLS tls:CAPA tls:USER tls:PASS tls:STAT tls:QUIT", got)
	}
	if plainPW || quits != 1 {
		t.Errorf("password in plain text %v, quits %d", plainPW, quits)
	}
	if got := strings.Join(r.Capabilities, ","); got != "USER,TOP,UIDL,RESP-CODES" {
		t.Errorf("capabilities = %s, want the list read after TLS", got)
	}
	if r.Mailbox == nil || r.Mailbox.Messages != 2 || r.Mailbox.Size != 320 {
		t.Errorf("mailbox = %+v, want 2 messages, 320 octets", r.Mailbox)
	}
	if r.TLS == nil || !r.TLS.Verified {
		t.Errorf("tls = %+v", r.TLS)
	}
	tm := r.Timings
	if tm.GreetingMS <= 0 || tm.CapsMS <= 0 || tm.TLSMS <= 0 || tm.AuthMS <= 0 || tm.MailboxMS <= 0 {
		t.Errorf("timings = %+v", tm)
	}
	if r.Replies[0] != "+OK ready" || strings.Contains(strings.Join(r.Replies, "\n"), "s3cret") {
		t.Errorf("replies = %q", r.Replies)
	}
	all := strings.Join(r.Transcript, "\n")
	for _, w := range []string{"S: +OK ready\nC: CAPA", "C: STLS", "C: USER ", "C: PASS ****", "C: STAT\nS: +OK 2 320", "C: QUIT"} {
		if !strings.Contains(all, w) {
			t.Errorf("transcript lacks %q:\n%s", w, all)
		}
	}
	if strings.Contains(all, "s3cret") {
		t.Errorf("the password is in the transcript:\n%s", all)
	}
}

// c14: every poll is a fresh session that ends with QUIT; [IN-USE] is
// temporary (degraded), not down; a fresh session sees new mail.
func TestCaseC14_FreshSessionAndInUse(t *testing.T) {
	m := &maildrop{messages: 1}
	addr := script{Capa: []string{"USER", "RESP-CODES"}}.start(t, m)
	tg := target(t, addr, checks.TLSNone)

	// Session A (another site) logs in and stays.
	a, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	pa := &probetest.Peer{C: a}
	for _, cmd := range []string{"", "USER webscout", "PASS s3cret"} {
		if cmd != "" {
			_, _ = io.WriteString(a, cmd+"\r\n")
		}
		if line, err := pa.Line(); err != nil || !strings.HasPrefix(line, "+OK") {
			t.Fatalf("session A %q: %q %v", cmd, line, err)
		}
	}

	r := Probe(probetest.Context(t), tg)
	wantResult(t, r, events.StatusDegraded, probe.ClassTemporary, probe.PhaseAuth)
	if !strings.Contains(r.Err.Error(), "[IN-USE]") || r.Mailbox != nil {
		t.Errorf("err %v mailbox %+v", r.Err, r.Mailbox)
	}

	// A probe arrives while A is logged in; A ends with QUIT.
	m.arrive()
	_, _ = io.WriteString(a, "QUIT\r\n")
	if line, _ := pa.Line(); !strings.HasPrefix(line, "+OK") {
		t.Fatalf("session A QUIT: %q", line)
	}

	for i := 0; i < 2; i++ {
		r = Probe(probetest.Context(t), tg)
		wantResult(t, r, events.StatusOK, "", "")
		if r.Mailbox == nil || r.Mailbox.Messages != 2 {
			t.Errorf("poll %d: mailbox %+v, want the new message in a fresh session", i, r.Mailbox)
		}
	}
	sessions, quits, _, _ := m.stats()
	if sessions != 4 || quits != 4 {
		t.Errorf("sessions %d quits %d, want 4 and 4 (A and three probes, each ending with QUIT)", sessions, quits)
	}
}

// The c06 fault for POP3, and what STLS must not accept.
func TestSTLS(t *testing.T) {
	cfg, pool := probetest.ServerTLS(t, probetest.Valid)
	cases := []struct {
		name    string
		sc      script
		timeout time.Duration
		status  string
		class   string
		cmds    string
	}{
		{"not listed", script{Capa: []string{"USER"}}, 10 * time.Second,
			events.StatusFailed, probe.ClassTLS, "CAPA QUIT"},
		{"refused", script{Capa: []string{"STLS"}, AfterSTLS: func(p *probetest.Peer) {
			_ = p.Send("-ERR TLS not available")
			_, _ = p.Line()
			_ = p.Send("+OK bye")
		}}, 10 * time.Second, events.StatusFailed, probe.ClassTLS, "CAPA STLS"},
		{"temporarily refused", script{Capa: []string{"STLS"}, AfterSTLS: func(p *probetest.Peer) {
			_ = p.Send("-ERR [SYS/TEMP] TLS not available right now")
		}}, 10 * time.Second, events.StatusDegraded, probe.ClassTemporary, "CAPA STLS"},
		{"+OK then plain text", script{Capa: []string{"STLS"}, AfterSTLS: func(p *probetest.Peer) {
			_ = p.Send("+OK Begin TLS negotiation")
			buf := make([]byte, 512)
			_, _ = p.C.Read(buf)
			_ = p.Send("-ERR unknown command")
			_, _ = io.Copy(io.Discard, p.C)
		}}, 10 * time.Second, events.StatusFailed, probe.ClassTLS, "CAPA STLS"},
		{"+OK then silence", script{Capa: []string{"STLS"}, AfterSTLS: func(p *probetest.Peer) {
			_ = p.Send("+OK Begin TLS negotiation")
			_, _ = io.Copy(io.Discard, p.C)
		}}, 500 * time.Millisecond, events.StatusFailed, probe.ClassTLS, "CAPA STLS"},
		{"no CAPA: STLS tried", script{TLS: cfg, CapaTLS: []string{"USER"}}, 10 * time.Second,
			events.StatusOK, "", "CAPA STLS tls:CAPA tls:USER tls:PASS tls:STAT tls:QUIT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &maildrop{}
			addr := tc.sc.start(t, m)
			tg := target(t, addr, checks.TLSStartTLS)
			tg.RootCAs = pool
			r := Probe(probetest.Timeout(t, tc.timeout), tg)
			phase := probe.PhaseTLS
			if tc.class == "" {
				phase = ""
			}
			wantResult(t, r, tc.status, tc.class, phase)
			if tc.class != "" && r.TLS != nil {
				t.Errorf("certificate data without a handshake: %+v", r.TLS)
			}
			_, _, cmds, plainPW := m.stats()
			if got := strings.Join(cmds, " "); got != tc.cmds {
				t.Errorf("commands = %s, want %s", got, tc.cmds)
			}
			if plainPW {
				t.Error("PASS sent without TLS")
			}
		})
	}
	t.Run("injected after +OK", func(t *testing.T) {
		addr := script{Capa: []string{"STLS"}, AfterSTLS: func(p *probetest.Peer) {
			_ = p.Send("+OK Begin TLS negotiation", "+OK injected")
			_, _ = io.Copy(io.Discard, p.C)
		}}.start(t, &maildrop{})
		r := Probe(probetest.Context(t), target(t, addr, checks.TLSStartTLS))
		if r.Status() != events.StatusFailed || r.Phase != probe.PhaseTLS || r.TLS != nil ||
			(r.Class != probe.ClassProtocol && r.Class != probe.ClassTLS) {
			t.Fatalf("status %q class %q phase %q tls %+v (%v)", r.Status(), r.Class, r.Phase, r.TLS, r.Err)
		}
	})
}

func TestResponses(t *testing.T) {
	cases := []struct {
		name   string
		sc     script
		mode   string
		user   string
		pw     string
		status string
		class  string
		phase  string
	}{
		{"-ERR greeting", script{Greeting: "-ERR go away"}, checks.TLSNone, "", "",
			events.StatusFailed, probe.ClassRefused, probe.PhaseGreeting},
		{"-ERR [SYS/TEMP] greeting", script{Greeting: "-ERR [SYS/TEMP] overloaded"}, checks.TLSNone, "", "",
			events.StatusDegraded, probe.ClassTemporary, probe.PhaseGreeting},
		{"garbage greeting", script{Greeting: "* OK IMAP4rev1"}, checks.TLSNone, "", "",
			events.StatusFailed, probe.ClassProtocol, probe.PhaseGreeting},
		{"status indicator glued to text", script{Greeting: "+OKready"}, checks.TLSNone, "", "",
			events.StatusFailed, probe.ClassProtocol, probe.PhaseGreeting},
		{"unsolicited line after the greeting", script{Greeting: "+OK ready\r\n+OK surprise", Capa: []string{"USER"}}, checks.TLSNone, "", "",
			events.StatusFailed, probe.ClassProtocol, probe.PhaseCapabilities},
		{"no login: greeting and CAPA", script{Capa: []string{"USER"}}, checks.TLSNone, "", "",
			events.StatusOK, "", ""},
		{"plain text login when tls is none", script{Capa: []string{"USER"}}, checks.TLSNone, "webscout", "s3cret",
			events.StatusOK, "", ""},
		{"no CAPA, tls none", script{}, checks.TLSNone, "webscout", "s3cret",
			events.StatusOK, "", ""},
		{"USER not offered", script{Capa: []string{"SASL PLAIN"}}, checks.TLSNone, "webscout", "s3cret",
			events.StatusFailed, probe.ClassAuth, probe.PhaseAuth},
		{"wrong password", script{Capa: []string{"USER"}}, checks.TLSNone, "webscout", "nope",
			events.StatusFailed, probe.ClassAuth, probe.PhaseAuth},
		{"login delay is temporary", script{Capa: []string{"USER"}, Pass: func(*maildrop, string) string {
			return "-ERR [LOGIN-DELAY] wait a bit"
		}}, checks.TLSNone, "webscout", "s3cret", events.StatusDegraded, probe.ClassTemporary, probe.PhaseAuth},
		{"SYS/PERM is a refusal", script{Capa: []string{"USER"}, Pass: func(*maildrop, string) string {
			return "-ERR [SYS/PERM] maildrop unavailable"
		}}, checks.TLSNone, "webscout", "s3cret", events.StatusFailed, probe.ClassRefused, probe.PhaseAuth},
		{"malformed STAT", script{Capa: []string{"USER"}, Stat: "+OK lots"}, checks.TLSNone, "webscout", "s3cret",
			events.StatusFailed, probe.ClassProtocol, probe.PhaseMailbox},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &maildrop{messages: 3}
			tg := target(t, tc.sc.start(t, m), tc.mode)
			tg.Username, tg.Password = tc.user, tc.pw
			r := Probe(probetest.Context(t), tg)
			wantResult(t, r, tc.status, tc.class, tc.phase)
			if tc.status == events.StatusOK && tc.user != "" && (r.Mailbox == nil || r.Mailbox.Messages != 3) {
				t.Errorf("mailbox = %+v", r.Mailbox)
			}
		})
	}
}

func TestCertificates(t *testing.T) {
	cases := []struct {
		name   string
		cert   probetest.Cert
		status string
		class  string
	}{
		{"valid", probetest.Valid, events.StatusOK, ""},
		{"expired", probetest.Expired, events.StatusFailed, probe.ClassCertInvalid},
		{"expiring", probetest.Expiring, events.StatusDegraded, probe.ClassCertExpiring},
		{"wrong host", probetest.WrongHost, events.StatusFailed, probe.ClassCertInvalid},
	}
	for _, mode := range []string{checks.TLSStartTLS, checks.TLSImplicit} {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				cfg, pool := probetest.ServerTLS(t, tc.cert)
				sc := script{Capa: []string{"STLS", "USER"}, CapaTLS: []string{"USER"}, TLS: cfg}
				if mode == checks.TLSImplicit {
					sc = script{Implicit: cfg, Capa: []string{"USER"}}
				}
				m := &maildrop{messages: 1}
				tg := target(t, sc.start(t, m), mode)
				tg.RootCAs = pool
				r := Probe(probetest.Context(t), tg)
				phase := ""
				if tc.class != "" {
					phase = probe.PhaseTLS
				}
				wantResult(t, r, tc.status, tc.class, phase)
				if r.TLS == nil {
					t.Fatal("no TLS info after a completed handshake")
				}
				_, _, cmds, plainPW := m.stats()
				if tc.class == probe.ClassCertInvalid && strings.Contains(strings.Join(cmds, " "), "PASS") {
					t.Errorf("PASS sent over an invalid certificate: %v", cmds)
				}
				if plainPW {
					t.Error("PASS sent without TLS")
				}
			})
		}
	}
	t.Run("untrusted CA", func(t *testing.T) {
		cfg, _ := probetest.ServerTLS(t, probetest.Valid)
		tg := target(t, script{Implicit: cfg, Capa: []string{"USER"}}.start(t, &maildrop{}), checks.TLSImplicit)
		tg.RootCAs = x509.NewCertPool()
		r := Probe(probetest.Context(t), tg)
		wantResult(t, r, events.StatusFailed, probe.ClassCertInvalid, probe.PhaseTLS)
		if r.TLS == nil || r.TLS.Verified || r.TLS.VerifyError == "" {
			t.Errorf("tls = %+v", r.TLS)
		}
	})
}

func TestExpectGreeting(t *testing.T) {
	addr := script{Greeting: "+OK Dovecot (Debian) ready.", Capa: []string{"USER"}}.start(t, &maildrop{})
	for _, tc := range []struct {
		pattern string
		status  string
	}{
		{`^Dovecot .* ready\.$`, events.StatusOK},
		{`Courier`, events.StatusFailed},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			tg := target(t, addr, checks.TLSNone)
			tg.Username = ""
			tg.ExpectGreeting = regexp.MustCompile(tc.pattern)
			if r := Probe(probetest.Context(t), tg); r.Status() != tc.status {
				t.Fatalf("status %q (%v), want %q", r.Status(), r.Err, tc.status)
			}
		})
	}
}

// BenchmarkProbe measures a whole STLS check with login and STAT against
// the scripted server on loopback.
func BenchmarkProbe(b *testing.B) {
	cfg, pool := probetest.ServerTLS(b, probetest.Valid)
	addr := script{Capa: []string{"STLS", "USER"}, CapaTLS: []string{"USER"}, TLS: cfg}.start(b, &maildrop{messages: 1})
	tg := target(b, addr, checks.TLSStartTLS)
	tg.RootCAs = pool
	ctx := probetest.Context(b)
	var tlsMS float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := Probe(ctx, tg)
		if r.Status() != events.StatusOK {
			b.Fatalf("status %q: %v", r.Status(), r.Err)
		}
		tlsMS += r.Timings.TLSMS
	}
	b.ReportMetric(tlsMS/float64(b.N), "tls_ms")
}
