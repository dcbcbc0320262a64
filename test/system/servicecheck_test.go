package system

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/emersion/go-smtp"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
)

// blockingSMTP is a go-smtp server that answers EHLO with 554 5.7.1 when
// the client's EHLO name is one of blocked (the sites a customer's
// firewall rejects), and a normal session otherwise.
func blockingSMTP(t testing.TB, blocked ...string) string {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		for _, b := range blocked {
			if c.Hostname() == b {
				return nil, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Service unavailable; client host blocked"}
			}
		}
		return acceptSession{}, nil
	}))
	srv.Domain = "mx.acme.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

type acceptSession struct{}

func (acceptSession) Reset()                               {}
func (acceptSession) Logout() error                        { return nil }
func (acceptSession) Mail(string, *smtp.MailOptions) error { return nil }
func (acceptSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (acceptSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// TestServiceCheckIncident runs three senders (one per site) and the real
// evaluator on one embedded NATS and one fake clock: the customer's SMTP
// server answers EHLO with 554 at two of the three sites. The senders
// report what they observed, the evaluator makes the verdicts, the
// failures are retested and confirmed, and exactly one incident opens,
// whose reason names the protocol, the phase and the server's reply.
func TestServiceCheckIncident(t *testing.T) {
	sites := []string{"ap-south", "eu-west", "us-east"}
	addr := blockingSMTP(t, "eu-west.monitor.example", "us-east.monitor.example")
	host, port, _ := net.SplitHostPort(addr)
	f, err := checks.Parse("checks.yaml", []byte(fmt.Sprintf(`
sites: [ap-south, eu-west, us-east]
checks:
  - id: acme-smtp
    customer: acme
    name: ACME MX
    kind: smtp
    host: %s
    port: %s
    tls: none
    interval: 5m
    timeout: 10s
    slow: 5s
    retry_delay: 2s
    retries: 1
    quorum: 2
`, host, port)))
	if err != nil {
		t.Fatal(err)
	}
	const keySpec = "acme:k1:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx"
	keys, err := probemail.ParseKeys(keySpec)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(natstest.Context(t))
	var done []chan error
	run := func(name string, c platform.Component) {
		ch := make(chan error, 1)
		go func() { ch <- c.Run(ctx) }()
		done = append(done, ch)
	}
	t.Cleanup(func() {
		cancel()
		for _, ch := range done {
			if err := <-ch; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	})
	pub := platform.JetStreamPublisher{JS: js}
	for _, at := range sites {
		cfg := sender.Defaults()
		cfg.Site, cfg.ReturnAddress, cfg.ProbeKeys = at, "scout@"+at+".monitor.example", keySpec
		cfg.RelayAddr, cfg.RelayTLS, cfg.HeloName, cfg.Workers = "127.0.0.1:1", "none", at+".monitor.example", 2
		s, err := sender.New(cfg, sender.Deps{Checks: f, JetStream: js, Publisher: pub, Keyring: keys, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		run("sender "+at, s)
	}
	ecfg := evaluator.Defaults()
	ecfg.SubmitGrace, ecfg.Workers, ecfg.Failover = 30*time.Second, 2, 5*time.Second
	ev, err := evaluator.New(ecfg, evaluator.Deps{Checks: f, JS: js, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	run("evaluator", ev)

	now := clock.Now()
	for i, at := range sites {
		id, err := events.NewTestID(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctx, events.TestScheduled{V: 1, TestID: id, CheckID: "acme-smtp", Site: at, Kind: events.KindSMTP,
			Attempt: 1, Reason: events.ReasonInterval, Slot: int64(i), ScheduledAt: now, NotAfter: now.Add(75 * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	// Move the fake clock in small steps (the retests are due retry_delay
	// after a failure) until the incident opens.
	for count(t, js, events.SubjectIncidentOpen+".>") == 0 {
		if ctx.Err() != nil {
			t.Fatal("no incident before the deadline")
		}
		time.Sleep(50 * time.Millisecond)
		clock.Advance(250 * time.Millisecond)
	}
	inc := read[events.IncidentOpen](t, js, events.SubjectIncidentOpen+".>")[0]
	want := "SMTP capabilities failed at 2 of 3 sites: 554 5.7.1 Service unavailable; client host blocked; retest failed"
	if inc.Reason != want || inc.Severity != events.SeverityCritical || inc.Kind != events.KindSMTP || inc.CheckID != "acme-smtp" {
		t.Errorf("incident %s %s %s: %q, want critical smtp %q", inc.CheckID, inc.Kind, inc.Severity, inc.Reason, want)
	}
	var voters []string
	for _, v := range inc.Sites {
		voters = append(voters, v.Site)
		for _, a := range v.Attempts {
			if a.Status != events.StatusFailed || a.Phase != "capabilities" || a.Reply == nil || a.Reply.Code != 554 {
				t.Errorf("site %s attempt %+v, want failed in capabilities with the 554", v.Site, a)
			}
		}
	}
	if strings.Join(voters, ",") != "eu-west,us-east" {
		t.Errorf("voting sites %v, want eu-west and us-east", voters)
	}
	// Every verdict is the evaluator's, made from a sender's observation;
	// the healthy site stayed up.
	observed := read[events.ServiceChecked](t, js, events.SubjectServiceChecked+".>")
	results := read[events.CheckResult](t, js, events.SubjectCheckResult+".>")
	if len(results) != len(observed) {
		t.Errorf("%d verdicts for %d observations", len(results), len(observed))
	}
	for _, r := range results {
		want := events.StatusFailed
		if r.Site == "ap-south" {
			want = events.StatusOK
		}
		if r.Status != want || r.Kind != events.KindSMTP {
			t.Errorf("%s attempt %d (%s): %s %s, want %s", r.Site, r.Attempt, r.Reason, r.Kind, r.Status, want)
		}
	}
	// More time passes: the open incident is not opened again.
	for range 8 {
		time.Sleep(50 * time.Millisecond)
		clock.Advance(time.Second)
	}
	if n := count(t, js, events.SubjectIncidentOpen+".>"); n != 1 {
		t.Errorf("%d incident.open stored, want 1", n)
	}
}

// count returns the number of stored messages whose subject matches filter.
func count(t testing.TB, js jetstream.JetStream, filter string) int {
	t.Helper()
	ctx := natstest.Context(t)
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// read returns every event stored on filter, in stream order.
func read[T any, P interface {
	*T
	events.Event
}](t testing.TB, js jetstream.JetStream, filter string) []T {
	t.Helper()
	n := count(t, js, filter)
	ctx := natstest.Context(t)
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			ev, err := events.Decode[T, P](msg.Data())
			if err != nil {
				t.Fatalf("%s: %v", msg.Subject(), err)
			}
			out = append(out, ev)
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d events on %s before the deadline", len(out), n, filter)
		}
	}
	return out
}
