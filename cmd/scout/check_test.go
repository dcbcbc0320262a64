package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probers"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
)

// runCheck runs `scout check args...` with env as its environment and
// stdin as its input; it returns the exit code and standard output.
func runCheck(t *testing.T, env map[string]string, stdin string, args ...string) (int, string) {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cmd := newCheckCmd(func(k string) string { return env[k] }, lookup, strings.NewReader(stdin))
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	code := 0
	if err != nil {
		code = exitCode(err)
		if !errors.Is(err, errSilent) {
			out.WriteString("error: " + err.Error() + "\n")
		}
	}
	return code, out.String()
}

// caFile writes the CA of a certificate made by mailtest (its chain's
// second element) as PEM and returns the file's path.
func caFile(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cfg.Certificates[0].Certificate[1]})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// smtpScript serves a scripted SMTP dialogue on loopback: greeting lines
// (with pause before the last), then EHLO, STARTTLS (upgraded when cfg is
// set), AUTH PLAIN and QUIT answered from the maps.
type smtpScript struct {
	delay       time.Duration // before the greeting; bytes sent meanwhile get a 554
	greeting    []string
	pause       time.Duration // before the greeting's last line
	ehlo        []string
	ehloTLS     []string
	tls         *tls.Config // nil: STARTTLS answered 220 and never upgraded (c06)
	startTLSOff bool
}

func (sc smtpScript) start(t *testing.T) string {
	return mailtest.Script(t, func(c net.Conn) {
		p := &probetest.Peer{C: c}
		if early := p.Quiet(sc.delay); early != nil {
			_ = p.Send("554 5.5.0 Error: SMTP protocol synchronization")
			return
		}
		g := sc.greeting
		if len(g) > 1 {
			_ = p.Send(g[:len(g)-1]...)
			time.Sleep(sc.pause)
		}
		_ = p.Send(g[len(g)-1])
		upgraded := false
		for {
			line, err := p.Line()
			if err != nil {
				return
			}
			switch probetest.Upper(line) {
			case "EHLO":
				if upgraded {
					_ = p.Send(sc.ehloTLS...)
				} else {
					_ = p.Send(sc.ehlo...)
				}
			case "STARTTLS":
				_ = p.Send("220 2.0.0 Ready to start TLS")
				if sc.tls == nil {
					continue // c06: plain text goes on
				}
				if p.StartTLS(sc.tls) != nil {
					return
				}
				upgraded = true
			case "AUTH":
				_ = p.Send("235 2.7.0 Authentication successful")
			case "QUIT":
				_ = p.Send("221 2.0.0 Bye")
				return
			default:
				_ = p.Send("502 5.5.1 not implemented")
			}
		}
	})
}

// pop3STLS serves case c07's POP3 server: STLS listed, the login only
// after it.
func pop3STLS(t *testing.T, cfg *tls.Config) string {
	return mailtest.Script(t, func(c net.Conn) {
		p := &probetest.Peer{C: c}
		_ = p.Send("+OK POP3 ready")
		upgraded := false
		for {
			line, err := p.Line()
			if err != nil {
				return
			}
			switch probetest.Upper(line) {
			case "CAPA":
				if upgraded {
					_ = p.Send("+OK", "USER", "UIDL", "RESP-CODES", ".")
				} else {
					_ = p.Send("+OK", "STLS", "UIDL", "RESP-CODES", ".")
				}
			case "STLS":
				_ = p.Send("+OK begin TLS")
				if p.StartTLS(cfg) != nil {
					return
				}
				upgraded = true
			case "USER", "PASS":
				if !upgraded {
					_ = p.Send("-ERR [AUTH] TLS first")
					continue
				}
				_ = p.Send("+OK")
			case "STAT":
				_ = p.Send("+OK 2 320")
			case "QUIT":
				_ = p.Send("+OK bye")
				return
			default:
				_ = p.Send("-ERR unknown")
			}
		}
	})
}

// TestCheckFieldCases: `scout check` gives, for the servers of
// docs/field-cases.md c03, c04, c06 and c07, the verdict the field-cases
// table asks for, and the same status, class and phase as the sender's
// prober (probers.For and probe.ServiceStatus, what the sender and the
// evaluator run) on the same server; its exit code is the Nagios one.
func TestCheckFieldCases(t *testing.T) {
	valid, _ := probetest.ServerTLS(t, probetest.Valid)
	ca := caFile(t, valid)
	plainEHLO := []string{"250-mx.acme.example", "250 8BITMIME"}
	cases := []struct {
		name      string
		kind      string
		addr      string
		args      []string
		status    string
		class     string
		phase     string
		exit      int
		transcipt string // a line -v must show
	}{{
		name: "c03 server A: delayed greeting, early talkers refused",
		kind: "smtp", addr: smtpScript{delay: 300 * time.Millisecond, greeting: []string{"220 mx.acme.example ESMTP"}, ehlo: plainEHLO}.start(t),
		args:   []string{"--plain"},
		status: events.StatusOK, exit: nagiosOK, transcipt: "S: 220 mx.acme.example ESMTP",
	}, {
		name: "c03 server B: 554 to EHLO",
		kind: "smtp", addr: smtpScript{greeting: []string{"220 mx.acme.example ESMTP"}, ehlo: []string{"554 5.7.1 Service unavailable"}}.start(t),
		status: events.StatusFailed, class: probe.ClassRefused, phase: probe.PhaseCapabilities, exit: nagiosCritical,
		transcipt: "S: 554 5.7.1 Service unavailable",
	}, {
		name: "c04: multi-line greeting with a pause, STARTTLS last",
		kind: "smtp", addr: smtpScript{
			greeting: []string{"220-mx.acme.example ESMTP", "220 mx.acme.example ESMTP"}, pause: 400 * time.Millisecond,
			ehlo:    []string{"250-mx.acme.example", "250-SIZE 10240000", "250-AUTH PLAIN", "250 STARTTLS"},
			ehloTLS: []string{"250-mx.acme.example", "250 AUTH PLAIN LOGIN"}, tls: valid,
		}.start(t),
		args:   []string{"--ca", ca, "--login", "webscout"},
		status: events.StatusOK, exit: nagiosOK, transcipt: "C: AUTH PLAIN ****",
	}, {
		name: "c06: STARTTLS accepted, never upgraded",
		kind: "smtp", addr: smtpScript{greeting: []string{"220 mx.acme.example ESMTP"}, ehlo: []string{"250-mx.acme.example", "250 STARTTLS"}}.start(t),
		args:   []string{"--timeout", "3s"},
		status: events.StatusFailed, class: probe.ClassTLS, phase: probe.PhaseTLS, exit: nagiosCritical,
		transcipt: "S: 220 2.0.0 Ready to start TLS",
	}, {
		name: "c07 IMAP: LOGINDISABLED and STARTTLS",
		kind: "imap", addr: probetest.IMAPServer(t, valid, false),
		args:   []string{"--ca", ca, "--login", probetest.IMAPUser},
		status: events.StatusOK, exit: nagiosOK, transcipt: " LOGIN ****",
	}, {
		name: "c07 POP3: STLS before USER/PASS",
		kind: "pop3", addr: pop3STLS(t, valid),
		args:   []string{"--ca", ca, "--login", "webscout"},
		status: events.StatusOK, exit: nagiosOK, transcipt: "C: PASS ****",
	}}
	env := map[string]string{"SCOUT_CHECK_PASSWORD": probetest.IMAPPassword}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{tc.kind, tc.addr, "--json", "-v"}, tc.args...)
			code, out := runCheck(t, env, "", args...)
			var rep checkReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("output is not the JSON report: %v\n%s", err, out)
			}
			if rep.Status != tc.status || rep.ErrorClass != tc.class || rep.Phase != tc.phase || code != tc.exit || rep.ExitCode != code {
				t.Errorf("status %q class %q phase %q exit %d (report %d), want %q %q %q exit %d\n%s",
					rep.Status, rep.ErrorClass, rep.Phase, code, rep.ExitCode, tc.status, tc.class, tc.phase, tc.exit, out)
			}
			if !strings.Contains(strings.Join(rep.Transcript, "\n"), tc.transcipt) {
				t.Errorf("transcript lacks %q:\n%s", tc.transcipt, strings.Join(rep.Transcript, "\n"))
			}
			if strings.Contains(out, probetest.IMAPPassword) {
				t.Errorf("the password is in the output:\n%s", out)
			}

			// The sender's prober on the same server, judged as the
			// evaluator judges it.
			host, port, _ := net.SplitHostPort(tc.addr)
			n, _ := strconv.Atoi(port)
			tg := probe.Target{Host: host, Port: n, TLS: rep.TLSMode, CertWarningDays: checks.DefaultCertWarningDays}
			if tg.TLS == checks.TLSNone {
				tg.CertWarningDays = 0
			} else {
				var err error
				if tg.RootCAs, err = (checkOptions{caFile: ca}).roots(); err != nil {
					t.Fatal(err)
				}
			}
			if strings.Contains(strings.Join(tc.args, " "), "--login") {
				tg.Username, tg.Password = "webscout", probetest.IMAPPassword
			}
			timeout := checks.DefaultService.Timeout
			if slices.Contains(tc.args, "--timeout") {
				timeout = 3 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			r := probers.For(tc.kind)(ctx, tg)
			cancel()
			if got := probe.ServiceStatus(r.Class, r.Timings.TotalMS, checks.DefaultService.Slow); got != rep.Status || r.Class != rep.ErrorClass || r.Phase != rep.Phase {
				t.Errorf("the sender's prober: %s %q %q; scout check: %s %q %q", got, r.Class, r.Phase, rep.Status, rep.ErrorClass, rep.Phase)
			}
		})
	}
}

// TestCheckTextAndExitCodes: the first line is the plugin's status line
// with performance data; a certificate about to expire and a slow
// dialogue are WARNING (1); a check that cannot start is UNKNOWN (3) with
// the reason on standard output.
func TestCheckTextAndExitCodes(t *testing.T) {
	expiring, _ := probetest.ServerTLS(t, probetest.Expiring)
	tlsAddr := smtpScript{greeting: []string{"220 mx.acme.example ESMTP"}, ehlo: []string{"250-mx.acme.example", "250 STARTTLS"},
		ehloTLS: []string{"250-mx.acme.example", "250 8BITMIME"}, tls: expiring}.start(t)
	plain := smtpScript{greeting: []string{"220 mx.acme.example ESMTP"}, ehlo: []string{"250-mx.acme.example", "250 8BITMIME"}}.start(t)

	code, out := runCheck(t, nil, "", "smtp", tlsAddr, "--ca", caFile(t, expiring))
	first, _, _ := strings.Cut(out, "\n")
	if code != nagiosWarning || !strings.HasPrefix(first, "SMTP WARNING - "+tlsAddr+" degraded in ") ||
		!strings.Contains(first, "expires in 5 days") || !strings.Contains(first, " | time=") {
		t.Errorf("expiring certificate: exit %d, first line %q", code, first)
	}
	if !strings.Contains(out, "  certificate   CN=127.0.0.1") || !strings.Contains(out, "(5 days), verified") {
		t.Errorf("no certificate line:\n%s", out)
	}
	if strings.Contains(out, "dialogue") {
		t.Errorf("the dialogue is printed without -v:\n%s", out)
	}

	code, out = runCheck(t, nil, "", "smtp", plain, "--plain", "--slow", "1ns")
	if first, _, _ := strings.Cut(out, "\n"); code != nagiosWarning || !strings.HasPrefix(first, "SMTP WARNING - "+plain+" slow in ") ||
		!strings.Contains(first, ";0.000;30.000;0 ") || !strings.Contains(out, "  phases        connect ") {
		t.Errorf("slow: exit %d\n%s", code, out)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"pop4", plain}, nil, `kind "pop4": give smtp, imap or pop3`},
		{[]string{"smtp"}, nil, "give the kind (smtp, imap or pop3) and HOST[:PORT]"},
		{[]string{"smtp", plain, "--tls", "--plain"}, nil, "give one of --starttls, --tls and --plain"},
		{[]string{"smtp", "127.0.0.1:99999"}, nil, `port "99999" is not a number between 1 and 65535`},
		{[]string{"imap", plain, "--login", "webscout"}, nil, "the password variable SCOUT_CHECK_PASSWORD is not set or empty"},
		{[]string{"imap", plain, "--login", "webscout", "--password-env", "PW"}, map[string]string{"PW": ""}, "the password variable PW is not set or empty"},
		{[]string{"smtp", plain, "--expect-greeting", "("}, nil, "--expect-greeting: error parsing regexp"},
		{[]string{"smtp", plain, "--ca", "/nonexistent/ca.pem"}, nil, "--ca: open /nonexistent/ca.pem"},
	} {
		code, out := runCheck(t, tc.env, "", tc.args...)
		if code != nagiosUnknown || !strings.HasPrefix(out, "CHECK UNKNOWN - ") || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, output %q, want 3 and %q", tc.args, code, out, tc.want)
		}
	}
	if code, out := runCheck(t, nil, "", "smtp", plain, "--bogus"); code != nagiosUnknown || !strings.Contains(out, "unknown flag: --bogus") {
		t.Errorf("unknown flag: exit %d, output %q", code, out)
	}
	if code, out := runCheck(t, nil, "", "smtp", plain, "--timeot=5s"); code != nagiosUnknown || !strings.Contains(out, "(did you mean --timeout?)") {
		t.Errorf("mistyped flag: exit %d, output %q", code, out)
	}
}

// TestCheckPasswordStdin: --password-stdin reads the first line of
// standard input; the password reaches the server and not the output.
func TestCheckPasswordStdin(t *testing.T) {
	valid, _ := probetest.ServerTLS(t, probetest.Valid)
	addr := pop3STLS(t, valid)
	code, out := runCheck(t, nil, "pop-pass-7\n", "pop3", addr, "--ca", caFile(t, valid), "--login", "webscout", "--password-stdin", "-v")
	if code != nagiosOK || !strings.Contains(out, "C: PASS ****") || !strings.Contains(out, "mailbox       maildrop: 2 messages") {
		t.Errorf("exit %d\n%s", code, out)
	}
	if strings.Contains(out, "pop-pass-7") {
		t.Errorf("the password is in the output:\n%s", out)
	}
	if code, out := runCheck(t, nil, "", "pop3", addr, "--login", "webscout", "--password-stdin"); code != nagiosUnknown ||
		!strings.Contains(out, "--password-stdin: no password on standard input") {
		t.Errorf("empty stdin: exit %d %q", code, out)
	}
}

// TestCheckFromChecksFile: --checks FILE ID runs the file's check as the
// sender does: its port, TLS mode, login through password_env and its slow
// threshold; a missing variable is UNKNOWN naming the check and the
// variable; a round-trip check is refused.
func TestCheckFromChecksFile(t *testing.T) {
	valid, _ := probetest.ServerTLS(t, probetest.Valid)
	addr := probetest.IMAPServer(t, valid, true) // implicit TLS
	host, port, _ := net.SplitHostPort(addr)
	file := filepath.Join(t.TempDir(), "checks.yaml")
	yaml := `sites: [eu-west]
checks:
  - {id: acme-imap, customer: acme, kind: imap, host: ` + host + `, port: ` + port + `, tls: implicit, username: webscout, password_env: ACME_IMAP_PASSWORD, slow: 1ms, timeout: 5s}
  - {id: acme-rt, customer: acme, kind: roundtrip, target: webscout@acme.example}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := checks.Load(file); err != nil {
		t.Fatalf("the test's check file: %v", err)
	}
	ca := caFile(t, valid)
	code, out := runCheck(t, map[string]string{"ACME_IMAP_PASSWORD": probetest.IMAPPassword}, "", "--checks", file, "acme-imap", "--ca", ca, "--json", "-v")
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// slow: 1ms in the file makes the passing dialogue slow: WARNING.
	if code != nagiosWarning || rep.Status != events.StatusSlow || rep.TLSMode != checks.TLSImplicit || rep.Target != addr ||
		rep.Mailbox == nil || rep.Mailbox.Messages != 1 {
		t.Errorf("exit %d report %+v", code, rep)
	}
	code, out = runCheck(t, nil, "", "--checks", file, "acme-imap", "--ca", ca)
	if code != nagiosUnknown || !strings.Contains(out, `check "acme-imap": password_env: environment variable ACME_IMAP_PASSWORD is not set or empty`) {
		t.Errorf("no password: exit %d %q", code, out)
	}
	if code, out := runCheck(t, nil, "", "--checks", file, "acme-rt"); code != nagiosUnknown || !strings.Contains(out, `check "acme-rt" is a roundtrip check`) {
		t.Errorf("round trip: exit %d %q", code, out)
	}
	if code, out := runCheck(t, nil, "", "--checks", file, "nope"); code != nagiosUnknown || !strings.Contains(out, `no check "nope"`) {
		t.Errorf("unknown id: exit %d %q", code, out)
	}
}

// TestCheckTarget: the port and TLS mode defaults.
func TestCheckTarget(t *testing.T) {
	for _, tc := range []struct {
		args []string
		o    checkOptions
		addr string
		mode string
	}{
		{[]string{"smtp", "mx.acme.example"}, checkOptions{}, "mx.acme.example:25", checks.TLSStartTLS},
		{[]string{"smtp", "mx.acme.example"}, checkOptions{implicitTLS: true}, "mx.acme.example:465", checks.TLSImplicit},
		{[]string{"IMAP", "imap.acme.example:993"}, checkOptions{}, "imap.acme.example:993", checks.TLSImplicit},
		{[]string{"pop3", "[::1]:995"}, checkOptions{startTLS: true}, "[::1]:995", checks.TLSStartTLS},
		{[]string{"pop3", "::1"}, checkOptions{plain: true}, "[::1]:110", checks.TLSNone},
		{[]string{"imap", "[2001:db8::1]"}, checkOptions{}, "[2001:db8::1]:143", checks.TLSStartTLS},
	} {
		tc.o.timeout = time.Second
		_, tg, _, _, err := tc.o.target(tc.args, nil, nil)
		if err != nil || tg.Addr() != tc.addr || tg.TLS != tc.mode {
			t.Errorf("%v %+v: %s %s %v, want %s %s", tc.args, tc.o, tg.Addr(), tg.TLS, err, tc.addr, tc.mode)
		}
	}
}
