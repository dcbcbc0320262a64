//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/checktarget"
	"github.com/emailscout/emailscout/pkg/probe/imapprobe"
	"github.com/emailscout/emailscout/pkg/probe/pop3probe"
	"github.com/emailscout/emailscout/pkg/probe/smtpprobe"
	"github.com/emailscout/emailscout/pkg/probemail"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// oauthReflectorConfig writes the reflector.yaml of imap mode with an
// OAuth login (client credentials at p, the secret in a 0600 file) to
// Dovecot, shared by the SMTP output to Postfix (SMTP AUTH through
// Dovecot's auth service).
func oauthReflectorConfig(t *testing.T, p *idp, mech string) string {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys")
	b, err := os.ReadFile(filepath.Join(stackDir, "probe-keys"))
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "client-secret")
	for f, content := range map[string][]byte{keyFile: b, secretFile: []byte(appSecret + "\n")} {
		if err := os.WriteFile(f, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "reflector.yaml")
	yaml := fmt.Sprintf(`key_file: %s
state_dir: %s
mailboxes: [%s]
tls_ca_file: %s
imap:
  addr: %s
  tls: starttls
  username: %s
  renew_before_expiry: 3s
  oauth:
    provider: microsoft
    token_url: %s
    client_id: %s
    client_secret_file: %s
    mechanism: %s
smtp:
  addr: 127.0.0.1:25
`, keyFile, filepath.Join(dir, "state"), imapBox, filepath.Join(stackDir, "cert.pem"), imapAddr, oauthUser,
		p.tokenURL(), appID, secretFile, mech)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// reflectionOf waits for the reflection of p at ret (the folder may hold
// probes of earlier runs, answered too) and checks it as
// env.checkReflection does, failing t (a subtest) rather than e's test.
func reflectionOf(t *testing.T, e *env, ret *returnServer, p probemail.Probe) received {
	t.Helper()
	for {
		for _, m := range ret.messages() {
			r, err := probemail.ParseReturned(m.Data)
			if err != nil || r.TestID != p.TestID {
				continue
			}
			if !r.Reflected() || r.AutoSubmitted != "auto-replied" || r.ProbeTo != imapBox || len(m.To) != 1 || m.To[0] != returnAddr {
				t.Fatalf("not the reflection of %s: %+v to %v", p.TestID, r, m.To)
			}
			if _, _, err := probemail.Verify(r.HeaderValue, r.ProbeTo, e.keys); err != nil {
				t.Fatalf("returned probe header does not verify: %v", err)
			}
			return m
		}
		select {
		case <-ret.got:
		case <-e.ctx.Done():
			t.Fatalf("no reflection of %s", p.TestID)
		}
	}
}

// startReflector runs `scout-reflector imap --config cfg` until the test
// ends; wait stops it (SIGINT) and returns its exit status.
func startReflector(t *testing.T, ctx context.Context, cfg string) (logs *lockedBuffer, wait func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	logs = &lockedBuffer{}
	cmd := exec.CommandContext(ctx, reflectorBin, "imap", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	code := -1
	wait = func() int {
		once.Do(func() {
			cancel()
			err := cmd.Wait() // ctx.Err() once the process is signalled, whatever its status
			code = cmd.ProcessState.ExitCode()
			t.Logf("scout-reflector imap (exit status %d, %v):\n%s", code, err, logs.String())
		})
		return code
	}
	t.Cleanup(func() { _ = wait() })
	return logs, wait
}

// TestOAuthReflectorThroughDovecot: scout-reflector imap logs in to
// Dovecot with XOAUTH2 and, separately, OAUTHBEARER (tokens of the
// client credentials endpoint, checked by Dovecot's oauth2 passdb),
// sends each reflection through Postfix with SMTP AUTH and the same
// login, and answers every probe Postfix delivered. With XOAUTH2 the
// tokens live 20 s: the reflector renews its session 3 s before its
// token expires, the new session takes a fresh token, Dovecot is never
// shown an expired one, and no probe is lost across the switches.
func TestOAuthReflectorThroughDovecot(t *testing.T) {
	e := setup(t)
	p := startIDP(t, 20*time.Second)
	for _, tc := range []struct {
		mech string
		run  time.Duration // probes are sent until then
	}{{mailauth.XOAuth2, 32 * time.Second}, {mailauth.OAuthBearer, 0}} {
		t.Run(tc.mech, func(t *testing.T) {
			ret := listenReturn(t, "127.0.0.1:0")
			e.route(ret.Addr)
			logs, wait := startReflector(t, e.ctx, oauthReflectorConfig(t, p, tc.mech))
			t0 := time.Now()
			var rtts []time.Duration
			for i := 0; i == 0 || time.Since(t0) < tc.run || i < 3; i++ {
				pr, msg := e.probe(imapBox, e.key)
				e.submit(imapBox, msg)
				got := reflectionOf(t, e, ret, pr)
				rtts = append(rtts, got.At.Sub(pr.StartedAt))
				if tc.run > 0 {
					time.Sleep(2 * time.Second)
				}
			}
			if code := wait(); code != 0 {
				t.Errorf("scout-reflector exited with status %d, want 0 after SIGINT", code)
			}
			out := logs.String()
			if strings.Contains(out, appSecret) {
				t.Error("the reflector's log shows the client secret")
			}
			tokens, expired := p.logins()
			if expired > 0 {
				t.Errorf("Dovecot was shown an expired token %d times", expired)
			}
			if tc.run > 0 {
				if !strings.Contains(out, "logging in again before the token expires") || len(tokens) < 3 {
					t.Errorf("%d distinct tokens; want the session renewed with fresh tokens", len(tokens))
				}
			}
			for _, tok := range tokens {
				if strings.Contains(out, tok) {
					t.Error("the reflector's log shows an access token")
				}
			}
			slices.Sort(rtts)
			n := len(rtts)
			fmt.Printf("e2e: round trip Postfix -> Maildir -> Dovecot IDLE -> scout-reflector imap (OAuth %s, 20 s tokens) -> SMTP AUTH %s -> Postfix -> return server: rtt min %v, median %v, max %v (n=%d, none lost, %d distinct tokens so far)\n",
				strings.ToUpper(tc.mech), strings.ToUpper(tc.mech), rtts[0].Round(time.Millisecond), rtts[n/2].Round(time.Millisecond),
				rtts[n-1].Round(time.Millisecond), n, len(tokens))
		})
	}
	if b := dovecotLog(t); !strings.Contains(b, "method=XOAUTH2") || !strings.Contains(b, "method=OAUTHBEARER") {
		t.Errorf("dovecot.log shows no XOAUTH2 and OAUTHBEARER logins")
	}
}

// TestOAuthReflectorRevokedSecret: with a revoked client secret,
// scout-reflector imap stops at once with exit 78 (a configuration
// error) and a log line naming the provider's AADSTS7000215, never the
// secret; Dovecot is never asked.
func TestOAuthReflectorRevokedSecret(t *testing.T) {
	e := setup(t)
	p := startIDP(t, time.Hour)
	p.revoke()
	cfg := oauthReflectorConfig(t, p, mailauth.XOAuth2)
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, reflectorBin, "imap", "--config", cfg).CombinedOutput()
	t.Logf("scout-reflector imap: %v\n%s", err, out)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 78 {
		t.Fatalf("exit %v, want 78", err)
	}
	if !bytes.Contains(out, []byte("token endpoint: invalid_client: AADSTS7000215: Invalid client secret provided.")) ||
		bytes.Contains(out, []byte(appSecret)) {
		t.Errorf("want the provider's AADSTS7000215 and never the secret")
	}
	if tokens, _ := p.logins(); len(tokens) != 0 {
		t.Errorf("Dovecot introspected %v", tokens)
	}
}

// TestOAuthServiceChecksAgainstDovecot: IMAP, POP3 and SMTP service checks
// with an oauth block (as the sender runs them: checktarget.Logins, the secret
// read through a lookup function) log in to Dovecot's IMAP and POP3 and
// to Postfix's SMTP AUTH with XOAUTH2 and OAUTHBEARER after STARTTLS; one
// token serves all runs of a check. With the secret revoked, the check is
// class credentials (monitor_error, never an incident) and the servers
// are not contacted.
func TestOAuthServiceChecksAgainstDovecot(t *testing.T) {
	e := setup(t)
	p := startIDP(t, time.Hour)
	port := func(addr string) int {
		_, s, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(s)
		return n
	}
	kinds := []struct {
		kind  string
		port  int
		probe func(context.Context, probe.Target) probe.Result
	}{
		{events.KindIMAP, port(imapAddr), imapprobe.Probe},
		{events.KindPOP3, port("127.0.0.1:" + envOr("SCOUT_POP3_PORT", "110")), pop3probe.Probe},
		{events.KindSMTP, 25, smtpprobe.Probe},
	}
	lookup := func(k string) (string, bool) { return appSecret, k == "ACME_CLIENT_SECRET" }
	check := func(kind string, port int, mech string) *checks.Check {
		return &checks.Check{ID: "acme-" + kind + "-" + mech, Kind: kind, Service: &checks.Service{Host: "127.0.0.1", Port: port,
			TLS: checks.TLSStartTLS, Username: oauthUser, OAuth: &checks.OAuth{Provider: checks.OAuthMicrosoft, TokenURL: p.tokenURL(),
				ClientID: appID, ClientSecretEnv: "ACME_CLIENT_SECRET", Mechanism: mech}}}
	}
	logins := checktarget.NewLogins(nil, nil)
	for _, k := range kinds {
		for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
			c := check(k.kind, k.port, mech)
			for run := range 2 {
				tg, err := logins.Target(c, lookup)
				if err != nil {
					t.Fatal(err)
				}
				tg.RootCAs = e.cas
				r := k.probe(e.ctx, tg)
				t.Logf("%s %s run %d: class %q phase %q err %v, auth %.1f ms, mailbox %+v", k.kind, mech, run, r.Class, r.Phase, r.Err, r.Timings.AuthMS, r.Mailbox)
				if r.Class != "" || r.Timings.AuthMS <= 0 || r.TLS == nil {
					t.Errorf("%s %s: class %q phase %q err %v; replies %q", k.kind, mech, r.Class, r.Phase, r.Err, r.Replies)
				}
				if k.kind != events.KindSMTP && r.Mailbox == nil {
					t.Errorf("%s %s: no mailbox phase", k.kind, mech)
				}
			}
		}
	}
	p.mu.Lock()
	issued := len(p.issued)
	p.mu.Unlock()
	if n := issued; n != len(kinds)*2 {
		t.Errorf("%d tokens issued for %d checks run twice each, want one per check", n, len(kinds)*2)
	}

	p.revoke()
	fresh := checktarget.NewLogins(nil, nil)
	for _, k := range kinds {
		tg, err := fresh.Target(check(k.kind, k.port, mailauth.XOAuth2), lookup)
		if err != nil {
			t.Fatal(err)
		}
		tg.RootCAs = e.cas
		r := k.probe(e.ctx, tg)
		t.Logf("%s, revoked secret: class %q phase %q err %v", k.kind, r.Class, r.Phase, r.Err)
		if r.Class != probe.ClassCredentials || r.Status() != events.StatusMonitorError || len(r.Replies) != 0 ||
			!strings.Contains(r.Err.Error(), "AADSTS7000215") || strings.Contains(r.Err.Error(), appSecret) {
			t.Errorf("%s, revoked secret: class %q status %s err %v replies %d; want credentials, monitor_error, no dialogue",
				k.kind, r.Class, r.Status(), r.Err, len(r.Replies))
		}
	}
}

// TestOAuthCheckLoginAgainstDovecot: `scout-reflector check-login` with the
// OAuth configuration logs in to Dovecot (AUTHENTICATE, EXAMINE) and to
// Postfix (EHLO, STARTTLS, AUTH) and exits 0; with the secret revoked it
// exits 1 and names AADSTS7000215 with its hint, never the secret.
func TestOAuthCheckLoginAgainstDovecot(t *testing.T) {
	e := setup(t)
	p := startIDP(t, time.Hour)
	cfg := oauthReflectorConfig(t, p, mailauth.XOAuth2)
	out, err := exec.CommandContext(e.ctx, reflectorBin, "check-login", "--config", cfg).CombinedOutput()
	t.Logf("check-login: %v\n%s", err, out)
	flat := strings.Join(strings.Fields(string(out)), " ")
	for _, want := range []string{"imap greeting: * OK", "AUTH=XOAUTH2", "imap auth: accepted", "imap folder: INBOX:",
		"smtp tls: TLS1.3", "smtp auth: accepted", "all logins work"} {
		if !strings.Contains(flat, want) {
			t.Errorf("check-login output lacks %q", want)
		}
	}
	if err != nil {
		t.Errorf("check-login: %v, want exit 0", err)
	}
	p.revoke()
	out, err = exec.CommandContext(e.ctx, reflectorBin, "check-login", "--config", cfg).CombinedOutput()
	t.Logf("check-login, revoked: %v\n%s", err, out)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !bytes.Contains(out, []byte("AADSTS7000215")) ||
		!bytes.Contains(out, []byte("use the secret's Value")) || bytes.Contains(out, []byte(appSecret)) {
		t.Errorf("check-login with a revoked secret: %v; want exit 1 naming AADSTS7000215 with its hint", err)
	}
}
