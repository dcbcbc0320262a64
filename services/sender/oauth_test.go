package sender_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
	"github.com/emailscout/emailscout/services/sender"
)

// TestServiceCheckOAuth: an IMAP service check with an oauth block logs in
// with AUTHENTICATE XOAUTH2 and a token of the client credentials
// endpoint, its secret read through Deps.LookupEnv; the check's second
// run takes the token from the cache. Once the endpoint refuses the
// secret (a fresh sender: no cached token), the check is observed as
// class credentials, the monitor's (monitor_error), with no connection to
// the customer's server; the secret is never logged or published.
func TestServiceCheckOAuth(t *testing.T) {
	srv := mailtest.NewIMAPServer(t, nil)
	idp := probetest.NewTokenEndpoint(t, srv.AllowToken)
	host, port, _ := net.SplitHostPort(srv.Addr)
	checksYAML := fmt.Sprintf(`
sites: [eu-west]
checks:
  - id: acme-imap-oauth
    customer: acme
    kind: imap
    host: %s
    port: %s
    tls: none
    username: %s
    oauth:
      provider: microsoft
      token_url: %s
      client_id: %s
      client_secret_env: ACME_CLIENT_SECRET
`, host, port, mailtest.IMAPUser, idp.URL, probetest.ClientID)
	vars := lookup(map[string]string{"ACME_CLIENT_SECRET": probetest.ClientSecret})

	e := newServiceEnv(t, checksYAML)
	r := e.start(serviceConfig(site), func(d *sender.Deps) { d.LookupEnv = vars })
	for i := range 2 {
		e.scheduleTest("acme-imap-oauth", site, 1, events.ReasonInterval, "", time.Minute)
		res := e.waitObserved(i + 1)[i]
		if res.ErrorClass != "" || res.Timings.AuthMS <= 0 || res.Timings.MailboxMS <= 0 {
			t.Fatalf("run %d: class %q phase %q error %q timings %+v", i, res.ErrorClass, res.Phase, res.Error, res.Timings)
		}
	}
	if n := idp.Issued(); n != 1 {
		t.Errorf("%d tokens issued for two runs, want 1 (cached)", n)
	}
	if n := srv.Commands("AUTHENTICATE"); n != 2 || srv.Commands("LOGIN") != 0 {
		t.Errorf("AUTHENTICATE %d, LOGIN %d", n, srv.Commands("LOGIN"))
	}
	if strings.Contains(r.logs.String(), probetest.ClientSecret) || strings.Contains(r.logs.String(), "tok-1") {
		t.Error("the log shows the secret or the token")
	}

	idp.Revoke()
	e = newServiceEnv(t, checksYAML)
	r = e.start(serviceConfig(site), func(d *sender.Deps) { d.LookupEnv = vars })
	e.scheduleTest("acme-imap-oauth", site, 1, events.ReasonInterval, "", time.Minute)
	res := e.waitObserved(1)[0]
	if res.ErrorClass != probe.ClassCredentials || probe.StatusOf(res.ErrorClass) != events.StatusMonitorError ||
		res.Phase != probe.PhaseAuth || !strings.Contains(res.Error, "AADSTS7000215") || strings.Contains(res.Error, probetest.ClientSecret) {
		t.Errorf("observation class %q phase %q error %q, want credentials naming AADSTS7000215", res.ErrorClass, res.Phase, res.Error)
	}
	if n := srv.Commands("AUTHENTICATE"); n != 2 {
		t.Errorf("%d AUTHENTICATE in all: the revoked run reached the server", n)
	}
	waitMetric(t, r.reg, "scout_sender_service_checked_total", map[string]string{"kind": "imap", "error_class": "credentials"}, 1)
}
