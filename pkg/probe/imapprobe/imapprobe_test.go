package imapprobe

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
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

// script is a scripted IMAP server.
type script struct {
	Greeting string
	Caps     string // CAPABILITY atoms before TLS
	CapsTLS  string // after the handshake
	TLS      *tls.Config
	// AfterStartTLS replaces the upgrade; the session ends when it returns.
	AfterStartTLS func(p *probetest.Peer, tag string)
	// Login returns the tagged completion to LOGIN ("OK ...", "NO ...");
	// nil accepts webscout/s3cret.
	Login    func(user, pass string) string
	Messages int
}

type seen struct {
	mu       sync.Mutex
	commands []string // "CMD" or "tls:CMD"
	login    []string // "tls" or "plain" per LOGIN received
}

// get returns the commands and logins seen. CAPABILITY commands after a
// LOGIN are left out: imapclient re-reads the capabilities after LOGIN in
// the background, pipelined with EXAMINE, in no fixed order.
func (s *seen) get() ([]string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cmds []string
	loggedIn := false
	for _, c := range s.commands {
		if loggedIn && strings.HasSuffix(c, "CAPABILITY") {
			continue
		}
		loggedIn = loggedIn || strings.HasSuffix(c, "LOGIN")
		cmds = append(cmds, c)
	}
	return cmds, append([]string(nil), s.login...)
}

func (sc script) start(t testing.TB) (string, *seen) {
	t.Helper()
	sn := &seen{}
	addr := mailtest.Script(t, func(c net.Conn) {
		p := &probetest.Peer{C: c}
		if err := p.Send(sc.Greeting); err != nil {
			return
		}
		inTLS := false
		for {
			line, err := p.Line()
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(line, " ")
			cmd, args, _ := strings.Cut(rest, " ")
			cmd = strings.ToUpper(cmd)
			rec := cmd
			if inTLS {
				rec = "tls:" + cmd
			}
			sn.mu.Lock()
			sn.commands = append(sn.commands, rec)
			sn.mu.Unlock()
			switch cmd {
			case "CAPABILITY":
				caps := sc.Caps
				if inTLS {
					caps = sc.CapsTLS
				}
				_ = p.Send("* CAPABILITY "+caps, tag+" OK CAPABILITY completed")
			case "STARTTLS":
				if sc.AfterStartTLS != nil {
					sc.AfterStartTLS(p, tag)
					return
				}
				_ = p.Send(tag + " OK Begin TLS negotiation now")
				if err := p.StartTLS(sc.TLS); err != nil {
					return
				}
				inTLS = true
			case "LOGIN":
				mode := "plain"
				if inTLS {
					mode = "tls"
				}
				sn.mu.Lock()
				sn.login = append(sn.login, mode)
				sn.mu.Unlock()
				f := strings.Fields(args)
				for i := range f {
					f[i] = strings.Trim(f[i], `"`)
				}
				reply := "NO [AUTHENTICATIONFAILED] Invalid credentials"
				if sc.Login != nil && len(f) == 2 {
					reply = sc.Login(f[0], f[1])
				} else if len(f) == 2 && f[0] == "webscout" && f[1] == "s3cret" {
					reply = "OK LOGIN completed"
				}
				_ = p.Send(tag + " " + reply)
			case "EXAMINE", "SELECT":
				_ = p.Send(
					fmt.Sprintf("* %d EXISTS", sc.Messages),
					"* 0 RECENT",
					`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)`,
					"* OK [UIDVALIDITY 1714000000] UIDs valid",
					fmt.Sprintf("* OK [UIDNEXT %d] Predicted next UID", sc.Messages+1),
					tag+" OK [READ-ONLY] "+cmd+" completed")
			case "LOGOUT":
				_ = p.Send("* BYE Logging out", tag+" OK LOGOUT completed")
				return
			default:
				_ = p.Send(tag + " BAD Unknown command")
			}
		}
	})
	return addr, sn
}

func target(t testing.TB, addr, mode string) probe.Target {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return probe.Target{Host: host, Port: p, TLS: mode, CertWarningDays: 14}
}

func wantResult(t *testing.T, r probe.Result, status, class, phase string) {
	t.Helper()
	if r.Status() != status || r.Class != class || r.Phase != phase {
		t.Fatalf("status %q class %q phase %q (err %v), want %q %q %q\nreplies: %q",
			r.Status(), r.Class, r.Phase, r.Err, status, class, phase, r.Replies)
	}
}

const c07Greeting = "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready"

// c07 (IMAP): LOGINDISABLED until STARTTLS. The probe sends STARTTLS,
// handshakes, reads the capabilities again and only then logs in.
func TestCaseC07IMAP_StartTLSBeforeLogin(t *testing.T) {
	cfg, pool := probetest.ServerTLS(t, probetest.Valid)
	addr, sn := script{
		Greeting: c07Greeting,
		Caps:     "IMAP4rev1 STARTTLS LOGINDISABLED",
		CapsTLS:  "IMAP4rev1 AUTH=PLAIN",
		TLS:      cfg,
		Messages: 2,
	}.start(t)
	tg := target(t, addr, checks.TLSStartTLS)
	tg.RootCAs = pool
	tg.Username, tg.Password = "webscout", "s3cret"
	r := Probe(probetest.Context(t), tg)
	wantResult(t, r, events.StatusOK, "", "")

	cmds, logins := sn.get()
	if got := strings.Join(cmds, " "); got != "STARTTLS tls:CAPABILITY tls:LOGIN tls:EXAMINE tls:LOGOUT" {
		t.Errorf("commands = %s, want STARTTLS tls:CAPABILITY tls:LOGIN tls:EXAMINE tls:LOGOUT", got)
	}
	if strings.Join(logins, ",") != "tls" {
		t.Errorf("LOGIN received %v, want once, over TLS", logins)
	}
	if got := strings.Join(r.Capabilities, " "); got != "IMAP4REV1 AUTH=PLAIN" {
		t.Errorf("capabilities = %s, want those read after TLS (LOGINDISABLED gone)", got)
	}
	if r.TLS == nil || !r.TLS.Verified || !r.TLS.HostnameMatch {
		t.Errorf("tls = %+v", r.TLS)
	}
	if r.Mailbox == nil || r.Mailbox.Name != "INBOX" || r.Mailbox.Messages != 2 {
		t.Errorf("mailbox = %+v, want INBOX with 2 messages", r.Mailbox)
	}
	tm := r.Timings
	if tm.GreetingMS <= 0 || tm.TLSMS <= 0 || tm.CapsMS <= 0 || tm.AuthMS <= 0 || tm.MailboxMS <= 0 || tm.TotalMS <= 0 {
		t.Errorf("timings = %+v", tm)
	}
	if r.Replies[0] != c07Greeting || !strings.Contains(strings.Join(r.Replies, "\n"), "OK [READ-ONLY] EXAMINE completed") {
		t.Errorf("replies = %q", r.Replies)
	}
	if strings.Contains(strings.Join(r.Replies, "\n"), "s3cret") {
		t.Error("the password appears in the replies")
	}
	// The transcript has both sides, in plain text after the upgrade, the
	// LOGIN's arguments masked.
	all := strings.Join(r.Transcript, "\n")
	for _, w := range []string{"S: " + c07Greeting, " STARTTLS\n", " CAPABILITY\n", " LOGIN ****\n", " EXAMINE INBOX\n", "OK [READ-ONLY] EXAMINE completed"} {
		if !strings.Contains(all, w) {
			t.Errorf("transcript lacks %q:\n%s", w, all)
		}
	}
	if strings.Contains(all, "s3cret") || strings.Contains(all, "webscout") {
		t.Errorf("the login is in the transcript:\n%s", all)
	}
}

// c07 variants: what the probe must refuse to do.
func TestCaseC07IMAP_NoLoginWhileDisabled(t *testing.T) {
	cfg, pool := probetest.ServerTLS(t, probetest.Valid)
	cases := []struct {
		name   string
		sc     script
		mode   string
		class  string
		phase  string
		cmds   string
		status string
	}{
		{"LOGINDISABLED still after TLS", script{Greeting: c07Greeting, CapsTLS: "IMAP4rev1 LOGINDISABLED", TLS: cfg},
			checks.TLSStartTLS, probe.ClassAuth, probe.PhaseAuth, "STARTTLS tls:CAPABILITY tls:LOGOUT", events.StatusFailed},
		{"tls none with LOGINDISABLED", script{Greeting: c07Greeting},
			checks.TLSNone, probe.ClassAuth, probe.PhaseAuth, "LOGOUT", events.StatusFailed},
		{"STARTTLS not advertised", script{Greeting: "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] ready"},
			checks.TLSStartTLS, probe.ClassTLS, probe.PhaseTLS, "LOGOUT", events.StatusFailed},
		{"STARTTLS refused", script{Greeting: c07Greeting, AfterStartTLS: func(p *probetest.Peer, tag string) {
			_ = p.Send(tag + " NO STARTTLS unavailable")
		}}, checks.TLSStartTLS, probe.ClassTLS, probe.PhaseTLS, "STARTTLS", events.StatusFailed},
		{"capabilities asked when the greeting has none", script{Greeting: "* OK ready", Caps: "IMAP4rev1 STARTTLS LOGINDISABLED",
			CapsTLS: "IMAP4rev1", TLS: cfg, Messages: 1},
			checks.TLSStartTLS, "", "", "CAPABILITY STARTTLS tls:CAPABILITY tls:LOGIN tls:EXAMINE tls:LOGOUT", events.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, sn := tc.sc.start(t)
			tg := target(t, addr, tc.mode)
			tg.RootCAs = pool
			tg.Username, tg.Password = "webscout", "s3cret"
			r := Probe(probetest.Context(t), tg)
			wantResult(t, r, tc.status, tc.class, tc.phase)
			cmds, logins := sn.get()
			if got := strings.Join(cmds, " "); got != tc.cmds {
				t.Errorf("commands = %s, want %s", got, tc.cmds)
			}
			for _, l := range logins {
				if l != "tls" {
					t.Errorf("LOGIN sent in plain text")
				}
			}
		})
	}
}

// The c06 fault for IMAP: STARTTLS answered OK, then no handshake.
func TestStartTLSNeverUpgraded(t *testing.T) {
	cases := []struct {
		name    string
		after   func(p *probetest.Peer, tag string)
		timeout time.Duration
		class   string
	}{
		{"plain text answer", func(p *probetest.Peer, tag string) {
			_ = p.Send(tag + " OK Begin TLS negotiation now")
			buf := make([]byte, 512)
			_, _ = p.C.Read(buf)
			_ = p.Send("* BAD Invalid tag")
			_, _ = io.Copy(io.Discard, p.C)
		}, 10 * time.Second, probe.ClassTLS},
		{"silent", func(p *probetest.Peer, tag string) {
			_ = p.Send(tag + " OK Begin TLS negotiation now")
			_, _ = io.Copy(io.Discard, p.C)
		}, 500 * time.Millisecond, probe.ClassTLS},
		{"injected after OK", func(p *probetest.Peer, tag string) {
			_ = p.Send(tag+" OK Begin TLS negotiation now", "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected")
			_, _ = io.Copy(io.Discard, p.C)
		}, 10 * time.Second, probe.ClassProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := script{Greeting: c07Greeting, AfterStartTLS: tc.after}.start(t)
			r := Probe(probetest.Timeout(t, tc.timeout), target(t, addr, checks.TLSStartTLS))
			if tc.name == "injected after OK" && r.Class == probe.ClassTLS {
				// The injected line arrived after the OK was read: the
				// handshake sees it instead. Either way the check fails in
				// the TLS phase without a certificate.
				tc.class = probe.ClassTLS
			}
			wantResult(t, r, events.StatusFailed, tc.class, probe.PhaseTLS)
			if r.TLS != nil {
				t.Errorf("certificate data without a handshake: %+v", r.TLS)
			}
		})
	}
}

func TestGreetingsAndResponses(t *testing.T) {
	cases := []struct {
		name   string
		sc     script
		server func(t *testing.T) string // instead of sc
		mode   string
		user   string
		status string
		class  string
		phase  string
	}{
		{"BYE greeting", script{Greeting: "* BYE Too many connections"}, nil, checks.TLSNone, "",
			events.StatusFailed, probe.ClassRefused, probe.PhaseGreeting},
		{"tagged greeting", script{Greeting: "a1 OK hello"}, nil, checks.TLSNone, "",
			events.StatusFailed, probe.ClassProtocol, probe.PhaseGreeting},
		{"PREAUTH on plain text with starttls", script{Greeting: "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome"}, nil, checks.TLSStartTLS, "",
			events.StatusFailed, probe.ClassTLS, probe.PhaseTLS},
		{"PREAUTH with tls none opens the mailbox", script{Greeting: "* PREAUTH [CAPABILITY IMAP4rev1] welcome", Messages: 7}, nil, checks.TLSNone, "",
			events.StatusOK, "", ""},
		{"no login: greeting and capabilities only", script{Greeting: "* OK ready", Caps: "IMAP4rev1"}, nil, checks.TLSNone, "",
			events.StatusOK, "", ""},
		{"wrong password", script{Greeting: "* OK [CAPABILITY IMAP4rev1] ready", Login: func(u, p string) string {
			return "NO [AUTHENTICATIONFAILED] Invalid credentials"
		}}, nil, checks.TLSNone, "webscout", events.StatusFailed, probe.ClassAuth, probe.PhaseAuth},
		{"login unavailable is temporary", script{Greeting: "* OK [CAPABILITY IMAP4rev1] ready", Login: func(u, p string) string {
			return "NO [UNAVAILABLE] Authentication backend down"
		}}, nil, checks.TLSNone, "webscout", events.StatusDegraded, probe.ClassTemporary, probe.PhaseAuth},
		{"mailbox in use is temporary", script{}, inUseServer, checks.TLSNone, "webscout", events.StatusDegraded, probe.ClassTemporary, probe.PhaseMailbox},
		{"response with a foreign tag", script{}, foreignTagServer, checks.TLSNone, "",
			events.StatusFailed, probe.ClassProtocol, probe.PhaseCapabilities},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var addr string
			if tc.server != nil {
				addr = tc.server(t)
			} else {
				addr, _ = tc.sc.start(t)
			}
			tg := target(t, addr, tc.mode)
			if tc.user != "" {
				tg.Username, tg.Password = tc.user, "pw"
			}
			r := Probe(probetest.Context(t), tg)
			wantResult(t, r, tc.status, tc.class, tc.phase)
			if tc.name == "PREAUTH with tls none opens the mailbox" && (r.Mailbox == nil || r.Mailbox.Messages != 7) {
				t.Errorf("mailbox = %+v, want 7 messages", r.Mailbox)
			}
		})
	}
}

// inUseServer answers EXAMINE with NO [INUSE].
func inUseServer(t *testing.T) string {
	return mailtest.Script(t, func(c net.Conn) {
		p := &probetest.Peer{C: c}
		_ = p.Send("* OK [CAPABILITY IMAP4rev1] ready")
		for {
			line, err := p.Line()
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(line, " ")
			switch probetest.Upper(rest) {
			case "LOGIN":
				_ = p.Send(tag + " OK logged in")
			case "EXAMINE":
				_ = p.Send(tag + " NO [INUSE] Mailbox is locked by another session")
			case "LOGOUT":
				_ = p.Send("* BYE", tag+" OK bye")
				return
			default:
				_ = p.Send(tag + " BAD what")
			}
		}
	})
}

// foreignTagServer answers CAPABILITY with a tag the client never used.
func foreignTagServer(t *testing.T) string {
	return mailtest.Script(t, func(c net.Conn) {
		p := &probetest.Peer{C: c}
		_ = p.Send("* OK ready")
		if _, err := p.Line(); err != nil {
			return
		}
		_ = p.Send("* CAPABILITY IMAP4rev1", "zz9 OK CAPABILITY completed")
		_, _ = io.Copy(io.Discard, p.C)
	})
}

func TestExpectGreeting(t *testing.T) {
	addr, _ := script{Greeting: "* OK [CAPABILITY IMAP4rev1] Dovecot ready.", Caps: "IMAP4rev1"}.start(t)
	for _, tc := range []struct {
		pattern string
		status  string
	}{
		{`Dovecot ready\.$`, events.StatusOK},
		{`^\[CAPABILITY IMAP4rev1\]`, events.StatusOK},
		{`Cyrus`, events.StatusFailed},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			tg := target(t, addr, checks.TLSNone)
			tg.ExpectGreeting = regexp.MustCompile(tc.pattern)
			r := Probe(probetest.Context(t), tg)
			if r.Status() != tc.status {
				t.Fatalf("status %q (%v), want %q", r.Status(), r.Err, tc.status)
			}
		})
	}
}

// Against go-imap/v2's real server: c07 over STARTTLS, implicit TLS, the
// certificate variants, a wrong password and a plain-text login attempt.
func TestRealServer(t *testing.T) {
	valid, pool := probetest.ServerTLS(t, probetest.Valid)
	starttls := probetest.IMAPServer(t, valid, false)
	implicit := probetest.IMAPServer(t, valid, true)
	expiredCfg, expiredPool := probetest.ServerTLS(t, probetest.Expired)
	expired := probetest.IMAPServer(t, expiredCfg, false)
	wrongCfg, wrongPool := probetest.ServerTLS(t, probetest.WrongHost)
	wrong := probetest.IMAPServer(t, wrongCfg, true)
	expiringCfg, expiringPool := probetest.ServerTLS(t, probetest.Expiring)
	expiring := probetest.IMAPServer(t, expiringCfg, false)

	cases := []struct {
		name   string
		addr   string
		mode   string
		pool   *x509.CertPool
		user   string
		pw     string
		status string
		class  string
		phase  string
	}{
		{"starttls and login", starttls, checks.TLSStartTLS, pool, "webscout", "s3cret", events.StatusOK, "", ""},
		{"starttls, no login", starttls, checks.TLSStartTLS, pool, "", "", events.StatusOK, "", ""},
		{"implicit tls and login", implicit, checks.TLSImplicit, pool, "webscout", "s3cret", events.StatusOK, "", ""},
		{"wrong password", starttls, checks.TLSStartTLS, pool, "webscout", "nope", events.StatusFailed, probe.ClassAuth, probe.PhaseAuth},
		{"plain text login is not attempted", starttls, checks.TLSNone, pool, "webscout", "s3cret", events.StatusFailed, probe.ClassAuth, probe.PhaseAuth},
		{"expired certificate", expired, checks.TLSStartTLS, expiredPool, "webscout", "s3cret", events.StatusFailed, probe.ClassCertInvalid, probe.PhaseTLS},
		{"wrong host", wrong, checks.TLSImplicit, wrongPool, "webscout", "s3cret", events.StatusFailed, probe.ClassCertInvalid, probe.PhaseTLS},
		{"expiring certificate", expiring, checks.TLSStartTLS, expiringPool, "webscout", "s3cret", events.StatusDegraded, probe.ClassCertExpiring, probe.PhaseTLS},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := target(t, tc.addr, tc.mode)
			tg.RootCAs = tc.pool
			tg.Username, tg.Password = tc.user, tc.pw
			r := Probe(probetest.Context(t), tg)
			wantResult(t, r, tc.status, tc.class, tc.phase)
			if tc.status != events.StatusFailed && tc.user != "" && (r.Mailbox == nil || r.Mailbox.Messages != 1) {
				t.Errorf("mailbox = %+v, want INBOX with 1 message", r.Mailbox)
			}
			if tc.status != events.StatusOK || tc.mode == checks.TLSNone {
				return
			}
			if r.TLS == nil || r.Timings.TLSVersion != "TLS1.3" {
				t.Errorf("tls = %+v version %q", r.TLS, r.Timings.TLSVersion)
			}
			if tc.mode == checks.TLSStartTLS && !bytes.Contains([]byte(strings.Join(r.Replies, "\n")), []byte("LOGINDISABLED")) {
				t.Errorf("the real server did not advertise LOGINDISABLED before STARTTLS: %q", r.Replies)
			}
			for _, c := range r.Capabilities {
				if c == "LOGINDISABLED" {
					t.Errorf("LOGINDISABLED still in the capabilities after TLS: %v", r.Capabilities)
				}
			}
		})
	}
}

// BenchmarkProbe measures a whole c07-style check (STARTTLS, CAPABILITY,
// LOGIN, EXAMINE INBOX, LOGOUT) against go-imap/v2's server on loopback.
func BenchmarkProbe(b *testing.B) {
	cfg, pool := probetest.ServerTLS(b, probetest.Valid)
	tg := target(b, probetest.IMAPServer(b, cfg, false), checks.TLSStartTLS)
	tg.RootCAs = pool
	tg.Username, tg.Password = "webscout", "s3cret"
	ctx := probetest.Context(b)
	var tlsMS, authMS, mailboxMS float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := Probe(ctx, tg)
		if r.Status() != events.StatusOK {
			b.Fatalf("status %q: %v", r.Status(), r.Err)
		}
		tlsMS += r.Timings.TLSMS
		authMS += r.Timings.AuthMS
		mailboxMS += r.Timings.MailboxMS
	}
	b.ReportMetric(tlsMS/float64(b.N), "tls_ms")
	b.ReportMetric(authMS/float64(b.N), "auth_ms")
	b.ReportMetric(mailboxMS/float64(b.N), "mailbox_ms")
}
