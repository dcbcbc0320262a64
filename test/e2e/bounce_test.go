//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/stack"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/notifier"
	"github.com/nats-io/nats.go/jetstream"
)

// Mailboxes of scripts/mailstack.sh that do not take the probe:
// unknownBox a user the customer's Postfix does not have (local(8)
// bounces it: "unknown user"), goneBox one its second MX (mx2) refuses by
// policy (550), greyBox one mx2 greylists for ever (451).
const (
	unknownBox = "nosuchuser@acme.example"
	goneBox    = "webscout@reject.acme.example"
	greyBox    = "webscout@greylist.acme.example"
)

// bounceChecks: a check of the refused mailbox, quickly retested, with a
// contact to tell.
const bounceChecks = `
sites: [e2e]
defaults:
  interval: 1h
  timeout: 60s
  slow: 10s
  retry_delay: 2s
  retries: 1
  quorum: 1
checks:
  - id: acme-gone
    customer: acme
    name: ACME mail round trip
    kind: roundtrip
    target: ` + unknownBox + `
    contacts:
      - name: ACME on-call
        phone: "+15555550100"
  - id: acme-policy
    customer: acme
    kind: roundtrip
    target: ` + goneBox + `
  - id: acme-grey
    customer: acme
    kind: roundtrip
    target: ` + greyBox + `
    timeout: 8s
    slow: 4s
    retries: 0
`

// TestLoopBounceOpensIncident: the customer's server does not know the
// probe mailbox. Postfix accepts the probe, its local(8) finds no such
// user, and Postfix bounces it with an RFC 3464 DSN (5.1.1, unknown user)
// to the
// probe's VERP envelope sender, routed to the receiver. The attempt ends
// failed at once with the bounce as its evidence (Status, Diagnostic-Code,
// Remote-MTA, Reporting-MTA, the submission's queue id); the retest
// bounces too; the incident opens with the bounce's words as its reason,
// and its SMS says them. The time from the first bounce to the incident
// is measured (docs/evaluation.md, "Hard failures told in minutes").
func TestLoopBounceOpensIncident(t *testing.T) {
	e := setup(t)
	sms := &testkit.LogBuffer{}
	l := startLoopWith(t, e, returnAddr, bounceChecks, func(cfg *stack.Config, d *stack.Deps) {
		ncfg := notifier.Defaults()
		ncfg.Env = notifier.EnvDev
		ncfg.MaxAttempts, ncfg.RetryFor, ncfg.RetryInitial, ncfg.RetryMax = 3, time.Minute, time.Second, 5*time.Second
		ncfg.SendTimeout, ncfg.Lease, ncfg.OpenWait, ncfg.Workers = 5*time.Second, time.Minute, 30*time.Second, 2
		cfg.Notifier = &ncfg
		d.Provider = notifier.NewLogProvider(sms)
	})
	l.startSMTPReceiver(listen(t, "127.0.0.1:0"))

	t0 := time.Now()
	id := l.schedule("acme-gone")
	r := l.result(id, 1)
	if r.Status != events.StatusFailed || r.ErrorClass != "bounced" || r.Evidence == nil || r.Evidence.Bounce == nil {
		t.Fatalf("result %+v, want failed, bounced, with the bounce", r)
	}
	b := r.Evidence.Bounce
	if b.Action != events.BounceFailed || b.Status != "5.1.1" || !strings.Contains(b.Diagnostic, `unknown user: "nosuchuser"`) ||
		b.ReportingMTA != "mx.acme.example" || b.FinalRecipient != unknownBox || b.Parser != "rfc3464" {
		t.Errorf("bounce %+v, want Postfix's DSN of its unknown user (5.1.1)", b)
	}
	if !strings.Contains(r.Summary, "5.1.1") || !strings.Contains(r.Summary, "unknown user") {
		t.Errorf("summary %q, want the status and the diagnostic", r.Summary)
	}
	sub := r.Evidence.Submission
	if sub == nil || sub.QueueID == "" || sub.Server != "mx.acme.example" {
		t.Fatalf("submission evidence %+v, want Postfix's name and queue id", sub)
	}
	// Postfix's own record of the same probe: mx2 said 550, it bounced.
	said := e.maillog(sub.QueueID, `dsn=5\.1\.1, status=bounced \(unknown user: "nosuchuser"\)`)
	t.Logf("maillog: %s", said)
	firstBounce := r.FinishedAt

	open := waitIncidentOpen(t, l, "acme-gone")
	took := open.OpenedAt.Sub(firstBounce)
	if open.Severity != events.SeverityCritical || !strings.HasPrefix(open.Reason, r.Summary) {
		t.Errorf("incident %s %q, want critical with the bounce as its reason", open.Severity, open.Reason)
	}
	// One segment: the check's name and the reason may be shortened, the
	// refusal and the incident id are kept.
	smsLine := regexp.MustCompile(`SMS to ACME on-call \+15555550100 \[GSM-7 \d+/160\]: DOWN ACME mail.*: .*5\.1\.1.*#` +
		regexp.QuoteMeta(open.IncidentID))
	for !smsLine.MatchString(sms.String()) {
		select {
		case <-e.ctx.Done():
			t.Fatalf("no DOWN SMS with the bounce:\n%s", sms.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Printf("e2e: probe to a refused mailbox: first bounce %v after the test was scheduled, incident open %v after the first bounce (retest after retry_delay 2s), SMS: %s\n",
		firstBounce.Sub(t0).Round(time.Millisecond), took.Round(time.Millisecond), strings.TrimSpace(sms.String()))
	if took < 0 || took > 30*time.Second {
		t.Errorf("incident opened %v after the first bounce", took)
	}
}

// waitIncidentOpen returns the first incident.open of check in the stream.
func waitIncidentOpen(t *testing.T, l *loop, check string) events.IncidentOpen {
	t.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, 90*time.Second)
	defer cancel()
	cons, err := l.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.CheckSubject(events.SubjectIncidentOpen, check)}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(90 * time.Second))
	if err != nil {
		t.Fatalf("no incident.open for %s: %v", check, err)
	}
	open, err := events.Decode[events.IncidentOpen](msg.Data())
	if err != nil {
		t.Fatal(err)
	}
	return open
}

// TestLoopBounceByPolicyAndDelay: a 550 of the MX's recipient policy
// (check_recipient_access) bounces with its own words; a greylisting that
// never ends (451) makes Postfix send a "delayed" DSN (delay_warning_time),
// which is a warning on the attempt, never its failure: the attempt ends
// as the timeout it is, the delay in its warnings.
func TestLoopBounceByPolicyAndDelay(t *testing.T) {
	e := setup(t)
	if err := mailstack("delay-warning", "1s"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mailstack("delay-warning", "0h") })
	l := startLoopWith(t, e, returnAddr, bounceChecks, nil)
	l.startSMTPReceiver(listen(t, "127.0.0.1:0"))
	policy := l.schedule("acme-policy")
	grey := l.schedule("acme-grey")

	r := l.result(policy, 1)
	if b := r.Evidence; r.Status != events.StatusFailed || b == nil || b.Bounce == nil || b.Bounce.Status != "5.1.1" ||
		!strings.Contains(b.Bounce.Diagnostic, "Recipient address rejected: mailbox no longer exists") || b.Bounce.FinalRecipient != goneBox {
		t.Errorf("policy refusal: %+v, want failed with mx2's 550 5.1.1 and its text", r)
	}
	g := l.result(grey, 1)
	warned := false
	for _, w := range g.Warnings {
		warned = warned || strings.HasPrefix(w, "delivery delayed: ") && strings.Contains(w, "451 4.7.1")
	}
	if g.Status != events.StatusTimeout || !warned {
		t.Errorf("greylisted: status %s warnings %q, want a timeout warned of the delay (451 4.7.1)", g.Status, g.Warnings)
	}
	fmt.Printf("e2e: policy refusal bounced: %s; greylisting: %s, warned %q\n", r.Summary, g.Status, g.Warnings)
}
