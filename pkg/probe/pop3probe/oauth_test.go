package pop3probe

import (
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
)

func oauthTarget(t *testing.T, addr string, e *probetest.TokenEndpoint, mech string) probe.Target {
	t.Helper()
	login, err := mailauth.New(mailauth.Config{Provider: mailauth.ProviderMicrosoft, TokenURL: e.URL, ClientID: probetest.ClientID,
		ClientSecret: probetest.ClientSecret, Mechanism: mech}, "webscout", mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tg := target(t, addr, checks.TLSNone)
	tg.Password, tg.Auth = "", login
	return tg
}

func TestOAuthLogin(t *testing.T) {
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			m := &maildrop{messages: 3}
			addr := script{Capa: []string{"USER", "SASL PLAIN XOAUTH2 OAUTHBEARER", "RESP-CODES"}, Tokens: map[string]bool{"tok-1": true}}.start(t, m)
			r := Probe(probetest.Context(t), oauthTarget(t, addr, probetest.NewTokenEndpoint(t, nil), mech))
			wantResult(t, r, events.StatusOK, "", "")
			if r.Mailbox == nil || r.Mailbox.Messages != 3 {
				t.Errorf("mailbox %+v", r.Mailbox)
			}
			if _, quits, cmds, _ := m.stats(); strings.Join(cmds, " ") != "CAPA AUTH STAT QUIT" || quits != 1 {
				t.Errorf("commands %v, quits %d", cmds, quits)
			}
		})
	}
}

func TestOAuthRefusals(t *testing.T) {
	e := probetest.NewTokenEndpoint(t, nil)
	revoked := probetest.NewTokenEndpoint(t, nil)
	revoked.Revoke()
	cases := []struct {
		name   string
		capa   []string
		e      *probetest.TokenEndpoint
		status string
		class  string
		want   string
	}{
		{"the server refuses the token", []string{"SASL XOAUTH2"}, e, events.StatusFailed, probe.ClassAuth, `-ERR [AUTH] Authentication failed. (XOAUTH2 refused: status "invalid_token"`},
		{"mechanism not offered", []string{"USER", "SASL PLAIN"}, e, events.StatusFailed, probe.ClassAuth, "does not offer SASL XOAUTH2"},
		{"the endpoint refuses our credential", []string{"SASL XOAUTH2"}, revoked, events.StatusMonitorError, probe.ClassCredentials, "AADSTS7000215"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &maildrop{}
			addr := script{Capa: tc.capa, Tokens: map[string]bool{"tok-other": true}}.start(t, m)
			r := Probe(probetest.Context(t), oauthTarget(t, addr, tc.e, mailauth.XOAuth2))
			wantResult(t, r, tc.status, tc.class, probe.PhaseAuth)
			if msg := r.Err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, probetest.ClientSecret) {
				t.Errorf("err %q, want %q and never the secret", msg, tc.want)
			}
			if sessions, _, _, _ := m.stats(); tc.class == probe.ClassCredentials && sessions != 0 {
				t.Errorf("%d sessions: the server was contacted without a token", sessions)
			}
		})
	}
}
