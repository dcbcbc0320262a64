package smtpprobe

import (
	"strconv"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
)

// oauthServer is go-smtp with STARTTLS accepting tokens (token -> user).
func oauthServer(t *testing.T, tokens map[string]string) (*mailtest.Server, probe.Target) {
	t.Helper()
	srv := mailtest.NewServer(t, mailtest.Options{Domain: "mx.example.net", TLS: true, Tokens: tokens})
	host, port, _ := strings.Cut(srv.Addr, ":")
	p, _ := strconv.Atoi(port)
	return srv, probe.Target{Host: host, Port: p, TLS: checks.TLSStartTLS, RootCAs: srv.RootCAs, Username: "webscout"}
}

func oauthLogin(t *testing.T, e *probetest.TokenEndpoint, mech string) *mailauth.Login {
	t.Helper()
	login, err := mailauth.New(mailauth.Config{Provider: mailauth.ProviderMicrosoft, TokenURL: e.URL, ClientID: probetest.ClientID,
		ClientSecret: probetest.ClientSecret, Mechanism: mech}, "webscout", mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return login
}

func TestOAuthAuth(t *testing.T) {
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			_, tg := oauthServer(t, map[string]string{"tok-1": "webscout"})
			tg.Auth = oauthLogin(t, probetest.NewTokenEndpoint(t, nil), mech)
			r := Probe(probetest.Context(t), tg)
			if r.Class != "" || r.Timings.AuthMS <= 0 || r.TLS == nil {
				t.Fatalf("class %q phase %q err %v; replies %q", r.Class, r.Phase, r.Err, r.Replies)
			}
		})
	}
}

// 535 to a token the endpoint issued: the customer's side (class auth),
// with the server's error challenge; never the token.
func TestOAuthTokenRefusedByTheServer(t *testing.T) {
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			_, tg := oauthServer(t, map[string]string{"another": "webscout"})
			tg.Auth = oauthLogin(t, probetest.NewTokenEndpoint(t, nil), mech)
			r := Probe(probetest.Context(t), tg)
			if r.Class != probe.ClassAuth || r.Phase != probe.PhaseAuth || r.Reply == nil || r.Reply.Code != 535 || r.Status() != events.StatusFailed {
				t.Fatalf("class %q phase %q reply %v err %v", r.Class, r.Phase, r.Reply, r.Err)
			}
			if msg := r.Err.Error(); !strings.Contains(msg, "refused: status") || strings.Contains(msg, "tok-1") {
				t.Errorf("err %q: want the challenge, never the token", msg)
			}
			for _, l := range r.Replies {
				if strings.Contains(l, "tok-1") {
					t.Errorf("a reply shows the token: %q", l)
				}
			}
		})
	}
}

func TestOAuthCredentialRefused(t *testing.T) {
	_, tg := oauthServer(t, map[string]string{"tok-1": "webscout"})
	e := probetest.NewTokenEndpoint(t, nil)
	e.Revoke()
	tg.Auth = oauthLogin(t, e, mailauth.XOAuth2)
	r := Probe(probetest.Context(t), tg)
	if r.Class != probe.ClassCredentials || r.Status() != events.StatusMonitorError || len(r.Replies) != 0 ||
		!strings.Contains(r.Err.Error(), "AADSTS7000215") || strings.Contains(r.Err.Error(), probetest.ClientSecret) {
		t.Fatalf("class %q status %s err %v replies %q", r.Class, r.Status(), r.Err, r.Replies)
	}
}
