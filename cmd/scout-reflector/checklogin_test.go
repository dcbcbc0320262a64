package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emersion/go-imap/v2"
)

// checkLoginSetup is an IMAP server (plain text, loopback), an SMTP server
// with STARTTLS, both taking bearer tokens, the token endpoint, and a
// reflector.yaml for them (IMAP XOAUTH2, SMTP OAUTHBEARER with its own
// block).
type checkLoginSetup struct {
	f    *fixture
	imap *mailtest.IMAPServer
	smtp *mailtest.Server
	idp  *testIDP
	cfg  string
}

func newCheckLogin(t *testing.T, allowIMAP bool, smtpTokens map[string]string, output string) *checkLoginSetup {
	t.Helper()
	srv := mailtest.NewIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}})
	srv.Deliver(freshProbe(t, "cccccccccccccccccccccccc"), time.Now())
	if smtpTokens == nil {
		smtpTokens = map[string]string{}
		for i := 1; i < 100; i++ {
			smtpTokens[fmt.Sprintf("tok-%d", i)] = mailtest.IMAPUser
		}
	}
	smtpSrv := mailtest.NewServer(t, mailtest.Options{TLS: true, Tokens: smtpTokens, Domain: "smtp.acme.example"})
	onIssue := srv.AllowToken
	if !allowIMAP {
		onIssue = nil
	}
	p := newTestIDP(t, time.Hour, onIssue)
	f := newFixture(t, 0)
	secretFile := filepath.Join(f.home, "client-secret")
	writeFile(t, secretFile, testSecret+"\n", 0o600)
	ca := filepath.Join(f.home, "ca.pem")
	writeFile(t, ca, string(smtpSrv.CAPEM), 0o644)
	cfg := filepath.Join(f.home, "reflector.yaml")
	writeFile(t, cfg, fmt.Sprintf(`key_file: %s
mailboxes: [%s]
tls_ca_file: %s
output: %s
imap:
  addr: %s
  tls: none
  username: %s
  oauth:
    provider: microsoft
    token_url: %s
    client_id: %s
    client_secret_file: %s
smtp:
  addr: %s
  tls: starttls
  username: %s
  oauth:
    provider: microsoft
    token_url: %s
    client_id: %s
    client_secret_file: %s
    mechanism: oauthbearer
`, f.keyFile, mailbox, ca, output, srv.Addr, mailtest.IMAPUser, p.tokenURL(), testClientID, secretFile,
		smtpSrv.Addr, mailtest.IMAPUser, p.tokenURL(), testClientID, secretFile), 0o644)
	return &checkLoginSetup{f: f, imap: srv, smtp: smtpSrv, idp: p, cfg: cfg}
}

func (c *checkLoginSetup) run(t *testing.T) result {
	t.Helper()
	r := c.f.run(nil, nil, "check-login", "--config", c.cfg)
	t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	for _, secret := range []string{testSecret, "tok-1", "tok-2", "signature-"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("the output shows %q", secret)
		}
	}
	return r
}

func wantLines(t *testing.T, out string, wants ...string) {
	t.Helper()
	flat := strings.Join(strings.Fields(out), " ")
	for _, w := range wants {
		if !strings.Contains(flat, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func TestCheckLogin(t *testing.T) {
	c := newCheckLogin(t, true, nil, "smtp")
	r := c.run(t)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0", r.code)
	}
	wantLines(t, r.stdout,
		"imap greeting: * OK", "imap capabilities:", "AUTH=XOAUTH2", "imap login: AUTHENTICATE XOAUTH2 (OAuth, provider microsoft)",
		"imap token: issued, valid for", "imap auth: accepted", "imap folder: INBOX: 1 messages",
		"smtp greeting: 220 smtp.acme.example", "smtp login: AUTH OAUTHBEARER as webscout", "smtp token: issued",
		"smtp tls: TLS1.3", "verified true", "smtp auth: accepted", "all logins work")
	if c.smtp.Messages() != nil {
		t.Error("check-login sent a message")
	}
	if ids := c.imap.UIDs(); len(ids) != 1 {
		t.Errorf("the folder holds %v after check-login, want the one message untouched", ids)
	}
}

func TestCheckLoginRevokedSecret(t *testing.T) {
	c := newCheckLogin(t, true, nil, "smtp")
	c.idp.setSecret("rotated by the admin")
	r := c.run(t)
	if r.code != exitIgnored {
		t.Fatalf("exit %d, want 1", r.code)
	}
	wantLines(t, r.stdout, "imap token: none: token endpoint: invalid_client: AADSTS7000215",
		"imap token hint: the client secret is wrong: use the secret's Value (not its Secret ID)",
		"smtp token: none: token endpoint: invalid_client: AADSTS7000215")
	if n := c.imap.Commands("AUTHENTICATE"); n != 0 {
		t.Errorf("%d AUTHENTICATE without a token", n)
	}
}

func TestCheckLoginTokenRefusedByExchange(t *testing.T) {
	c := newCheckLogin(t, false, map[string]string{"another": mailtest.IMAPUser}, "smtp")
	r := c.run(t)
	if r.code != exitIgnored {
		t.Fatalf("exit %d, want 1", r.code)
	}
	wantLines(t, r.stdout, "imap problem: auth: the server replied imap: NO [AUTHENTICATIONFAILED]", "XOAUTH2 refused: status",
		"imap hint: Exchange Online refused the token.", "New-ServicePrincipal -AppId <client_id>",
		"Add-MailboxPermission -Identity webscout -User <service principal id> -AccessRights FullAccess", "IMAP.AccessAsApp",
		"smtp problem: auth: the server replied \"535 5.7.8 authentication failed\"",
		"smtp hint: 535 from SMTP:", "Set-CASMailbox -Identity webscout -SmtpClientAuthenticationDisabled $false", "SMTP.SendAsApp")
}

// A JWT's claims are shown (never the token), and a Microsoft token
// without the IMAP.AccessAsApp role is pointed out.
func TestCheckLoginShowsTheTokensRoles(t *testing.T) {
	c := newCheckLogin(t, true, nil, "sendmail")
	c.idp.jwt = map[string]any{"aud": "https://outlook.office365.com", "tid": "contoso-tenant-id", "roles": []string{"SMTP.SendAsApp"}}
	r := c.run(t)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0 (the login itself works)", r.code)
	}
	wantLines(t, r.stdout, "imap token aud: https://outlook.office365.com", "imap token tid: contoso-tenant-id",
		"imap token roles: SMTP.SendAsApp", "imap token warning: the token has no role IMAP.AccessAsApp", "output: sendmail (no login to check)")
	if strings.Contains(r.stdout, "eyJ") {
		t.Error("the output shows a JWT")
	}
}

// Without OAuth, check-login uses the password: LOGIN, and a wrong one
// gets the password hint.
func TestCheckLoginWithAPassword(t *testing.T) {
	srv := mailtest.NewIMAPServer(t, nil)
	f := newFixture(t, 0)
	pw := filepath.Join(f.home, "imap-password")
	for _, tc := range []struct {
		password string
		code     int
		want     []string
	}{
		{mailtest.IMAPPassword, 0, []string{"imap login: LOGIN with a password", "imap folder: INBOX: 0 messages", "output: sendmail (no login to check)", "all logins work"}},
		{"wrong", exitIgnored, []string{"imap problem: auth: the server replied", "imap hint: the server refused the user name or password"}},
	} {
		writeFile(t, pw, tc.password+"\n", 0o600)
		r := f.run(nil, nil, "check-login", "--key-file", f.keyFile, "--imap", srv.Addr, "--imap-tls", "none", "--imap-user", mailtest.IMAPUser,
			"--imap-password-file", pw, "--output", "sendmail")
		t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != tc.code {
			t.Fatalf("exit %d, want %d", r.code, tc.code)
		}
		wantLines(t, r.stdout, tc.want...)
		if strings.Contains(r.stdout+r.stderr, tc.password) && tc.password != "wrong" {
			t.Error("the output shows the password")
		}
	}
}
