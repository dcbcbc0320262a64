package sender_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/nats-io/nats.go/jetstream"
)

// scheduleTest publishes a test of check at site, as the scheduler (attempt
// 1) or the evaluator (attempt 2, reason and origin set) would.
func (e *env) scheduleTest(check, at string, attempt int, reason, origin string, window time.Duration) events.TestScheduled {
	e.t.Helper()
	id, err := events.NewTestID(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	now := e.clock.Now()
	ev := events.TestScheduled{
		V: events.SchemaVersion, TestID: id, CheckID: check, Site: at, Kind: e.checks.Lookup(check).Kind,
		Attempt: attempt, Reason: reason, OriginTestID: origin, ScheduledAt: now, NotAfter: now.Add(window),
	}
	if reason == events.ReasonInterval {
		e.slot++
		ev.Slot = e.slot
	}
	e.publish(ev)
	return ev
}

// stored is a service.checked as JetStream stored it.
type stored struct {
	events.ServiceChecked
	msgID string
}

// waitObserved waits until n service.checked events are stored and
// returns them in stream order with their message ids.
func (e *env) waitObserved(n int) []stored {
	e.t.Helper()
	ctx := natstest.Context(e.t)
	cons, err := e.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectServiceChecked + ".>"}})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []stored
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			e.t.Fatal(err)
		}
		for msg := range batch.Messages() {
			r, err := events.Decode[events.ServiceChecked](msg.Data())
			if err != nil {
				e.t.Fatalf("%s: %v", msg.Subject(), err)
			}
			out = append(out, stored{r, msg.Headers().Get("Nats-Msg-Id")})
		}
		if ctx.Err() != nil {
			e.t.Fatalf("%d of %d service.checked before the deadline", len(out), n)
		}
	}
	return out
}

// serviceConfig is the sender configuration of site for service checks
// (the relay is never used; its address only has to be valid).
func serviceConfig(at string) sender.Config {
	cfg := relayConfig("127.0.0.1:1")
	cfg.Site = at
	cfg.HeloName = at + ".monitor.example"
	return cfg
}

// hosts resolves the names of the test's service checks to 127.0.0.1.
type hosts map[string]bool

func (h hosts) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if h[host] {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// env lookups for the service checks' password_env.
func lookup(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// pop3Server is a scripted POP3 server (RFC 1939, CAPA of RFC 2449, STLS
// of RFC 2595) on 127.0.0.1: user webscout/s3cret, 2 messages of 300
// octets. It counts sessions.
type pop3Server struct {
	addr     string
	sessions atomic.Int32
}

func startPOP3(t testing.TB, cfg *tls.Config) *pop3Server {
	t.Helper()
	p := &pop3Server{}
	p.addr = mailtest.Script(t, func(c net.Conn) {
		p.sessions.Add(1)
		peer := &probetest.Peer{C: c}
		if err := peer.Send("+OK POP3 ready"); err != nil {
			return
		}
		inTLS, user := false, ""
		for {
			line, err := peer.Line()
			if err != nil {
				return
			}
			cmd, arg, _ := strings.Cut(line, " ")
			switch strings.ToUpper(cmd) {
			case "CAPA":
				caps := []string{"+OK Capability list follows", "USER", "UIDL"}
				if !inTLS {
					caps = append(caps, "STLS")
				}
				_ = peer.Send(append(caps, ".")...)
			case "STLS":
				_ = peer.Send("+OK Begin TLS negotiation")
				if peer.StartTLS(cfg) != nil {
					return
				}
				inTLS = true
			case "USER":
				user = arg
				_ = peer.Send("+OK")
			case "PASS":
				if user != "webscout" || arg != "s3cret" {
					_ = peer.Send("-ERR [AUTH] Authentication failed")
					continue
				}
				_ = peer.Send("+OK Logged in")
			case "STAT":
				_ = peer.Send("+OK 2 600")
			case "QUIT":
				_ = peer.Send("+OK Logging out")
				return
			default:
				_ = peer.Send("-ERR unknown command")
			}
		}
	})
	return p
}

// TestServiceCheckPerKind runs one service check of each kind against a
// real server on loopback, over STARTTLS with a login: one service.checked
// per test, every phase passed, with the test's routing fields, timings and
// TLS details. The verdict is the evaluator's (test/system).
func TestServiceCheckPerKind(t *testing.T) {
	type server struct {
		host, port string
		pool       *x509.CertPool
		sessions   func() int
	}
	cases := []struct {
		kind     string
		start    func(t *testing.T) server
		user, pw string
		extra    string // more check fields
		attempt  int
		reason   string
	}{
		{
			kind: events.KindSMTP,
			start: func(t *testing.T) server {
				srv := mailtest.NewServer(t, mailtest.Options{TLS: true, Auth: map[string]string{"webscout@acme.test": "smtp-s3cret"}})
				host, port, _ := net.SplitHostPort(srv.Addr)
				return server{host: host, port: port, pool: srv.RootCAs}
			},
			user: "webscout@acme.test", pw: "smtp-s3cret",
			extra:   "cert_warning_days: 0", // mailtest's certificate is valid for a day
			attempt: 1, reason: events.ReasonInterval,
		},
		{
			// A host name, resolved by Deps.ServiceResolver; the
			// certificate names it.
			kind: events.KindIMAP,
			start: func(t *testing.T) server {
				cert, pool := mailtest.CertificateValid(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour), "imap.acme.test")
				_, port, _ := net.SplitHostPort(probetest.IMAPServer(t, &tls.Config{Certificates: []tls.Certificate{cert}}, false))
				return server{host: "imap.acme.test", port: port, pool: pool}
			},
			user: "webscout", pw: "s3cret",
			attempt: 2, reason: events.ReasonConfirm,
		},
		{
			kind: events.KindPOP3,
			start: func(t *testing.T) server {
				cfg, pool := probetest.ServerTLS(t, probetest.Valid)
				p := startPOP3(t, cfg)
				host, port, _ := net.SplitHostPort(p.addr)
				return server{host: host, port: port, pool: pool, sessions: func() int { return int(p.sessions.Load()) }}
			},
			user: "webscout", pw: "s3cret",
			attempt: 1, reason: events.ReasonInterval,
		},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			srv := tc.start(t)
			check := "acme-" + tc.kind
			e := newServiceEnv(t, fmt.Sprintf(`
sites: [eu-west]
checks:
  - id: %s
    customer: acme
    kind: %s
    host: %s
    port: %s
    username: %s
    password_env: ACME_PASSWORD
    %s
`, check, tc.kind, srv.host, srv.port, tc.user, tc.extra))
			r := e.start(serviceConfig(site), func(d *sender.Deps) {
				d.ServiceRootCAs = srv.pool
				d.ServiceResolver = hosts{"imap.acme.test": true}
				d.LookupEnv = lookup(map[string]string{"ACME_PASSWORD": tc.pw})
			})
			origin := ""
			if tc.reason != events.ReasonInterval {
				origin = newTestID(t)
			}
			test := e.scheduleTest(check, site, tc.attempt, tc.reason, origin, time.Minute)
			res := e.waitObserved(1)[0]

			if res.ErrorClass != "" || res.Phase != "" || res.Error != "" {
				t.Fatalf("class %q phase %q error %q, want every phase passed", res.ErrorClass, res.Phase, res.Error)
			}
			if res.msgID != "checked:"+test.TestID {
				t.Errorf("message id %q, want checked:%s", res.msgID, test.TestID)
			}
			if res.TestID != test.TestID || res.CheckID != check || res.Site != site || res.Kind != tc.kind ||
				res.Attempt != tc.attempt || res.Reason != tc.reason || res.OriginTestID != origin {
				t.Errorf("observation %+v does not repeat the test %+v", res.ServiceChecked, test)
			}
			if !res.StartedAt.Equal(start) || !res.FinishedAt.Equal(start) {
				t.Errorf("started %v finished %v, want the clock's %v", res.StartedAt, res.FinishedAt, start)
			}
			if want := net.JoinHostPort(srv.host, srv.port); res.Target != want {
				t.Errorf("target %q, want %q", res.Target, want)
			}
			tm := res.Timings
			if tm.ConnectMS <= 0 || tm.GreetingMS <= 0 || tm.TLSMS <= 0 || tm.CapsMS <= 0 || tm.AuthMS <= 0 || tm.TotalMS < tm.TLSMS+tm.AuthMS {
				t.Errorf("timings %+v", tm)
			}
			if tc.kind != events.KindSMTP && tm.MailboxMS <= 0 {
				t.Errorf("no mailbox timing: %+v", tm)
			}
			if res.TLS == nil || !res.TLS.Verified || !res.TLS.HostnameMatch || res.TLS.Version != "TLS1.3" || tm.TLSVersion != "TLS1.3" {
				t.Errorf("tls %+v, timings' version %q", res.TLS, tm.TLSVersion)
			}
			waitMetric(t, r.reg, "scout_sender_service_checked_total", map[string]string{"kind": tc.kind, "error_class": ""}, 1)
			waitMetric(t, r.reg, "scout_sender_service_check_seconds", map[string]string{"kind": tc.kind}, 1)
			if strings.Contains(r.logs.String(), tc.pw) {
				t.Error("the password was logged")
			}
			if srv.sessions != nil && srv.sessions() != 1 {
				t.Errorf("%d sessions, want 1", srv.sessions())
			}
		})
	}
}

func newTestID(t testing.TB) string {
	t.Helper()
	id, err := events.NewTestID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// counting is a scripted SMTP server that counts its connections and
// answers a plain dialogue, its greeting after greetingDelay.
type counting struct {
	addr  string
	conns atomic.Int32
}

func startCounting(t testing.TB, greetingDelay time.Duration) *counting {
	t.Helper()
	c := &counting{}
	c.addr = mailtest.Script(t, func(nc net.Conn) {
		c.conns.Add(1)
		peer := &probetest.Peer{C: nc}
		time.Sleep(greetingDelay)
		if peer.Send("220 mx.acme.test ESMTP") != nil {
			return
		}
		for {
			line, err := peer.Line()
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.Fields(line + " x")[0]) {
			case "EHLO":
				_ = peer.Send("250-mx.acme.test", "250 8BITMIME")
			case "QUIT":
				_ = peer.Send("221 2.0.0 Bye")
				return
			default:
				_ = peer.Send("502 5.5.1 not implemented")
			}
		}
	})
	return c
}

func plainSMTPCheck(addr string, extra string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`
sites: [eu-west]
checks:
  - id: acme-smtp
    customer: acme
    kind: smtp
    host: %s
    port: %s
    tls: none
    %s
`, host, port, extra)
}

// TestServiceCheckMonitorErrors: a check that cannot run here is observed
// with one of the monitor's classes (the evaluator's monitor_error), never
// the customer's, and no connection is made: a missing password variable,
// a test picked up after its NotAfter.
func TestServiceCheckMonitorErrors(t *testing.T) {
	srv := startCounting(t, 0)
	host, port, _ := net.SplitHostPort(srv.addr)
	e := newServiceEnv(t, fmt.Sprintf(`
sites: [eu-west]
checks:
  - id: acme-imap
    customer: acme
    kind: imap
    host: %[1]s
    port: %[2]s
    username: webscout
    password_env: ACME_IMAP_PASSWORD
  - id: acme-smtp
    customer: acme
    kind: smtp
    host: %[1]s
    port: %[2]s
    tls: none
`, host, port))
	r := e.start(serviceConfig(site), func(d *sender.Deps) {
		d.LookupEnv = lookup(map[string]string{"ACME_IMAP_PASSWORD": ""}) // set but empty
	})
	if len(r.logs.Lines(`"level":"ERROR"`, "service check password not set", "ACME_IMAP_PASSWORD")) != 1 {
		t.Errorf("no start-up error for the missing password:\n%s", r.logs)
	}

	noPW := e.scheduleTest("acme-imap", site, 1, events.ReasonInterval, "", time.Minute)
	res := e.waitObserved(1)[0]
	if res.TestID != noPW.TestID || res.ErrorClass != probe.ClassNoPassword ||
		!strings.Contains(res.Error, `check "acme-imap"`) || !strings.Contains(res.Error, "ACME_IMAP_PASSWORD") {
		t.Errorf("observation %+v, want no_password naming the check and the variable", res.ServiceChecked)
	}

	// Picked up a second after its send window closed (the sender was down).
	stale := e.scheduleTest("acme-smtp", site, 1, events.ReasonInterval, "", -time.Second)
	res = e.waitObserved(2)[1]
	if res.TestID != stale.TestID || res.ErrorClass != probe.ClassStale || res.Kind != events.KindSMTP {
		t.Errorf("observation %+v, want stale", res.ServiceChecked)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("%d connections, want none", n)
	}
	waitMetric(t, r.reg, "scout_sender_service_checked_total", map[string]string{"kind": "imap", "error_class": "no_password"}, 1)
	waitMetric(t, r.reg, "scout_sender_service_checked_total", map[string]string{"kind": "smtp", "error_class": "stale"}, 1)
}

// TestServiceCheckRedelivery: the observation cannot be published at
// first, so the test is redelivered; the redelivery publishes the
// observation made before without probing again, and a later duplicate
// delivery of the same test changes nothing: one probe, one observation.
func TestServiceCheckRedelivery(t *testing.T) {
	srv := startCounting(t, 0)
	e := newServiceEnv(t, plainSMTPCheck(srv.addr, ""))
	pub := &flakyPublisher{inner: e.publisherFor(), fail: 1}
	r := e.start(serviceConfig(site), func(d *sender.Deps) { d.Publisher = pub })
	test := e.scheduleTest("acme-smtp", site, 1, events.ReasonInterval, "", time.Minute)
	res := e.waitObserved(1)[0]
	if res.ErrorClass != "" || res.TestID != test.TestID {
		t.Fatalf("observation %+v", res.ServiceChecked)
	}
	waitMetric(t, r.reg, "scout_consumer_messages_total", map[string]string{"outcome": "nak"}, 1)
	waitMetric(t, r.reg, "scout_consumer_messages_total", map[string]string{"outcome": "ack"}, 1)

	// The same test delivered again (an ack that got lost).
	if err := r.s.Handle(natstest.Context(t), test, 3); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d probes, want 1", n)
	}
	if n := e.count(events.SubjectServiceChecked + ".>"); n != 1 {
		t.Errorf("%d service.checked stored, want 1", n)
	}
	if pub.calls() != 3 {
		t.Errorf("%d publish calls, want 3 (a failure, the retry, the duplicate)", pub.calls())
	}
	waitMetric(t, r.reg, "scout_sender_service_checked_total", map[string]string{"kind": "smtp", "error_class": ""}, 1)
}

// TestServiceCheckTimings: the dialogue's timings are what the server
// made them: its greeting delay, which starts when it accepts the
// connection (within the client's connect phase), is a lower bound of
// connect_ms + greeting_ms and of the whole dialogue's total_ms (the
// evaluator calls a check slow from total_ms).
func TestServiceCheckTimings(t *testing.T) {
	delay := 60 * time.Millisecond
	srv := startCounting(t, delay)
	e := newServiceEnv(t, plainSMTPCheck(srv.addr, "slow: 30ms\n    timeout: 20s"))
	e.start(serviceConfig(site), nil)
	e.scheduleTest("acme-smtp", site, 1, events.ReasonInterval, "", time.Minute)
	res := e.waitObserved(1)[0]
	if res.ErrorClass != "" {
		t.Fatalf("class %q: %s", res.ErrorClass, res.Error)
	}
	tm := res.Timings
	if lower := float64(delay.Milliseconds()); tm.ConnectMS+tm.GreetingMS < lower || tm.TotalMS < lower || tm.TotalMS < tm.ConnectMS+tm.GreetingMS {
		t.Errorf("connect_ms %v + greeting_ms %v, total_ms %v: want both at least the server's delay %v", tm.ConnectMS, tm.GreetingMS, tm.TotalMS, delay)
	}
	// Slow (total_ms over the check's slow: 30ms): the dialogue is kept as
	// the evidence.
	if res.Evidence == nil || strings.Join(res.Evidence.Dialogue, "\n") !=
		"S: 220 mx.acme.test ESMTP\nC: EHLO eu-west.monitor.example\nS: 250-mx.acme.test\nS: 250 8BITMIME\nC: QUIT\nS: 221 2.0.0 Bye" {
		t.Errorf("evidence of a slow check = %+v, want its whole dialogue", res.Evidence)
	}
}

// TestServiceCheckEvidence: a refused dialogue is observed with the
// transcript as its evidence, the refusal last; a quick good one carries
// none.
func TestServiceCheckEvidence(t *testing.T) {
	refusing := mailtest.Script(t, func(nc net.Conn) {
		peer := &probetest.Peer{C: nc}
		_ = peer.Send("220 mx.acme.test ESMTP")
		if _, err := peer.Line(); err == nil {
			_ = peer.Send("554 5.7.1 Service unavailable; client [127.0.0.1] blocked")
		}
		_, _ = peer.Line()
		_ = peer.Send("221 Bye")
	})
	e := newServiceEnv(t, plainSMTPCheck(refusing, ""))
	e.start(serviceConfig(site), nil)
	e.scheduleTest("acme-smtp", site, 1, events.ReasonInterval, "", time.Minute)
	res := e.waitObserved(1)[0]
	if res.ErrorClass != probe.ClassRefused {
		t.Fatalf("class %q (%s), want refused", res.ErrorClass, res.Error)
	}
	if res.Evidence == nil || len(res.Evidence.Dialogue) < 3 ||
		res.Evidence.Dialogue[0] != "S: 220 mx.acme.test ESMTP" ||
		res.Evidence.Dialogue[2] != "S: 554 5.7.1 Service unavailable; client [127.0.0.1] blocked" {
		t.Errorf("evidence %+v, want the dialogue up to the 554", res.Evidence)
	}

	good := startCounting(t, 0)
	e = newServiceEnv(t, plainSMTPCheck(good.addr, ""))
	e.start(serviceConfig(site), nil)
	e.scheduleTest("acme-smtp", site, 1, events.ReasonInterval, "", time.Minute)
	if res := e.waitObserved(1)[0]; res.ErrorClass != "" || res.Evidence != nil {
		t.Errorf("good check: class %q evidence %+v, want no evidence", res.ErrorClass, res.Evidence)
	}
}
