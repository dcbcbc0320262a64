package smtpprobe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	stdlog "log"
	"net"
	"net/netip"
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
	"github.com/emersion/go-smtp"
)

// script is a scripted SMTP server: it sends Greeting (waiting Delay before
// the first line and Pause before the last, watching for a client that
// talks early), answers EHLO with EHLO (EHLOTLS after the handshake),
// upgrades on STARTTLS with TLS, and lets Handle answer anything else.
type script struct {
	Delay    time.Duration
	Pause    time.Duration
	Greeting []string
	EHLO     []string
	EHLOTLS  []string
	TLS      *tls.Config
	// AfterStartTLS replaces the upgrade: it runs after the STARTTLS line
	// was read, and the session ends when it returns.
	AfterStartTLS func(p *probetest.Peer)
	// Handle answers a command; false means "not handled" (502).
	Handle func(p *probetest.Peer, line string) bool
}

// seen is what a scripted server saw.
type seen struct {
	mu       sync.Mutex
	early    []byte   // bytes the client sent before the greeting was complete
	commands []string // lines received, "tls:" prefixed after the handshake
	tlsErr   error
}

func (l *seen) add(f func(l *seen)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l)
}

func (l *seen) snapshot() ([]byte, []string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.early, append([]string(nil), l.commands...), l.tlsErr
}

func (sc script) start(t testing.TB) (string, *seen) {
	t.Helper()
	lg := &seen{}
	addr := mailtest.Script(t, func(c net.Conn) {
		p := &probetest.Peer{C: c}
		if sc.Delay > 0 {
			if b := p.Quiet(sc.Delay); b != nil {
				lg.add(func(l *seen) { l.early = append(l.early, b...) })
				_ = p.Send("554 5.5.0 Error: SMTP protocol synchronization")
				return
			}
		}
		if n := len(sc.Greeting); sc.Pause > 0 && n > 1 {
			// All lines but the last, the pause, then the last line.
			if err := p.Send(sc.Greeting[:n-1]...); err != nil {
				return
			}
			if b := p.Quiet(sc.Pause); b != nil {
				lg.add(func(l *seen) { l.early = append(l.early, b...) })
				_ = p.Send("554 5.5.0 Error: SMTP protocol synchronization")
				return
			}
			if err := p.Send(sc.Greeting[n-1]); err != nil {
				return
			}
		} else if err := p.Send(sc.Greeting...); err != nil {
			return
		}
		inTLS := false
		for {
			line, err := p.Line()
			if err != nil {
				return
			}
			rec := line
			if inTLS {
				rec = "tls:" + line
			}
			lg.add(func(l *seen) { l.commands = append(l.commands, rec) })
			switch probetest.Upper(line) {
			case "EHLO":
				if inTLS {
					_ = p.Send(sc.EHLOTLS...)
				} else {
					_ = p.Send(sc.EHLO...)
				}
				continue
			case "STARTTLS":
				if sc.AfterStartTLS != nil {
					sc.AfterStartTLS(p)
					return
				}
				if sc.TLS != nil {
					_ = p.Send("220 2.0.0 Ready to start TLS")
					if err := p.StartTLS(sc.TLS); err != nil {
						lg.add(func(l *seen) { l.tlsErr = err })
						return
					}
					inTLS = true
					continue
				}
			case "QUIT":
				_ = p.Send("221 2.0.0 Bye")
				return
			}
			if sc.Handle == nil || !sc.Handle(p, line) {
				_ = p.Send("502 5.5.2 Error: command not recognized")
			}
		}
	})
	return addr, lg
}

func target(t testing.TB, addr string, mode string) probe.Target {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return probe.Target{Host: host, Port: p, TLS: mode, CertWarningDays: 14, HelloName: "scout.monitor.example"}
}

var plainEHLO = []string{"250-mx.example.net", "250-PIPELINING", "250 8BITMIME"}

func verbs(cmds []string) []string {
	var out []string
	for _, c := range cmds {
		prefix := ""
		if rest, ok := strings.CutPrefix(c, "tls:"); ok {
			prefix, c = "tls:", rest
		}
		out = append(out, prefix+probetest.Upper(c))
	}
	return out
}

func wantResult(t *testing.T, r probe.Result, status, class, phase string) {
	t.Helper()
	if r.Status() != status || r.Class != class || r.Phase != phase {
		t.Fatalf("status %q class %q phase %q (err %v), want %q %q %q\nreplies: %q",
			r.Status(), r.Class, r.Phase, r.Err, status, class, phase, r.Replies)
	}
}

// c03 server A: the greeting comes after a delay and the server rejects
// any byte that arrives before it. The check must wait and pass.
func TestCaseC03ServerA_WaitsForDelayedGreeting(t *testing.T) {
	sc := script{
		Delay:    300 * time.Millisecond, // the case's 2 s, shortened
		Greeting: []string{"220 mx.example.net ESMTP"},
		EHLO:     plainEHLO,
	}
	addr, lg := sc.start(t)

	// The server really rejects early talkers: a client that writes
	// before the greeting gets the 554.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.Write([]byte("EHLO early\r\n"))
	line, _ := mailtest.ReadLine(raw)
	_ = raw.Close()
	if !strings.HasPrefix(line, "554 5.5.0") {
		t.Fatalf("control: early talker got %q, want the 554 synchronization error", line)
	}
	lg.add(func(l *seen) { l.early = nil })

	r := Probe(probetest.Context(t), target(t, addr, checks.TLSNone))
	wantResult(t, r, events.StatusOK, "", "")
	early, cmds, _ := lg.snapshot()
	if early != nil {
		t.Errorf("the probe talked before the greeting: %q", early)
	}
	if got := strings.Join(verbs(cmds), " "); got != "EHLO QUIT" {
		t.Errorf("commands = %s, want EHLO QUIT", got)
	}
	if r.Replies[0] != "220 mx.example.net ESMTP" {
		t.Errorf("first reply = %q, want the greeting", r.Replies[0])
	}
}

// c03 server B: 220, then 554 to EHLO. The check is down, with the reply.
func TestCaseC03ServerB_554ToEHLOIsDown(t *testing.T) {
	sc := script{
		Greeting: []string{"220 mx.example.net ESMTP"},
		EHLO:     []string{"554 5.7.1 Service unavailable"},
	}
	addr, lg := sc.start(t)
	r := Probe(probetest.Context(t), target(t, addr, checks.TLSStartTLS))
	wantResult(t, r, events.StatusFailed, probe.ClassRefused, probe.PhaseCapabilities)
	want := events.SMTPReply{Code: 554, Enhanced: "5.7.1", Text: "Service unavailable"}
	if r.Reply == nil || *r.Reply != want {
		t.Errorf("reply = %+v, want %+v", r.Reply, want)
	}
	if r.Err == nil || !strings.Contains(r.Err.Error(), "554 5.7.1 Service unavailable") {
		t.Errorf("error %v, want the refusal's text", r.Err)
	}
	_, cmds, _ := lg.snapshot()
	if got := strings.Join(verbs(cmds), " "); got != "EHLO QUIT" {
		t.Errorf("commands = %s, want EHLO (no HELO fallback on 554) then QUIT", got)
	}
}

// c04: a multi-line greeting that pauses before its last line, STARTTLS on
// the last EHLO line. The client reads the whole greeting, upgrades and
// re-reads the capabilities.
func TestCaseC04_MultilineGreetingPauseAndStartTLSLast(t *testing.T) {
	serverTLS, pool := probetest.ServerTLS(t, probetest.Valid)
	var gotAuth string
	sc := script{
		Pause:    400 * time.Millisecond, // the case's 6 s, shortened; the check timeout is longer
		Greeting: []string{"220-mx.example.net ESMTP", "220 mx.example.net ESMTP"},
		EHLO:     []string{"250-mx.example.net", "250-SIZE 10240000", "250-AUTH PLAIN", "250 STARTTLS"},
		EHLOTLS:  []string{"250-mx.example.net", "250-SIZE 10240000", "250 AUTH PLAIN LOGIN"},
		TLS:      serverTLS,
		Handle: func(p *probetest.Peer, line string) bool {
			if rest, ok := strings.CutPrefix(line, "AUTH PLAIN "); ok {
				b, _ := base64.StdEncoding.DecodeString(rest)
				gotAuth = string(b)
				_ = p.Send("235 2.7.0 Authentication successful")
				return true
			}
			return false
		},
	}
	addr, lg := sc.start(t)
	tg := target(t, addr, checks.TLSStartTLS)
	tg.RootCAs = pool
	tg.Username, tg.Password = "webscout", "s3cret"
	ctx := probetest.Timeout(t, 10*time.Second) // longer than the pause
	r := Probe(ctx, tg)
	wantResult(t, r, events.StatusOK, "", "")

	early, cmds, tlsErr := lg.snapshot()
	if early != nil {
		t.Fatalf("the probe wrote during the greeting's pause: %q", early)
	}
	if tlsErr != nil {
		t.Fatalf("server handshake: %v", tlsErr)
	}
	if got := strings.Join(verbs(cmds), " "); got != "EHLO STARTTLS tls:EHLO tls:AUTH tls:QUIT" {
		t.Errorf("commands = %s, want EHLO STARTTLS tls:EHLO tls:AUTH tls:QUIT", got)
	}
	if gotAuth != "\x00webscout\x00s3cret" {
		t.Errorf("AUTH PLAIN response = %q", gotAuth)
	}
	if r.Replies[0] != "220-mx.example.net ESMTP\n220 mx.example.net ESMTP" {
		t.Errorf("greeting = %q, want both lines as one reply", r.Replies[0])
	}
	if got := strings.Join(r.Capabilities, ","); got != "SIZE 10240000,AUTH PLAIN LOGIN" {
		t.Errorf("capabilities = %s, want the list re-read after TLS", got)
	}
	if r.TLS == nil || !r.TLS.Verified || !r.TLS.HostnameMatch || r.Timings.TLSVersion == "" {
		t.Errorf("tls = %+v version %q", r.TLS, r.Timings.TLSVersion)
	}
	if r.Timings.GreetingMS <= 0 || r.Timings.CapsMS <= 0 || r.Timings.TLSMS <= 0 || r.Timings.AuthMS <= 0 ||
		r.Timings.TotalMS < r.Timings.GreetingMS+r.Timings.TLSMS {
		t.Errorf("timings = %+v", r.Timings)
	}
	// The transcript is the whole dialogue in plain text, before and after
	// the upgrade, with the AUTH PLAIN response masked.
	want := []string{
		"S: 220-mx.example.net ESMTP", "S: 220 mx.example.net ESMTP", "C: EHLO scout.monitor.example",
		"S: 250-mx.example.net", "S: 250-SIZE 10240000", "S: 250-AUTH PLAIN", "S: 250 STARTTLS", "C: STARTTLS",
	}
	if len(r.Transcript) < len(want) || strings.Join(r.Transcript[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Errorf("transcript begins\n%s\nwant\n%s", strings.Join(r.Transcript, "\n"), strings.Join(want, "\n"))
	}
	all := strings.Join(r.Transcript, "\n")
	for _, w := range []string{"C: EHLO scout.monitor.example\nS: 250-mx.example.net\nS: 250-SIZE 10240000\nS: 250 AUTH PLAIN LOGIN", "C: AUTH PLAIN ****", "S: 235", "C: QUIT"} {
		if !strings.Contains(all, w) {
			t.Errorf("transcript lacks %q:\n%s", w, all)
		}
	}
	if strings.Contains(all, base64.StdEncoding.EncodeToString([]byte("\x00webscout\x00s3cret"))) {
		t.Errorf("the credentials are in the transcript:\n%s", all)
	}
}

// c06: STARTTLS is offered and answered 220, but no TLS handshake happens.
// The check fails in the TLS phase and reports no certificate.
func TestCaseC06_StartTLSAcceptedButNeverUpgraded(t *testing.T) {
	cases := []struct {
		name    string
		after   func(p *probetest.Peer)
		timeout time.Duration
		classes []string // acceptable classes
	}{
		{"keeps speaking plain text", func(p *probetest.Peer) {
			_ = p.Send("220 2.0.0 Ready to start TLS")
			buf := make([]byte, 512)
			_, _ = p.C.Read(buf) // the ClientHello, taken for a command
			_ = p.Send("500 5.5.2 Error: bad syntax")
			_, _ = p.C.Read(buf)
		}, 10 * time.Second, []string{probe.ClassTLS}},
		{"silent", func(p *probetest.Peer) {
			_ = p.Send("220 2.0.0 Ready to start TLS")
			_, _ = io.Copy(io.Discard, p.C)
		}, 500 * time.Millisecond, []string{probe.ClassTLS}},
		{"plain text injected after the 220", func(p *probetest.Peer) {
			_ = p.Send("220 2.0.0 Ready to start TLS", "250 mx.example.net")
			_, _ = io.Copy(io.Discard, p.C)
		}, 10 * time.Second, []string{probe.ClassProtocol, probe.ClassTLS}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc := script{
				Greeting:      []string{"220 mx.example.net ESMTP"},
				EHLO:          []string{"250-mx.example.net", "250 STARTTLS"},
				AfterStartTLS: tc.after,
			}
			addr, _ := sc.start(t)
			r := Probe(probetest.Timeout(t, tc.timeout), target(t, addr, checks.TLSStartTLS))
			if r.Status() != events.StatusFailed || r.Phase != probe.PhaseTLS || !contains(tc.classes, r.Class) {
				t.Fatalf("status %q class %q phase %q (%v), want failed in tls with class %v", r.Status(), r.Class, r.Phase, r.Err, tc.classes)
			}
			if r.TLS != nil || r.Timings.TLSVersion != "" {
				t.Errorf("certificate data reported without a handshake: %+v %q", r.TLS, r.Timings.TLSVersion)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// goSMTP runs a real go-smtp server with the given TLS configuration,
// behind STARTTLS or (implicit) TLS from the first byte.
func goSMTP(t testing.TB, cfg *tls.Config, implicit bool) string {
	t.Helper()
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return nopSession{}, nil }))
	s.Domain = "mx.example.net"
	s.ReadTimeout, s.WriteTimeout = 30*time.Second, 30*time.Second
	s.TLSConfig = cfg
	s.ErrorLog = stdlog.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if implicit {
		l = tls.NewListener(l, cfg)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	return addr
}

type nopSession struct{}

func (nopSession) Reset()                               {}
func (nopSession) Logout() error                        { return nil }
func (nopSession) Mail(string, *smtp.MailOptions) error { return nil }
func (nopSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (nopSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// Certificate variants against a real go-smtp server, over STARTTLS and
// implicit TLS.
func TestCertificates(t *testing.T) {
	cases := []struct {
		name     string
		cert     probetest.Cert
		trust    bool
		status   string
		class    string
		verified bool
		hostname bool
	}{
		{"valid", probetest.Valid, true, events.StatusOK, "", true, true},
		{"expired", probetest.Expired, true, events.StatusFailed, probe.ClassCertInvalid, false, true},
		{"expiring", probetest.Expiring, true, events.StatusDegraded, probe.ClassCertExpiring, true, true},
		{"wrong host", probetest.WrongHost, true, events.StatusFailed, probe.ClassCertInvalid, true, false},
		{"untrusted CA", probetest.Valid, false, events.StatusFailed, probe.ClassCertInvalid, false, true},
	}
	for _, mode := range []string{checks.TLSStartTLS, checks.TLSImplicit} {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				cfg, pool := probetest.ServerTLS(t, tc.cert)
				addr := goSMTP(t, cfg, mode == checks.TLSImplicit)
				tg := target(t, addr, mode)
				if tc.trust {
					tg.RootCAs = pool
				} else {
					tg.RootCAs = x509.NewCertPool()
				}
				r := Probe(probetest.Context(t), tg)
				phase := ""
				if tc.class != "" {
					phase = probe.PhaseTLS
				}
				wantResult(t, r, tc.status, tc.class, phase)
				if r.TLS == nil {
					t.Fatal("no TLS info after a completed handshake")
				}
				if r.TLS.Verified != tc.verified || r.TLS.HostnameMatch != tc.hostname {
					t.Errorf("verified %v hostname_match %v (%s), want %v %v", r.TLS.Verified, r.TLS.HostnameMatch, r.TLS.VerifyError, tc.verified, tc.hostname)
				}
				switch tc.cert {
				case probetest.Expired:
					if r.TLS.DaysLeft >= 0 {
						t.Errorf("days_left = %d, want negative", r.TLS.DaysLeft)
					}
				case probetest.Expiring:
					if r.TLS.DaysLeft != probetest.ExpiringDays {
						t.Errorf("days_left = %d, want %d", r.TLS.DaysLeft, probetest.ExpiringDays)
					}
				default:
					if r.TLS.DaysLeft < 89 {
						t.Errorf("days_left = %d, want 89 or 90", r.TLS.DaysLeft)
					}
				}
				if r.TLS.PeerNotAfter.IsZero() || r.TLS.Version == "" {
					t.Errorf("tls info incomplete: %+v", r.TLS)
				}
			})
		}
	}
	t.Run("warning off", func(t *testing.T) {
		cfg, pool := probetest.ServerTLS(t, probetest.Expiring)
		tg := target(t, goSMTP(t, cfg, false), checks.TLSStartTLS)
		tg.RootCAs, tg.CertWarningDays = pool, 0
		wantResult(t, Probe(probetest.Context(t), tg), events.StatusOK, "", "")
	})
}

// The happy path and the login against the real go-smtp server of
// pkg/mailtest.
func TestMailtestServer(t *testing.T) {
	plain := mailtest.NewServer(t, mailtest.Options{Domain: "mx.example.net"})
	withTLS := mailtest.NewServer(t, mailtest.Options{Domain: "mx.example.net", TLS: true, Auth: map[string]string{"webscout": "pw"}})
	cases := []struct {
		name     string
		srv      *mailtest.Server
		mode     string
		user, pw string
		status   string
		class    string
		phase    string
		code     int // reply code expected in Result.Reply, 0 for none
	}{
		{"plain, tls none", plain, checks.TLSNone, "", "", events.StatusOK, "", "", 0},
		{"plain, starttls required", plain, checks.TLSStartTLS, "", "", events.StatusFailed, probe.ClassTLS, probe.PhaseTLS, 0},
		{"starttls", withTLS, checks.TLSStartTLS, "", "", events.StatusOK, "", "", 0},
		{"starttls with login", withTLS, checks.TLSStartTLS, "webscout", "pw", events.StatusOK, "", "", 0},
		{"wrong password", withTLS, checks.TLSStartTLS, "webscout", "nope", events.StatusFailed, probe.ClassAuth, probe.PhaseAuth, 535},
		{"login without tls is refused", withTLS, checks.TLSNone, "webscout", "pw", events.StatusFailed, probe.ClassAuth, probe.PhaseAuth, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := target(t, tc.srv.Addr, tc.mode)
			tg.RootCAs = tc.srv.RootCAs
			tg.CertWarningDays = 0 // mailtest certificates are valid for a day only
			tg.Username, tg.Password = tc.user, tc.pw
			r := Probe(probetest.Context(t), tg)
			wantResult(t, r, tc.status, tc.class, tc.phase)
			if tc.code != 0 && (r.Reply == nil || r.Reply.Code != tc.code) {
				t.Errorf("reply = %+v, want code %d", r.Reply, tc.code)
			}
			if tc.status == events.StatusOK {
				if got := r.Replies[len(r.Replies)-1]; !strings.HasPrefix(got, "221") {
					t.Errorf("last reply = %q, want the 221 to QUIT", got)
				}
				if tc.user != "" && r.Timings.AuthMS <= 0 {
					t.Errorf("auth_ms = %v", r.Timings.AuthMS)
				}
			}
			if strings.Contains(strings.Join(r.Replies, "\n"), tc.pw) && tc.pw != "" {
				t.Errorf("the password appears in the replies")
			}
		})
	}
}

// Strict pairing of replies with commands, and the classes of refusals.
func TestStrictReplies(t *testing.T) {
	ok220 := []string{"220 mx.example.net ESMTP"}
	cases := []struct {
		name     string
		sc       script
		mode     string
		status   string
		class    string
		phase    string
		wantCmds string // commands the server saw, "" to skip
	}{
		{"continuation with another code", script{Greeting: []string{"220-mx.example.net", "250 mx.example.net"}},
			checks.TLSNone, events.StatusFailed, probe.ClassProtocol, probe.PhaseGreeting, ""},
		{"malformed greeting", script{Greeting: []string{"hello there"}},
			checks.TLSNone, events.StatusFailed, probe.ClassProtocol, probe.PhaseGreeting, ""},
		{"code outside 2yz..5yz", script{Greeting: []string{"220 ok"}, EHLO: []string{"199 what"}},
			checks.TLSNone, events.StatusFailed, probe.ClassProtocol, probe.PhaseCapabilities, ""},
		{"unsolicited line after the greeting", script{Greeting: []string{"220 mx.example.net ESMTP", "250 surprise"}, EHLO: plainEHLO},
			checks.TLSNone, events.StatusFailed, probe.ClassProtocol, probe.PhaseCapabilities, ""},
		{"unexpected 3xx to EHLO", script{Greeting: ok220, EHLO: []string{"354 go ahead"}},
			checks.TLSNone, events.StatusFailed, probe.ClassProtocol, probe.PhaseCapabilities, ""},
		{"421 greeting is temporary", script{Greeting: []string{"421 4.3.2 Service not available, try later"}},
			checks.TLSNone, events.StatusDegraded, probe.ClassTemporary, probe.PhaseGreeting, "QUIT"},
		{"554 greeting is a refusal", script{Greeting: []string{"554 5.3.2 No SMTP service here"}},
			checks.TLSNone, events.StatusFailed, probe.ClassRefused, probe.PhaseGreeting, "QUIT"},
		{"451 to EHLO is temporary", script{Greeting: ok220, EHLO: []string{"451 4.3.0 Try again"}},
			checks.TLSNone, events.StatusDegraded, probe.ClassTemporary, probe.PhaseCapabilities, "EHLO QUIT"},
		{"EHLO not recognised: HELO", script{Greeting: ok220, EHLO: []string{"502 5.5.2 Error: command not recognized"},
			Handle: func(p *probetest.Peer, line string) bool {
				if probetest.Upper(line) == "HELO" {
					_ = p.Send("250 mx.example.net")
					return true
				}
				return false
			}},
			checks.TLSNone, events.StatusOK, "", "", "EHLO HELO QUIT"},
		{"HELO only, starttls required", script{Greeting: ok220, EHLO: []string{"500 5.5.1 unknown"},
			Handle: func(p *probetest.Peer, line string) bool {
				_ = p.Send("250 mx.example.net")
				return true
			}},
			checks.TLSStartTLS, events.StatusFailed, probe.ClassTLS, probe.PhaseTLS, "EHLO HELO QUIT"},
		{"STARTTLS refused 454 is temporary", script{Greeting: ok220, EHLO: []string{"250-mx", "250 STARTTLS"},
			AfterStartTLS: func(p *probetest.Peer) {
				_ = p.Send("454 4.7.0 TLS not available due to temporary reason")
				_, _ = p.Line()
				_ = p.Send("221 bye")
			}},
			checks.TLSStartTLS, events.StatusDegraded, probe.ClassTemporary, probe.PhaseTLS, "EHLO STARTTLS"},
		{"tls none ignores STARTTLS", script{Greeting: ok220, EHLO: []string{"250-mx", "250 STARTTLS"}},
			checks.TLSNone, events.StatusOK, "", "", "EHLO QUIT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, lg := tc.sc.start(t)
			r := Probe(probetest.Context(t), target(t, addr, tc.mode))
			wantResult(t, r, tc.status, tc.class, tc.phase)
			if tc.wantCmds != "" {
				_, cmds, _ := lg.snapshot()
				if got := strings.Join(verbs(cmds), " "); got != tc.wantCmds {
					t.Errorf("commands = %s, want %s", got, tc.wantCmds)
				}
			}
		})
	}
}

func TestExpectGreeting(t *testing.T) {
	sc := script{Greeting: []string{"220-mx.example.net ESMTP Postfix", "220 second line"}, EHLO: plainEHLO}
	addr, _ := sc.start(t)
	for _, tc := range []struct {
		pattern string
		status  string
	}{
		{`^mx\.example\.net ESMTP`, events.StatusOK},
		{`(?m)^second line$`, events.StatusOK},
		{`Exim`, events.StatusFailed},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			tg := target(t, addr, checks.TLSNone)
			tg.ExpectGreeting = regexpMust(t, tc.pattern)
			r := Probe(probetest.Context(t), tg)
			if r.Status() != tc.status {
				t.Fatalf("status %q (%v), want %q", r.Status(), r.Err, tc.status)
			}
			if tc.status == events.StatusFailed && (r.Class != probe.ClassProtocol || r.Phase != probe.PhaseGreeting) {
				t.Errorf("class %q phase %q", r.Class, r.Phase)
			}
		})
	}
}

type failingResolver struct{}

func (failingResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: "mx.nonexistent.example", IsNotFound: true}
}

func TestConnectionFailures(t *testing.T) {
	silent := mailtest.Script(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	closing := mailtest.Script(t, func(c net.Conn) {})
	silentAfterEHLO, _ := script{Greeting: []string{"220 mx.example.net"}}.start(t) // EHLO gets no reply

	cases := []struct {
		name    string
		tg      probe.Target
		timeout time.Duration
		status  string
		class   string
		phase   string
	}{
		{"connection refused", target(t, mailtest.ClosedAddr(t), checks.TLSNone), 10 * time.Second,
			events.StatusFailed, probe.ClassRefused, probe.PhaseConnect},
		{"name does not resolve", probe.Target{Host: "mx.nonexistent.example", Port: 25, TLS: checks.TLSNone, Resolver: failingResolver{}},
			10 * time.Second, events.StatusFailed, probe.ClassRefused, probe.PhaseDNS},
		{"no greeting before the deadline", target(t, silent, checks.TLSNone), 300 * time.Millisecond,
			events.StatusTimeout, probe.ClassTimeout, probe.PhaseGreeting},
		{"closed before the greeting", target(t, closing, checks.TLSNone), 10 * time.Second,
			events.StatusFailed, probe.ClassRefused, probe.PhaseGreeting},
		{"no answer to EHLO", target(t, silentAfterEHLO, checks.TLSNone), 300 * time.Millisecond,
			events.StatusTimeout, probe.ClassTimeout, probe.PhaseCapabilities},
		{"implicit TLS to a plain server", target(t, silent, checks.TLSImplicit), 300 * time.Millisecond,
			events.StatusFailed, probe.ClassTLS, probe.PhaseTLS},
		{"invalid target", probe.Target{Host: "127.0.0.1", Port: 0, TLS: checks.TLSNone}, 10 * time.Second,
			events.StatusMonitorError, probe.ClassMonitor, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Probe(probetest.Timeout(t, tc.timeout), tc.tg)
			wantResult(t, r, tc.status, tc.class, tc.phase)
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(probetest.Context(t))
		time.AfterFunc(100*time.Millisecond, cancel)
		r := Probe(ctx, target(t, silent, checks.TLSNone))
		wantResult(t, r, events.StatusMonitorError, probe.ClassMonitor, probe.PhaseGreeting)
	})
	t.Run("localhost resolves", func(t *testing.T) {
		addr, _ := script{Greeting: []string{"220 mx.example.net"}, EHLO: plainEHLO}.start(t)
		tg := target(t, addr, checks.TLSNone)
		tg.Host = "localhost"
		r := Probe(probetest.Context(t), tg)
		wantResult(t, r, events.StatusOK, "", "")
		if ap, err := netip.ParseAddrPort(r.Timings.PeerAddress); err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("peer address %q", r.Timings.PeerAddress)
		}
	})
}

func TestEnhancedCode(t *testing.T) {
	cases := []struct {
		lines []string
		code  int
		want  events.SMTPReply
	}{
		{[]string{"5.7.1 Service unavailable"}, 554, events.SMTPReply{Code: 554, Enhanced: "5.7.1", Text: "Service unavailable"}},
		{[]string{"4.7.1 a", "4.7.1 b"}, 451, events.SMTPReply{Code: 451, Enhanced: "4.7.1", Text: "a\nb"}},
		{[]string{"4.7.1 a", "b"}, 451, events.SMTPReply{Code: 451, Text: "4.7.1 a\nb"}},
		{[]string{"2.0.0 wrong class"}, 554, events.SMTPReply{Code: 554, Text: "2.0.0 wrong class"}},
		{[]string{"Service unavailable"}, 554, events.SMTPReply{Code: 554, Text: "Service unavailable"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.lines, "|"), func(t *testing.T) {
			if got := (reply{Code: tc.code, Lines: tc.lines}).event(); *got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func regexpMust(t *testing.T, pattern string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

// BenchmarkProbe measures a whole STARTTLS check (greeting, EHLO,
// STARTTLS, handshake, EHLO, QUIT) against a real go-smtp server on
// loopback, with the mean phase times as extra metrics.
func BenchmarkProbe(b *testing.B) {
	cfg, pool := probetest.ServerTLS(b, probetest.Valid)
	tg := target(b, goSMTP(b, cfg, false), checks.TLSStartTLS)
	tg.RootCAs = pool
	ctx := probetest.Context(b)
	var tlsMS, capsMS float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := Probe(ctx, tg)
		if r.Status() != events.StatusOK {
			b.Fatalf("status %q: %v", r.Status(), r.Err)
		}
		tlsMS += r.Timings.TLSMS
		capsMS += r.Timings.CapsMS
	}
	b.ReportMetric(tlsMS/float64(b.N), "tls_ms")
	b.ReportMetric(capsMS/float64(b.N), "capabilities_ms")
}
