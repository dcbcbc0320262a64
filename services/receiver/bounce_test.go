package receiver_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/nats-io/nats.go/jetstream"
)

// dsnOf is an RFC 3464 report (as Postfix writes one) about probe p, sent
// to to, with the given action, status and diagnostic, quoting the probe's
// header.
func dsnOf(t testing.TB, p probemail.Probe, to, action, status, diagnostic string) []byte {
	t.Helper()
	probeMsg, err := probemail.Build(p, target, acmeKey, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	headers, _, _ := bytes.Cut(probeMsg, []byte("\r\n\r\n"))
	return []byte(fmt.Sprintf("From: MAILER-DAEMON@mx1.acme.example (Mail Delivery System)\r\nTo: %s\r\n"+
		"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n"+
		"--b1\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n"+
		"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx1.acme.example\r\n\r\n"+
		"Final-Recipient: rfc822; %s\r\nAction: %s\r\nStatus: %s\r\nRemote-MTA: dns; mx1.acme.example\r\nDiagnostic-Code: %s\r\n"+
		"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n%s\r\n--b1--\r\n", to, target, action, status, diagnostic, headers))
}

// verpOf is p's VERP envelope sender, as the sender makes it.
func verpOf(t testing.TB, p probemail.Probe) string {
	t.Helper()
	v, err := probemail.VERPAddress(returnAddr, p.TestID, p.Site, p.CheckID, acmeKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// bounced reads the first n stored mail.bounced events.
func (e *env) bounced(n int) []events.MailBounced {
	e.t.Helper()
	ctx := natstest.Context(e.t)
	cons, err := e.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectMailBounced + ".>"}})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []events.MailBounced
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			e.t.Fatal(err)
		}
		for msg := range batch.Messages() {
			ev, err := events.Decode[events.MailBounced](msg.Data())
			if err != nil {
				e.t.Fatal(err)
			}
			out = append(out, ev)
		}
		if ctx.Err() != nil {
			e.t.Fatalf("%d of %d mail.bounced", len(out), n)
		}
	}
	return out
}

// TestVERPBounces: a bounce to a probe's VERP address from the null sender
// becomes mail.bounced (failed, or delayed for a warning) even when it
// quotes nothing of the probe; a VERP address refuses a non-null sender and
// a token that does not verify at RCPT; an auto-reply to a VERP address is
// taken and dropped.
func TestVERPBounces(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())

	// A failed DSN that quotes none of the probe (its third part cut off).
	p := probe(t)
	full := dsnOf(t, p, verpOf(t, p), "failed", "5.1.1", "smtp; 550 5.1.1 <webscout@acme.example>: Recipient address rejected: User unknown")
	bare, _, _ := bytes.Cut(full, []byte("--b1\r\nContent-Type: text/rfc822-headers"))
	bare = append(bare, []byte("--b1--\r\n")...)
	if reply, _ := send(t, r.addr, "", verpOf(t, p), bare); reply.Code != 250 {
		t.Fatalf("bounce answered %v", reply)
	}
	b := e.bounced(1)[0]
	if b.TestID != p.TestID || b.Site != "us-east" || b.CheckID != "acme-roundtrip" || b.Action != events.BounceFailed ||
		b.MatchedBy != events.MatchedVERP || b.Via != "smtp" || b.Bounce.RemoteMTA != "mx1.acme.example" || b.Bounce.Status != "5.1.1" ||
		!strings.Contains(b.Bounce.Summary, "mx1.acme.example") || !strings.Contains(b.Bounce.Summary, "550 5.1.1") {
		t.Errorf("mail.bounced %+v", b)
	}

	// A delay warning is a bounce too, with action delayed.
	p2 := probe(t)
	if reply, _ := send(t, r.addr, "", verpOf(t, p2), dsnOf(t, p2, verpOf(t, p2), "delayed", "4.4.1", "smtp; 451 4.4.1 try later")); reply.Code != 250 {
		t.Fatalf("delay warning answered %v", reply)
	}
	if d := e.bounced(2)[1]; d.TestID != p2.TestID || d.Action != events.BounceDelayed {
		t.Errorf("mail.bounced %+v, want a delay", d)
	}

	// Refused at RCPT: a non-null sender, a forged token.
	if reply, phase := send(t, r.addr, "attacker@evil.example", verpOf(t, p), bare); reply.Code != 550 || phase != "rcpt" {
		t.Errorf("non-null sender to a VERP address: %v in %s, want 550 at RCPT", reply, phase)
	}
	forged := strings.Replace(verpOf(t, p), "+"+p.TestID, "+"+testID(t), 1)
	if reply, phase := send(t, r.addr, "", forged, bare); reply.Code != 550 || phase != "rcpt" {
		t.Errorf("forged VERP token: %v in %s, want 550 at RCPT", reply, phase)
	}

	// An auto-reply to a VERP address: taken, dropped.
	autoReply := []byte("From: webscout@acme.example\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nBack on Monday.\r\n")
	if reply, _ := send(t, r.addr, "", verpOf(t, p), autoReply); reply.Code != 250 {
		t.Errorf("auto-reply answered %v", reply)
	}
	for outcome, want := range map[string]float64{"failed": 1, "delayed": 1, "not_a_bounce": 1} {
		if v := testkit.MustMetric(t, r.reg, "scout_receiver_bounces_total", map[string]string{"outcome": outcome}); v != want {
			t.Errorf("bounces_total{outcome=%s} %v, want %v", outcome, v, want)
		}
	}
	for reason, want := range map[string]float64{"verp_sender": 1, "verp_forged": 1} {
		if v := testkit.MustMetric(t, r.reg, "scout_receiver_rejected_total", map[string]string{"reason": reason}); v != want {
			t.Errorf("rejected_total{reason=%s} %v, want %v", reason, v, want)
		}
	}
	if n := e.count(); n != 0 {
		t.Errorf("%d mail.returned from bounces", n)
	}
}

// TestPostmaster: postmaster at a return address's domain (and the bare
// "postmaster") takes mail from anyone, RFC 5321 section 4.5.1; it is
// logged and counted; postmaster at another domain is refused.
func TestPostmaster(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	msg := []byte("From: admin@acme.example\r\nSubject: your monitor hits us every minute\r\n\r\nPlease slow down.\r\n")
	for _, to := range []string{"postmaster@monitor.example", "PostMaster@Monitor.Example", "postmaster"} {
		if reply, _ := send(t, r.addr, "admin@acme.example", to, msg); reply.Code != 250 {
			t.Errorf("%s answered %v", to, reply)
		}
	}
	if reply, phase := send(t, r.addr, "admin@acme.example", "postmaster@elsewhere.example", msg); reply.Code != 550 || phase != "rcpt" {
		t.Errorf("postmaster of another domain: %v in %s, want 550 at RCPT", reply, phase)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_postmaster_total", nil); v != 3 {
		t.Errorf("postmaster_total %v, want 3", v)
	}
	if n := len(r.logs.Lines("mail to postmaster", "your monitor hits us every minute")); n != 3 {
		t.Errorf("%d postmaster log lines, want 3:\n%s", n, r.logs)
	}
}
