//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/nats-io/nats.go/jetstream"
)

// fwdBox is the alias of scripts/mailstack.sh that holds just an address:
// Postfix forwards what it gets to the loop's return address.
const fwdBox = "fwdprobe@acme.example"

// forwardChecks: a round trip whose probe mailbox forwards (return:
// forward): nothing is installed on the customer's side.
const forwardChecks = `
sites: [e2e]
defaults:
  interval: 1h
  timeout: 30s
  slow: 10s
  retry_delay: 10m
  retries: 1
  quorum: 1
checks:
  - id: acme-fwd
    customer: acme
    kind: roundtrip
    target: ` + fwdBox + `
    return: forward
`

// TestLoopForwardMode: forward mode through a real Postfix alias, with
// Debian's postsrsd rewriting the envelope sender (SRS). The sender's
// probes come back unchanged but for the forwarder's Received fields: ok,
// with the round trip on the monitor's clocks, no reflector stamp (legs
// unknown), return path "forward" and no warning. The same forwarded probe
// delivered twice is stored once (counted as a duplicate); a probe
// forwarded as an attachment (message/rfc822) is recognised; a forwarded
// probe whose signed header was altered is refused with 5xx and counted.
func TestLoopForwardMode(t *testing.T) {
	e := setup(t)
	if err := mailstack("srs", "on"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mailstack("srs", "off") })
	l := startLoopWith(t, e, returnAddr, forwardChecks, nil)
	l.startSMTPReceiver(listen(t, "127.0.0.1:0"))

	var rtts []time.Duration
	for range 3 {
		r := l.result(l.schedule("acme-fwd"), 1)
		rtts = append(rtts, checkForwarded(t, r))
		// Postfix's record: local(8) forwarded the probe; the copy it
		// sent on carries an SRS envelope sender.
		sub := r.Evidence.Submission
		line := e.maillog(sub.QueueID, `status=sent \(forwarded as ([0-9A-Za-z]+)\)`)
		fwd := regexp.MustCompile(`forwarded as ([0-9A-Za-z]+)`).FindStringSubmatch(line)[1]
		e.maillog(fwd, `from=<SRS0=[^>]+@acme\.example>`)
		e.maillog(fwd, `to=<`+regexp.QuoteMeta(returnAddr)+`>.*status=sent`)
	}
	fmt.Printf("e2e: forward mode sender -> Postfix -> alias fwdprobe (postsrsd SRS) -> Postfix -> receiver (SMTP) -> evaluator: %s\n", summary(rtts))

	// The same probe forwarded twice: stored once.
	p, msg := forwardProbe(t, e, fwdBox)
	before := l.returns()
	for range 2 {
		qid := e.submit(fwdBox, msg)
		e.maillog(qid, `status=sent \(forwarded as `)
	}
	e.quiet()
	if n := l.returns() - before; n != 1 {
		t.Errorf("the probe forwarded twice was stored %d times, want 1", n)
	}
	if d := testkit.MustMetric(t, l.recvReg, "scout_receiver_duplicates_total", nil); d != 1 {
		t.Errorf("scout_receiver_duplicates_total = %v, want 1", d)
	}
	if ret := returnedOf(t, l, p.TestID); ret.Path != probemail.PathForward || ret.ReflectedAt != nil {
		t.Errorf("forwarded probe returned as %+v, want path forward without a reflector stamp", ret)
	}

	// Forwarded as an attachment, as a person or a flow rule does.
	p, msg = forwardProbe(t, e, fwdBox)
	wrapped := "From: helpdesk@acme.example\r\nTo: " + fwdBox + "\r\nSubject: FW: probe\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"fwd-1\"\r\n\r\n--fwd-1\r\nContent-Type: text/plain\r\n\r\nSee the attached message.\r\n" +
		"--fwd-1\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"probe.eml\"\r\n\r\n" +
		string(msg) + "\r\n--fwd-1--\r\n"
	qid := e.submit(fwdBox, []byte(wrapped))
	e.maillog(qid, `status=sent \(forwarded as `)
	if ret := returnedOf(t, l, p.TestID); ret.Path != probemail.PathForwardAttachment {
		t.Errorf("probe forwarded as an attachment returned with path %q, want %s", ret.Path, probemail.PathForwardAttachment)
	}

	// A forwarded probe whose signed header was altered (its attempt
	// number): the receiver refuses it, Postfix bounces the forward.
	_, msg = forwardProbe(t, e, fwdBox)
	altered := bytes.Replace(msg, []byte("; a=1;"), []byte("; a=2;"), 1)
	if bytes.Equal(altered, msg) {
		t.Fatal("the probe header has no \"; a=1;\" to alter")
	}
	qid = e.submit(fwdBox, altered)
	line := e.maillog(qid, `status=sent \(forwarded as `)
	fwd := regexp.MustCompile(`forwarded as ([0-9A-Za-z]+)`).FindStringSubmatch(line)[1]
	e.maillog(fwd, `status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550`)
	if n := testkit.MustMetric(t, l.recvReg, "scout_receiver_rejected_total", map[string]string{"reason": receiver.ReasonBadSignature}); n != 1 {
		t.Errorf("scout_receiver_rejected_total{reason=bad_signature} = %v, want 1", n)
	}
}

// checkForwarded asserts a first-revision ok result of a forwarded probe:
// a real round trip, no reflector stamp, path forward, no warning.
func checkForwarded(t *testing.T, r events.CheckResult) time.Duration {
	t.Helper()
	if r.Status != events.StatusOK || r.Revision != 1 || r.RTTMS == nil || r.ReceivedAt == nil {
		t.Fatalf("result %+v, want revision 1 ok with an rtt", r)
	}
	if r.ReflectedAt != nil || r.OutgoingLegMS != nil || r.IncomingLegMS != nil || r.ReturnPath != probemail.PathForward || len(r.Warnings) > 0 {
		t.Errorf("result reflected_at %v legs %v/%v path %q warnings %v, want no stamp, no legs, path forward, no warning",
			r.ReflectedAt, r.OutgoingLegMS, r.IncomingLegMS, r.ReturnPath, r.Warnings)
	}
	if r.Evidence == nil || r.Evidence.Submission == nil || r.Evidence.Submission.QueueID == "" {
		t.Fatalf("no submission evidence: %+v", r.Evidence)
	}
	return ms(r.RTTMS)
}

// forwardProbe builds a probe of check acme-fwd for to, as the sender
// would, with a test id no scheduler gave (the evaluator ignores its
// return).
func forwardProbe(t *testing.T, e *env, to string) (probemail.Probe, []byte) {
	t.Helper()
	id, err := events.NewTestID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := probemail.Probe{KeyID: e.key.ID, TestID: id, CheckID: "acme-fwd", Site: site, Attempt: 1,
		StartedAt: time.Now().Truncate(time.Millisecond), ReturnTo: returnAddr}
	msg, err := probemail.Build(p, to, e.key, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p, msg
}

// returnedOf waits for the mail.returned of test id in the stream.
func returnedOf(t *testing.T, l *loop, id string) events.MailReturned {
	t.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		cons, err := l.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{events.SubjectMailReturned + ".>"}})
		if err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
			if err != nil {
				break
			}
			ev, err := events.Decode[events.MailReturned](msg.Data())
			if err == nil && ev.TestID == id {
				return ev
			}
		}
	}
	t.Fatalf("no mail.returned for test %s", id)
	return events.MailReturned{}
}
