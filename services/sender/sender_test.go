package sender_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/emersion/go-smtp"
)

// TestProbeSentThroughRelay: a probe goes through a relay with STARTTLS and
// AUTH, and mail.sent carries the signed start time, the relay's 250 and
// the timings.
func TestProbeSentThroughRelay(t *testing.T) {
	e := newEnv(t)
	relay := mailtest.NewServer(t, mailtest.Options{TLS: true, Auth: map[string]string{"scout": "s3cret"}})
	cfg := relayConfig(relay.Addr)
	cfg.RelayTLS, cfg.RelayUsername, cfg.RelayPassword = "starttls", "scout", "s3cret"
	r := e.start(cfg, func(d *sender.Deps) { d.RelayTLS = &tls.Config{RootCAs: relay.RootCAs} })
	e.clock.Advance(1234 * time.Microsecond) // a start time that is not a whole millisecond
	test := e.schedule("acme-roundtrip", site, time.Minute)

	got := e.waitSent(1)[0]
	msgs := relay.Wait(1, 10*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("relay got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if len(m.To) != 1 || m.To[0] != "webscout@acme.example" {
		t.Errorf("envelope RCPT %v, want webscout@acme.example", m.To)
	}
	ret, err := probemail.ParseReturned(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	p, key, err := probemail.Verify(ret.HeaderValue, "webscout@acme.example", e.keys)
	if err != nil {
		t.Fatalf("the submitted probe does not verify: %v", err)
	}
	// The envelope sender is the VERP address of the test: the return
	// address with a token that names the test, site and check.
	verp, ok := probemail.ParseVERP(m.From)
	if !ok || verp.Return != returnAddr || verp.TestID != test.TestID || !verp.Verify(site, "acme-roundtrip", key) {
		t.Errorf("envelope MAIL FROM %q is not the test's VERP address on %s", m.From, returnAddr)
	}
	wantStart := start.Add(time.Millisecond)
	if key.Customer != "acme" || p.TestID != test.TestID || p.ReturnTo != returnAddr || !p.StartedAt.Equal(wantStart) {
		t.Errorf("signed probe %+v (key of %s)", p, key.Customer)
	}
	if got.Status != events.SentOK || got.TestID != test.TestID || got.Site != site || got.CheckID != "acme-roundtrip" || got.Attempt != 1 {
		t.Errorf("mail.sent %+v", got)
	}
	if !got.StartedAt.Equal(p.StartedAt) {
		t.Errorf("mail.sent started_at %v, signed t %v", got.StartedAt, p.StartedAt)
	}
	if !got.SentAt.Equal(e.clock.Now()) {
		t.Errorf("sent_at %v, want the clock's %v", got.SentAt, e.clock.Now())
	}
	if got.Reply == nil || got.Reply.Code != 250 || got.Hop != relay.Addr || got.MessageID != probemail.ProbeMessageID(test.TestID, returnAddr) {
		t.Errorf("reply %v hop %q message id %q", got.Reply, got.Hop, got.MessageID)
	}
	if got.Timings.TLSVersion == "" || got.Timings.TotalMS <= 0 || got.Timings.AuthMS <= 0 || got.ErrorClass != "" || got.Error != "" {
		t.Errorf("timings %+v class %q error %q", got.Timings, got.ErrorClass, got.Error)
	}
	waitMetric(t, r.reg, "scout_sender_submission_up", map[string]string{"delivery": "relay"}, 1)
	waitMetric(t, r.reg, "scout_sender_submissions_total", map[string]string{"outcome": "sent"}, 1)
	waitMetric(t, r.reg, "scout_sender_submit_seconds", nil, 1)
	if strings.Contains(r.logs.String(), "s3cret") {
		t.Error("the relay password was logged")
	}
}

// TestRelayOAuth: with SCOUT_RELAY_OAUTH_* the sender logs in to its
// relay with AUTH XOAUTH2 and a client-credentials token from a token
// endpoint on loopback (no password); the token is fetched once and
// reused. With the secret revoked, the probe is a monitor_error of class
// relay_auth whose error names the provider's words, never the secret.
func TestRelayOAuth(t *testing.T) {
	e := newEnv(t)
	tokens := probetest.NewTokenEndpoint(t, nil)
	relay := mailtest.NewServer(t, mailtest.Options{TLS: true, Tokens: map[string]string{"tok-1": "scout@monitor.example"}})
	cfg := relayConfig(relay.Addr)
	cfg.RelayTLS, cfg.RelayUsername = "starttls", "scout@monitor.example"
	cfg.RelayOAuth = mailauth.Config{Provider: mailauth.ProviderMicrosoft, TokenURL: tokens.URL,
		ClientID: probetest.ClientID, ClientSecret: probetest.ClientSecret}
	r := e.start(cfg, func(d *sender.Deps) { d.RelayTLS = &tls.Config{RootCAs: relay.RootCAs} })
	e.schedule("acme-roundtrip", site, time.Minute)
	e.schedule("acme-roundtrip", site, time.Minute)
	for _, got := range e.waitSent(2) {
		if got.Status != events.SentOK || got.Timings.AuthMS <= 0 {
			t.Errorf("mail.sent %+v, want sent after an OAuth login", got)
		}
	}
	if n := len(relay.Wait(2, 10*time.Second)); n != 2 || tokens.Issued() != 1 {
		t.Errorf("relay got %d probes with %d tokens issued, want 2 with 1", n, tokens.Issued())
	}

	tokens.Revoke()
	e2 := newEnv(t)
	r2 := e2.start(cfg, func(d *sender.Deps) { d.RelayTLS = &tls.Config{RootCAs: relay.RootCAs} })
	e2.schedule("acme-roundtrip", site, 300*time.Millisecond)
	got := e2.waitSent(1)[0]
	if got.Status != events.SentMonitorError || got.ErrorClass != sender.ClassRelayAuth || !strings.Contains(got.Error, "AADSTS7000215") {
		t.Errorf("revoked secret: mail.sent %+v, want monitor_error relay_auth naming AADSTS7000215", got)
	}
	for _, logs := range []string{r.logs.String(), r2.logs.String(), got.Error} {
		if strings.Contains(logs, probetest.ClientSecret) || strings.Contains(logs, "tok-1") {
			t.Error("the client secret or the token was logged")
		}
	}
}

// TestRelayFailuresAreMonitorErrors is docs/field-cases.md, c02 by kind of relay
// failure: each is monitor_error (never failed, never sent), with the
// relay's reply, the submission_up gauge at 0 and an error-level log.
func TestRelayFailuresAreMonitorErrors(t *testing.T) {
	cases := []struct {
		name  string
		relay func(t *testing.T) (string, *tls.Config)
		class string
		code  int
		auth  bool
	}{
		{"refuses connections", func(t *testing.T) (string, *tls.Config) { return mailtest.ClosedAddr(t), nil }, sender.ClassRelayUnreachable, 0, false},
		{"554 banner", func(t *testing.T) (string, *tls.Config) {
			return mailtest.Script(t, func(c net.Conn) {
				_, _ = c.Write([]byte("554 5.3.2 relay.monitor.example no service for you\r\n"))
				_, _ = mailtest.ReadLine(c)
			}), nil
		}, sender.ClassRelayRefused, 554, false},
		{"554 to RCPT", func(t *testing.T) (string, *tls.Config) {
			s := mailtest.NewServer(t, mailtest.Options{Rcpt: func(string) error {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relay access denied"}
			}})
			return s.Addr, nil
		}, sender.ClassRelayRefused, 554, false},
		{"wrong password", func(t *testing.T) (string, *tls.Config) {
			s := mailtest.NewServer(t, mailtest.Options{TLS: true, Auth: map[string]string{"scout": "other"}})
			return s.Addr, &tls.Config{RootCAs: s.RootCAs}
		}, sender.ClassRelayAuth, 535, true},
		{"untrusted certificate", func(t *testing.T) (string, *tls.Config) {
			s := mailtest.NewServer(t, mailtest.Options{TLS: true})
			return s.Addr, nil // system roots do not trust the test CA
		}, sender.ClassRelayTLS, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			addr, roots := tc.relay(t)
			cfg := relayConfig(addr)
			if tc.auth {
				cfg.RelayUsername, cfg.RelayPassword = "scout", "pw"
			}
			if roots != nil || tc.class == sender.ClassRelayTLS {
				cfg.RelayTLS = "starttls"
			}
			r := e.start(cfg, func(d *sender.Deps) { d.RelayTLS = roots })
			test := e.schedule("acme-roundtrip", site, 300*time.Millisecond)
			got := e.waitSent(1)[0]
			if got.TestID != test.TestID || got.Status != events.SentMonitorError || got.ErrorClass != tc.class || got.Error == "" {
				t.Fatalf("mail.sent %+v, want monitor_error %s", got, tc.class)
			}
			if tc.code != 0 && (got.Reply == nil || got.Reply.Code != tc.code) {
				t.Errorf("reply %v, want %d", got.Reply, tc.code)
			}
			if !got.SentAt.IsZero() || got.StartedAt.IsZero() {
				t.Errorf("sent_at %v started_at %v: a failed probe has a start, never a send time", got.SentAt, got.StartedAt)
			}
			waitMetric(t, r.reg, "scout_sender_submission_up", map[string]string{"delivery": "relay"}, 0)
			waitMetric(t, r.reg, "scout_sender_submissions_total", map[string]string{"outcome": "monitor_error"}, 1)
			waitMetric(t, r.reg, "scout_sender_submissions_total", map[string]string{"outcome": "sent"}, 0)
			logs := r.logs.Lines(`"level":"ERROR"`, "probes cannot be submitted", tc.class)
			if len(logs) == 0 {
				t.Fatalf("no error-level 'probes cannot be submitted' log:\n%s", r.logs)
			}
			if tc.code != 0 && !strings.Contains(logs[len(logs)-1], `"reply":"`+got.Reply.String()) {
				t.Errorf("log without the reply %q: %s", got.Reply, logs[len(logs)-1])
			}
		})
	}
}

// TestCaseC02RelayRefusedAcrossRestart is docs/field-cases.md, c02: after a good
// probe, our relay refuses connections at t=600s, 1200s and 1800s, and the
// sender restarts between the second and third attempt. Every attempt is a
// monitor_error in the stream, the gauge never shows the old success, and
// the test scheduled while the sender was down is not lost.
func TestCaseC02RelayRefusedAcrossRestart(t *testing.T) {
	e := newEnv(t)
	relay := startRelay(t)
	cfg := relayConfig(relay.Addr)
	r1 := e.start(cfg, nil)
	first := e.schedule("acme-roundtrip", site, 300*time.Millisecond)
	if got := e.waitSent(1)[0]; got.Status != events.SentOK || got.TestID != first.TestID {
		t.Fatalf("good probe before the outage: %+v", got)
	}
	waitMetric(t, r1.reg, "scout_sender_submission_up", map[string]string{"delivery": "relay"}, 1)
	relay.Close() // the relay refuses connections from now on

	var tests []events.TestScheduled
	for _, at := range []time.Duration{600 * time.Second, 1200 * time.Second} {
		e.clock.Advance(start.Add(at).Sub(e.clock.Now()))
		tests = append(tests, e.schedule("acme-roundtrip", site, 300*time.Millisecond))
		e.waitSent(1 + len(tests))
		waitMetric(t, r1.reg, "scout_sender_submission_up", map[string]string{"delivery": "relay"}, 0)
	}
	r1.stop()

	// The third test is scheduled while no sender runs: the durable
	// consumer keeps it for the restarted sender.
	e.clock.Advance(start.Add(1800 * time.Second).Sub(e.clock.Now()))
	tests = append(tests, e.schedule("acme-roundtrip", site, 300*time.Millisecond))
	r2 := e.start(cfg, nil)
	sent := e.waitSent(4)
	for i, test := range tests {
		got := sent[i+1]
		if got.TestID != test.TestID || got.Status != events.SentMonitorError || got.ErrorClass != sender.ClassRelayUnreachable {
			t.Errorf("attempt at %v: %+v, want monitor_error relay_unreachable", test.ScheduledAt.Sub(start), got)
		}
	}
	waitMetric(t, r2.reg, "scout_sender_submission_up", map[string]string{"delivery": "relay"}, 0)
	if len(r2.logs.Lines(`"level":"ERROR"`, "probes cannot be submitted")) == 0 {
		t.Errorf("restarted sender logged no 'probes cannot be submitted':\n%s", r2.logs)
	}
	// The current state of the check at this site is the last mail.sent:
	// the failure, not the old success.
	ctx := context.Background()
	st, err := e.js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	// Stored with the check's partition as its last token.
	last, err := st.GetLastMsgForSubject(ctx, events.SiteCheckSubject(events.SubjectMailSent, site, "acme-roundtrip")+".*")
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := events.Decode[events.MailSent](last.Data); err != nil || ev.Status != events.SentMonitorError {
		t.Errorf("last mail.sent %+v %v, want the monitor_error", ev, err)
	}
	if n := e.count(events.SubjectMailSent + ".>"); n != 4 {
		t.Errorf("%d mail.sent stored, want 4 (one per test)", n)
	}
}

// TestMXDelivery: in mx delivery the customer's refusals are failed, with
// the MX's reply; a resolver routes the target domain to loopback.
func TestMXDelivery(t *testing.T) {
	refusing := func(t *testing.T) *mailtest.Server {
		return mailtest.NewServer(t, mailtest.Options{Domain: "mx1.acme.example", Rcpt: func(string) error {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}})
	}
	accepting := func(t *testing.T) *mailtest.Server { return mailtest.NewServer(t, mailtest.Options{}) }
	cases := []struct {
		name    string
		server  func(t *testing.T) *mailtest.Server
		mx      []*net.MX
		hosts   map[string][]string
		mxErr   error
		status  string
		class   string
		code    int
		hopHost string
	}{
		{"MX answers 550", refusing, []*net.MX{{Host: "mx1.acme.example.", Pref: 10}},
			map[string][]string{"mx1.acme.example": {"127.0.0.1"}}, nil, events.SentFailed, sender.ClassMXRefused, 550, "mx1.acme.example"},
		{"MX accepts", accepting, []*net.MX{{Host: "mx1.acme.example.", Pref: 10}},
			map[string][]string{"mx1.acme.example": {"127.0.0.1"}}, nil, events.SentOK, "", 250, "mx1.acme.example"},
		{"first MX down, backup accepts", accepting,
			[]*net.MX{{Host: "backup.acme.example.", Pref: 20}, {Host: "mx1.acme.example.", Pref: 10}},
			map[string][]string{"mx1.acme.example": {"127.0.0.2"}, "backup.acme.example": {"127.0.0.1"}}, nil, events.SentOK, "", 250, "backup.acme.example"},
		{"no MX reachable", nil, []*net.MX{{Host: "mx1.acme.example.", Pref: 10}},
			map[string][]string{"mx1.acme.example": {"127.0.0.1"}}, nil, events.SentFailed, sender.ClassMXUnreachable, 0, "mx1.acme.example"},
		{"domain does not exist", nil, nil, nil,
			&net.DNSError{Err: "no such host", Name: "acme.example", IsNotFound: true}, events.SentFailed, sender.ClassNoMX, 0, ""},
		{"null MX", nil, []*net.MX{{Host: ".", Pref: 0}}, nil, nil, events.SentFailed, sender.ClassNoMX, 0, ""},
		{"implicit MX", accepting, nil, map[string][]string{"acme.example": {"127.0.0.1"}},
			&net.DNSError{Err: "no such host", Name: "acme.example", IsNotFound: true}, events.SentOK, "", 250, "acme.example"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			port := 0
			var srv *mailtest.Server
			if tc.server != nil {
				srv = tc.server(t)
				_, p, _ := net.SplitHostPort(srv.Addr)
				port = atoi(t, p)
			} else {
				_, p, _ := net.SplitHostPort(mailtest.ClosedAddr(t))
				port = atoi(t, p)
			}
			cfg := relayConfig("")
			cfg.Delivery, cfg.MXPort = sender.DeliveryMX, port
			res := &resolver{mx: map[string][]*net.MX{}, mxErr: tc.mxErr, hosts: tc.hosts}
			if tc.mx != nil {
				res.mx["acme.example"] = tc.mx
			}
			r := e.start(cfg, func(d *sender.Deps) { d.Resolver = res })
			e.schedule("acme-roundtrip", site, 300*time.Millisecond)
			got := e.waitSent(1)[0]
			if got.Status != tc.status || got.ErrorClass != tc.class {
				t.Fatalf("mail.sent %s/%s (%s), want %s/%s", got.Status, got.ErrorClass, got.Error, tc.status, tc.class)
			}
			if tc.code != 0 && (got.Reply == nil || got.Reply.Code != tc.code) {
				t.Errorf("reply %v, want %d", got.Reply, tc.code)
			}
			if tc.hopHost != "" && got.Hop != net.JoinHostPort(tc.hopHost, itoa(port)) {
				t.Errorf("hop %q, want %s", got.Hop, tc.hopHost)
			}
			if got.Status == events.SentOK && len(srv.Messages()) != 1 {
				t.Errorf("MX holds %d messages", len(srv.Messages()))
			}
			if res.lookups() == 0 {
				t.Error("the resolver was not asked")
			}
			// A customer's refusal says nothing about our relay.
			if _, ok := testkit.Metric(t, r.reg, "scout_sender_submission_up", nil); ok {
				t.Error("submission_up set by an MX outcome")
			}
		})
	}
}

// TestStaleTestNeverSent: a test picked up after NotAfter is reported as
// monitor_error "stale" without any SMTP connection.
func TestStaleTestNeverSent(t *testing.T) {
	e := newEnv(t)
	var conns atomic.Int32
	addr := mailtest.Script(t, func(c net.Conn) {
		conns.Add(1)
		_, _ = c.Write([]byte("220 relay.monitor.example ESMTP\r\n"))
		_, _ = mailtest.ReadLine(c)
	})
	test := e.schedule("acme-roundtrip", site, 15*time.Second)
	// The clock moves on while the test waits (the sender was down).
	e.clock.Advance(16 * time.Second)
	e.start(relayConfig(addr), nil)
	got := e.waitSent(1)[0]
	if got.TestID != test.TestID || got.Status != events.SentMonitorError || got.ErrorClass != sender.ClassStale {
		t.Fatalf("mail.sent %+v, want monitor_error stale", got)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("%d SMTP connections for a stale test, want none", n)
	}
}

// TestTemporaryFailureRetriedWithinWindow: the relay answers 451 once, then
// accepts: the test is redelivered inside its window and exactly one probe
// is delivered.
func TestTemporaryFailureRetriedWithinWindow(t *testing.T) {
	e := newEnv(t)
	var rcpts atomic.Int32
	relay := mailtest.NewServer(t, mailtest.Options{Rcpt: func(string) error {
		if rcpts.Add(1) == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted, try again"}
		}
		return nil
	}})
	r := e.start(relayConfig(relay.Addr), nil)
	test := e.schedule("acme-roundtrip", site, time.Minute)
	got := e.waitSent(1)[0]
	if got.Status != events.SentOK || got.TestID != test.TestID {
		t.Fatalf("mail.sent %+v, want sent after the retry", got)
	}
	if n := len(relay.Messages()); n != 1 || rcpts.Load() != 2 {
		t.Errorf("relay holds %d probes after %d RCPTs, want 1 after 2", n, rcpts.Load())
	}
	waitMetric(t, r.reg, "scout_sender_submissions_total", map[string]string{"outcome": "temporary"}, 1)
	waitMetric(t, r.reg, "scout_sender_submissions_total", map[string]string{"outcome": "sent"}, 1)
	waitMetric(t, r.reg, "scout_sender_submission_up", map[string]string{"delivery": "relay"}, 1)
	if n := e.count(events.SubjectMailSent + ".>"); n != 1 {
		t.Errorf("%d mail.sent stored, want 1", n)
	}
}

// TestLateRetryReportsLastFailure: the relay answers 451; the redelivery
// comes after the window closed, so the 451 is reported (not "stale") and
// no second probe is attempted.
func TestLateRetryReportsLastFailure(t *testing.T) {
	e := newEnv(t)
	var rcpts atomic.Int32
	relay := mailtest.NewServer(t, mailtest.Options{Rcpt: func(string) error {
		rcpts.Add(1)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "queue full"}
	}})
	r := e.start(relayConfig(relay.Addr), nil)
	e.schedule("acme-roundtrip", site, time.Minute)
	waitMetric(t, r.reg, "scout_consumer_messages_total", map[string]string{"outcome": "nak"}, 1)
	e.clock.Advance(2 * time.Minute)
	got := e.waitSent(1)[0]
	if got.Status != events.SentMonitorError || got.ErrorClass != sender.ClassRelayRefused || got.Reply == nil || got.Reply.Code != 451 {
		t.Fatalf("mail.sent %+v, want monitor_error relay_refused with the 451", got)
	}
	if n := rcpts.Load(); n != 1 {
		t.Errorf("%d submission attempts, want 1 (none after the window)", n)
	}
}

// TestTestsThatCannotRunHere: tests of a check the file in force does not
// have, or does not run at this site, are stale (scheduled from another
// version of the file): acknowledged, counted and logged as a warning, no
// mail.sent, and not terminated (which would fire
// ScoutConsumerDroppedMessages for a normal reload); a check whose customer
// has no key is a monitor_error "no_key".
func TestTestsThatCannotRunHere(t *testing.T) {
	e := newEnv(t)
	relay := mailtest.NewServer(t, mailtest.Options{})
	r := e.start(relayConfig(relay.Addr), nil)
	e.schedule("unknown-check", site, time.Minute)
	e.schedule("us-only", site, time.Minute)
	waitMetric(t, r.reg, "scout_sender_stale_tests_total", map[string]string{"reason": "unknown_check"}, 1)
	waitMetric(t, r.reg, "scout_sender_stale_tests_total", map[string]string{"reason": "site_removed"}, 1)
	if n := e.count(events.SubjectMailSent + ".>"); n != 0 {
		t.Errorf("%d mail.sent for tests that cannot run here", n)
	}
	if n := testkit.MustMetric(t, r.reg, "scout_consumer_messages_total", map[string]string{"outcome": "term"}); n != 0 {
		t.Errorf("%v stale tests terminated, want acknowledged", n)
	}
	for _, want := range []string{"test for an unknown check dropped", "does not run at this site"} {
		if len(r.logs.Lines(`"level":"WARN"`, want)) != 1 {
			t.Errorf("no warning %q:\n%s", want, r.logs)
		}
	}

	test := e.schedule("initech-roundtrip", site, time.Minute)
	got := e.waitSent(1)[0]
	if got.TestID != test.TestID || got.Status != events.SentMonitorError || got.ErrorClass != sender.ClassNoKey {
		t.Errorf("mail.sent %+v, want monitor_error no_key", got)
	}
	if len(relay.Messages()) != 0 {
		t.Error("a probe was sent without a key")
	}
}

// TestPublishFailureNeverSendsTwice: the probe is accepted but mail.sent
// cannot be published; the redelivery publishes the recorded outcome and
// sends no second probe.
func TestPublishFailureNeverSendsTwice(t *testing.T) {
	e := newEnv(t)
	relay := mailtest.NewServer(t, mailtest.Options{})
	pub := &flakyPublisher{inner: e.publisherFor(), fail: 1}
	e.start(relayConfig(relay.Addr), func(d *sender.Deps) { d.Publisher = pub })
	test := e.schedule("acme-roundtrip", site, time.Minute)
	got := e.waitSent(1)[0]
	if got.Status != events.SentOK || got.TestID != test.TestID {
		t.Fatalf("mail.sent %+v", got)
	}
	if n := len(relay.Messages()); n != 1 {
		t.Errorf("%d probes sent, want 1", n)
	}
	if pub.calls() != 2 {
		t.Errorf("%d publish calls, want 2 (one failure, one retry)", pub.calls())
	}
}

type resolver struct {
	mu    sync.Mutex
	n     int
	mx    map[string][]*net.MX
	mxErr error
	hosts map[string][]string
}

func (r *resolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if mx, ok := r.mx[name]; ok {
		return mx, nil
	}
	if r.mxErr != nil {
		return nil, r.mxErr
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *resolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.hosts[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *resolver) lookups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

type flakyPublisher struct {
	inner interface {
		Publish(ctx context.Context, ev events.Event) (bool, error)
	}
	mu   sync.Mutex
	fail int
	n    int
}

func (p *flakyPublisher) Publish(ctx context.Context, ev events.Event) (bool, error) {
	p.mu.Lock()
	p.n++
	fail := p.n <= p.fail
	p.mu.Unlock()
	if fail {
		return false, errors.New("nats: timeout")
	}
	return p.inner.Publish(ctx, ev)
}

func (p *flakyPublisher) calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// mxOn routes acme.example to srv in mx delivery.
func mxOn(t *testing.T, srv *mailtest.Server) (sender.Config, *resolver) {
	t.Helper()
	_, p, _ := net.SplitHostPort(srv.Addr)
	cfg := relayConfig("")
	cfg.Delivery, cfg.MXPort = sender.DeliveryMX, atoi(t, p)
	return cfg, &resolver{mx: map[string][]*net.MX{"acme.example": {{Host: "mx1.acme.example.", Pref: 10}}},
		hosts: map[string][]string{"mx1.acme.example": {"127.0.0.1"}}}
}

// TestMXDeferralRetriedUntilAccepted: the customer's MX greylists the probe
// (451) twice, then takes it. A 4xx is not a failure (RFC 5321 section
// 4.5.4.1): mail.sent "deferred" tells the evaluator once, the same probe
// (same bytes, its first start time) is retried, and mail.sent "sent"
// follows with the deferral and the acceptance as evidence.
func TestMXDeferralRetriedUntilAccepted(t *testing.T) {
	e := newEnv(t)
	var rcpts atomic.Int32
	srv := mailtest.NewServer(t, mailtest.Options{Domain: "mx1.acme.example", Rcpt: func(string) error {
		if rcpts.Add(1) <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted, try again later"}
		}
		return nil
	}})
	cfg, res := mxOn(t, srv)
	r := e.start(cfg, func(d *sender.Deps) { d.Resolver = res })
	test := e.schedule("acme-roundtrip", site, 300*time.Millisecond)
	sent := e.waitSent(2)
	deferred, ok := sent[0], sent[1]
	if deferred.Status != events.SentDeferred || deferred.ErrorClass != sender.ClassMXDeferred || deferred.Evidence == nil ||
		deferred.Evidence.Deferred == nil || deferred.Evidence.Deferred.Code != 451 {
		t.Fatalf("first mail.sent %+v, want deferred with the 451", deferred)
	}
	if ok.Status != events.SentOK || ok.TestID != test.TestID || !ok.StartedAt.Equal(deferred.StartedAt) {
		t.Fatalf("second mail.sent %+v, want sent with the deferral's start %v", ok, deferred.StartedAt)
	}
	if ok.Evidence == nil || ok.Evidence.Deferred == nil || ok.Evidence.Submission == nil || ok.Evidence.Submission.Server != "mx1.acme.example" {
		t.Errorf("evidence %+v, want the deferral and mx1.acme.example's acceptance", ok.Evidence)
	}
	if n := rcpts.Load(); n != 3 || len(srv.Messages()) != 1 {
		t.Errorf("%d RCPTs, %d messages; want 3 and 1", n, len(srv.Messages()))
	}
	if n := e.count(events.SubjectMailSent + ".>"); n != 2 {
		t.Errorf("%d mail.sent, want the deferral and the outcome", n)
	}
	waitMetric(t, r.reg, "scout_sender_submissions_total", map[string]string{"outcome": "deferred"}, 2)
}

// TestMXDeferredUntilTimeout: an MX that answers 451 for good gets the
// probe retried until the attempt's timeout and no failure is reported:
// the evaluator's deadline makes it a timeout with the deferral as its
// evidence.
func TestMXDeferredUntilTimeout(t *testing.T) {
	e := newServiceEnv(t, `
sites: [eu-west]
checks:
  - {id: acme-roundtrip, customer: acme, kind: roundtrip, target: webscout@acme.example, timeout: 3s, slow: 1s}
`)
	var rcpts atomic.Int32
	srv := mailtest.NewServer(t, mailtest.Options{Domain: "mx1.acme.example", Rcpt: func(string) error {
		rcpts.Add(1)
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many connections, slow down"}
	}})
	cfg, res := mxOn(t, srv)
	r := e.start(cfg, func(d *sender.Deps) { d.Resolver = res })
	e.schedule("acme-roundtrip", site, 300*time.Millisecond)
	deferred := e.waitSent(1)[0]
	if deferred.Status != events.SentDeferred {
		t.Fatalf("mail.sent %+v, want deferred", deferred)
	}
	waitMetric(t, r.reg, "scout_consumer_messages_total", map[string]string{"outcome": "nak"}, 1)
	// The attempt's timeout passes; the next retry gives up.
	e.clock.Advance(4 * time.Second)
	waitMetric(t, r.reg, "scout_consumer_messages_total", map[string]string{"outcome": "ack"}, 1)
	if n := e.count(events.SubjectMailSent + ".>"); n != 1 {
		t.Errorf("%d mail.sent, want the deferral only (no failure: the attempt times out)", n)
	}
	if len(srv.Messages()) != 0 {
		t.Error("the MX holds a message")
	}
}

// TestSubmissionEvidenceAndPlainSender: mail.sent carries who took the
// probe (the greeting's name), the TLS version, the queue id and the
// dialogue; with VERP off the envelope sender is the plain return address.
func TestSubmissionEvidenceAndPlainSender(t *testing.T) {
	e := newEnv(t)
	relay := mailtest.NewServer(t, mailtest.Options{TLS: true, Domain: "relay.monitor.example"})
	cfg := relayConfig(relay.Addr)
	cfg.RelayTLS, cfg.VERP = "starttls", false
	e.start(cfg, func(d *sender.Deps) { d.RelayTLS = &tls.Config{RootCAs: relay.RootCAs} })
	e.schedule("acme-roundtrip", site, time.Minute)
	got := e.waitSent(1)[0]
	sub := got.Evidence.Submission
	if sub == nil || sub.Server != "relay.monitor.example" || sub.TLSVersion != "TLS1.3" || sub.AcceptedAt.IsZero() || len(sub.Transcript) < 8 {
		t.Fatalf("submission evidence %+v", sub)
	}
	if m := relay.Wait(1, 10*time.Second); len(m) != 1 || m[0].From != returnAddr {
		t.Errorf("envelope sender %q, want the plain %s", m[0].From, returnAddr)
	}
}

// TestProbesDKIMSigned: with SCOUT_DKIM_KEY_FILE and SCOUT_DKIM_SELECTOR
// every probe carries a DKIM signature for the return address's domain
// that verifies against the published key (RFC 6376) and aligns with the
// probe's From.
func TestProbesDKIMSigned(t *testing.T) {
	e := newEnv(t)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	relay := mailtest.NewServer(t, mailtest.Options{})
	cfg := relayConfig(relay.Addr)
	cfg.DKIMKeyFile, cfg.DKIMSelector = keyFile, "scout2026"
	e.start(cfg, nil)
	e.schedule("acme-roundtrip", site, time.Minute)
	if got := e.waitSent(1)[0]; got.Status != events.SentOK {
		t.Fatalf("mail.sent %+v", got)
	}
	m := relay.Wait(1, 10*time.Second)[0]
	txt := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	lookup := func(name string) ([]string, error) {
		if name == "scout2026._domainkey.monitor.example" {
			return []string{txt}, nil
		}
		return nil, fmt.Errorf("no TXT for %s", name)
	}
	if got := probemail.VerifyDKIM(m.Data, lookup); got != probemail.DKIMAligned {
		t.Errorf("probe DKIM %s, want %s:\n%s", got, probemail.DKIMAligned, m.Data)
	}

	bad := relayConfig(relay.Addr)
	bad.DKIMKeyFile = keyFile
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "SCOUT_DKIM_SELECTOR") {
		t.Errorf("a key without a selector: %v", err)
	}
}

// TestRelaySessionReused: probes one after another go over one SMTP
// session with the relay (one connection, one STARTTLS, one login): the
// later ones are marked reused, have no login phase and a transcript of
// their own transaction. SCOUT_RELAY_SESSION_MESSAGES=1 opens a session
// per probe.
func TestRelaySessionReused(t *testing.T) {
	for _, tc := range []struct {
		perSession int
		wantConns  int64
	}{{0, 1}, {1, 3}} {
		t.Run(fmt.Sprintf("session messages %d", tc.perSession), func(t *testing.T) {
			e := newEnv(t)
			relay := mailtest.NewServer(t, mailtest.Options{TLS: true, Auth: map[string]string{"scout": "s3cret"}})
			cfg := relayConfig(relay.Addr)
			cfg.RelayTLS, cfg.RelayUsername, cfg.RelayPassword = "starttls", "scout", "s3cret"
			cfg.RelaySessionMessages = tc.perSession
			e.start(cfg, func(d *sender.Deps) { d.RelayTLS = &tls.Config{RootCAs: relay.RootCAs} })
			for i := range 3 {
				e.schedule("acme-roundtrip", site, time.Minute)
				e.waitSent(i + 1)
			}
			sent := e.waitSent(3)
			if n := len(relay.Wait(3, 10*time.Second)); n != 3 {
				t.Fatalf("relay got %d messages, want 3", n)
			}
			if got := relay.Connections(); got != tc.wantConns {
				t.Errorf("%d SMTP sessions with the relay for 3 probes, want %d", got, tc.wantConns)
			}
			for i, m := range sent {
				ev := m.Evidence
				if m.Status != events.SentOK || m.Reply == nil || m.Reply.Code != 250 || ev == nil || ev.Submission == nil {
					t.Fatalf("probe %d: %+v", i, m)
				}
				sub := ev.Submission
				reused := tc.perSession == 0 && i > 0
				if sub.Reused != reused || sub.TLSVersion == "" || (m.Timings.AuthMS > 0) == reused {
					t.Errorf("probe %d: reused %v (want %v), TLS %q, auth %.2f ms", i, sub.Reused, reused, sub.TLSVersion, m.Timings.AuthMS)
				}
				if !strings.HasPrefix(strings.Join(sub.Transcript, "\n"), map[bool]string{true: "C: MAIL FROM", false: "S: 220"}[reused]) {
					t.Errorf("probe %d transcript starts %q", i, sub.Transcript[0])
				}
			}
		})
	}
}
