package imapprobe

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/checktarget"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
)

// oauthTarget is a target on srv that logs in as mailtest.IMAPUser with
// tokens of the endpoint.
func oauthTarget(t *testing.T, srv *mailtest.IMAPServer, e *probetest.TokenEndpoint, mech string) probe.Target {
	t.Helper()
	login, err := mailauth.New(mailauth.Config{Provider: mailauth.ProviderMicrosoft, TokenURL: e.URL, ClientID: probetest.ClientID,
		ClientSecret: probetest.ClientSecret, Mechanism: mech}, mailtest.IMAPUser, mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(srv.Addr, ":")
	p, _ := strconv.Atoi(port)
	return probe.Target{Host: host, Port: p, TLS: checks.TLSNone, Username: mailtest.IMAPUser, Auth: login}
}

func TestOAuthLogin(t *testing.T) {
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			srv := mailtest.NewIMAPServer(t, nil)
			srv.Deliver([]byte("From: a@example.net\r\nSubject: hi\r\n\r\nhi\r\n"), time.Now())
			e := probetest.NewTokenEndpoint(t, srv.AllowToken)
			r := Probe(probetest.Context(t), oauthTarget(t, srv, e, mech))
			if r.Class != "" || r.Mailbox == nil || r.Mailbox.Messages != 1 || r.Mailbox.Name != "INBOX" {
				t.Fatalf("class %q phase %q err %v mailbox %+v; replies %q", r.Class, r.Phase, r.Err, r.Mailbox, r.Replies)
			}
			if n := srv.Commands("AUTHENTICATE"); n != 1 || srv.Commands("LOGIN") != 0 {
				t.Errorf("AUTHENTICATE %d, LOGIN %d", n, srv.Commands("LOGIN"))
			}
			if used := srv.TokensUsed(); len(used) != 1 || used[0] != "tok-1" {
				t.Errorf("tokens used %v", used)
			}
			for _, l := range r.Replies {
				if strings.Contains(l, "tok-1") {
					t.Errorf("a reply shows the token: %q", l)
				}
			}
		})
	}
}

// The server refuses a token the endpoint issued: the customer's side
// (class auth), with the server's error challenge.
func TestOAuthTokenRefusedByTheServer(t *testing.T) {
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			srv := mailtest.NewIMAPServer(t, nil)
			e := probetest.NewTokenEndpoint(t, nil) // the server is never told
			r := Probe(probetest.Context(t), oauthTarget(t, srv, e, mech))
			if r.Class != probe.ClassAuth || r.Phase != probe.PhaseAuth || r.Status() != events.StatusFailed {
				t.Fatalf("class %q phase %q status %s err %v", r.Class, r.Phase, r.Status(), r.Err)
			}
			if msg := r.Err.Error(); !strings.Contains(msg, "NO") || !strings.Contains(msg, "refused: status") || strings.Contains(msg, "tok-1") {
				t.Errorf("err %q: want the server's NO and its challenge, never the token", msg)
			}
		})
	}
}

// A credential the token endpoint refuses is the monitor's fault
// (credentials, monitor_error), and the server is never contacted.
func TestOAuthCredentialRefused(t *testing.T) {
	srv := mailtest.NewIMAPServer(t, nil)
	e := probetest.NewTokenEndpoint(t, srv.AllowToken)
	e.Revoke()
	r := Probe(probetest.Context(t), oauthTarget(t, srv, e, mailauth.XOAuth2))
	if r.Class != probe.ClassCredentials || r.Phase != probe.PhaseAuth || r.Status() != events.StatusMonitorError {
		t.Fatalf("class %q phase %q status %s err %v", r.Class, r.Phase, r.Status(), r.Err)
	}
	if msg := r.Err.Error(); !strings.Contains(msg, "AADSTS7000215") || strings.Contains(msg, probetest.ClientSecret) {
		t.Errorf("err %q: want the provider's error, never the secret", msg)
	}
	if len(r.Replies) != 0 || srv.Commands("CAPABILITY") != 0 {
		t.Errorf("the server was contacted: replies %q", r.Replies)
	}
}

// The mailbox examined is Target.Mailbox when set.
func TestOAuthOtherMailbox(t *testing.T) {
	srv := mailtest.NewIMAPServer(t, nil)
	e := probetest.NewTokenEndpoint(t, srv.AllowToken)
	tg := oauthTarget(t, srv, e, mailauth.XOAuth2)
	tg.Mailbox = "Probes"
	r := Probe(probetest.Context(t), tg)
	if r.Class != probe.ClassRefused || r.Phase != probe.PhaseMailbox || !strings.Contains(r.Err.Error(), "NO") {
		t.Fatalf("class %q phase %q err %v: want the server's NO to EXAMINE Probes", r.Class, r.Phase, r.Err)
	}
}

// A service check with an oauth block, run again and again through
// probe.Logins: one token serves every run (the cache), and a revoked
// secret turns into class credentials, the monitor's.
func TestOAuthCheckThroughLogins(t *testing.T) {
	srv := mailtest.NewIMAPServer(t, nil)
	e := probetest.NewTokenEndpoint(t, srv.AllowToken)
	host, port, _ := strings.Cut(srv.Addr, ":")
	p, _ := strconv.Atoi(port)
	check := &checks.Check{ID: "acme-imap", Kind: events.KindIMAP, Service: &checks.Service{Host: host, Port: p, TLS: checks.TLSNone,
		Username: mailtest.IMAPUser, OAuth: &checks.OAuth{Provider: checks.OAuthMicrosoft, TokenURL: e.URL, ClientID: probetest.ClientID,
			ClientSecretEnv: "ACME_CLIENT_SECRET"}}}
	lookup := func(k string) (string, bool) { return probetest.ClientSecret, k == "ACME_CLIENT_SECRET" }
	logins := checktarget.NewLogins(nil, nil)
	for i := range 3 {
		tg, err := logins.Target(check, lookup)
		if err != nil {
			t.Fatal(err)
		}
		if r := Probe(probetest.Context(t), tg); r.Class != "" {
			t.Fatalf("run %d: class %q err %v", i, r.Class, r.Err)
		}
	}
	if n := e.Issued(); n != 1 {
		t.Errorf("%d tokens issued for 3 runs, want 1", n)
	}
	e.Revoke()
	fresh := checktarget.NewLogins(nil, nil) // no cached token
	tg, err := fresh.Target(check, lookup)
	if err != nil {
		t.Fatal(err)
	}
	r := Probe(probetest.Context(t), tg)
	if r.Class != probe.ClassCredentials || r.Status() != events.StatusMonitorError || !strings.Contains(r.Err.Error(), "AADSTS7000215") {
		t.Errorf("revoked: class %q status %s err %v", r.Class, r.Status(), r.Err)
	}
}
