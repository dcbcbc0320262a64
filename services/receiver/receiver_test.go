package receiver_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/nats-io/nats.go"
)

// TestVerifiedReturnStored: a reflected probe is answered 250 only with its
// mail.returned in the stream, on the probe's own site and check, with the
// monitor-clock received_at and the reflector's stamp stored as-is (here
// 5 h ahead, docs/field-cases.md, c11).
func TestVerifiedReturnStored(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	p := probe(t)
	reflectedAt := time.Date(2026, 5, 1, 19, 0, 3, 0, time.UTC) // the reflector's clock is 5 h ahead
	msg := reflection(t, p, acmeKey, target, reflectedAt)
	msg = append([]byte("Received: from mx.acme.example by relay.acme.example; Fri, 1 May 2026 14:00:03 +0000\r\n"+
		"Received: from reflector by mx.acme.example; Fri, 1 May 2026 14:00:03 +0000\r\n"), msg...)

	// The recipient is matched case-insensitively.
	reply, _ := send(t, r.addr, target, "Scout-Return+EU-West@Monitor.Example", msg)
	if reply.Code != 250 {
		t.Fatalf("reply %v, want 250", reply)
	}
	evs, subjects := e.returned(1)
	got := evs[0]
	want := events.MailReturned{
		V: 1, TestID: p.TestID, CheckID: "acme-roundtrip", Site: "us-east", Attempt: 2, KeyID: "acme-2026a",
		StartedAt: p.StartedAt, ReflectedAt: &reflectedAt, ReceivedAt: now, Via: "smtp", Hops: 2, MatchedBy: probemail.MatchHeader, Path: probemail.PathReflector,
	}
	if got.ReflectedAt == nil || !got.ReflectedAt.Equal(reflectedAt) {
		t.Errorf("reflected_at %v, want %v as stamped", got.ReflectedAt, reflectedAt)
	}
	got.ReflectedAt = want.ReflectedAt
	if !got.StartedAt.Equal(want.StartedAt) || !got.ReceivedAt.Equal(want.ReceivedAt) {
		t.Errorf("started %v received %v, want %v %v", got.StartedAt, got.ReceivedAt, want.StartedAt, want.ReceivedAt)
	}
	got.StartedAt, got.ReceivedAt = want.StartedAt, want.ReceivedAt
	// The Received: fields are the evidence, oldest first.
	if got.Evidence == nil || len(got.Evidence.Hops) != 2 || got.Evidence.Hops[0].By != "mx.acme.example" ||
		got.Evidence.Hops[1].By != "relay.acme.example" || got.Evidence.Hops[1].DelayMS == nil || *got.Evidence.Hops[1].DelayMS != 0 {
		t.Errorf("hops evidence %+v", got.Evidence)
	}
	got.Evidence = nil
	if got != want {
		t.Errorf("mail.returned\n got %+v\nwant %+v", got, want)
	}
	if subjects[0] != events.StoredSubject("mail.returned.us-east.acme-roundtrip") {
		t.Errorf("subject %q", subjects[0])
	}
	if rtt := got.ReceivedAt.Sub(got.StartedAt); rtt != 4*time.Second {
		t.Errorf("monitor-clock rtt %v, want 4s", rtt)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_returns_total", nil); v != 1 {
		t.Errorf("returns_total %v", v)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_store_seconds", nil); v != 1 {
		t.Errorf("store_seconds observations %v", v)
	}
	if err := r.health.Ready(); err != nil {
		t.Errorf("not ready while serving: %v", err)
	}
}

// TestProbeToFallsBackToTarget: a return without X-Scout-Probe-To is
// verified for the check's target.
func TestProbeToFallsBackToTarget(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	p := probe(t)
	msg := reflection(t, p, acmeKey, "", now.Add(-time.Second))
	if bytes.Contains(msg, []byte(probemail.HeaderProbeTo)) {
		t.Fatal("test message still has X-Scout-Probe-To")
	}
	if reply, _ := send(t, r.addr, target, returnAddr, msg); reply.Code != 250 {
		t.Fatalf("reply %v", reply)
	}
	if evs, _ := e.returned(1); evs[0].TestID != p.TestID {
		t.Errorf("stored %+v", evs[0])
	}
}

// TestForgedAndStrayMailRefused: forged, unsigned, altered, replayed or
// misdirected mail is refused with 550 and the reason, and nothing is
// published.
func TestForgedAndStrayMailRefused(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	forgedKey := probemail.Key{ID: acmeKey.ID, Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{8}, 32))}
	unknownKey := probemail.Key{ID: "acme-1999", Customer: "acme", Secret: acmeKey.Secret}
	stamp := now.Add(-time.Second)
	cases := []struct {
		name     string
		msg      func(t *testing.T) []byte
		rcpt     string
		reason   string
		enhanced string
		phase    string
	}{
		{"wrong key", func(t *testing.T) []byte { return reflection(t, probe(t), forgedKey, target, stamp) },
			returnAddr, receiver.ReasonBadSignature, "5.7.1", submit.PhaseData},
		{"unsigned", func(t *testing.T) []byte {
			return []byte("From: someone@acme.example\r\nTo: " + returnAddr + "\r\nSubject: Email Scout probe " + testID(t) + "\r\n\r\nhello\r\n")
		}, returnAddr, receiver.ReasonUnsigned, "5.7.1", submit.PhaseData},
		{"altered attempt", func(t *testing.T) []byte {
			return bytes.Replace(reflection(t, probe(t), acmeKey, target, stamp), []byte("a=2;"), []byte("a=1;"), 1)
		}, returnAddr, receiver.ReasonBadSignature, "5.7.1", submit.PhaseData},
		{"redirected to another mailbox", func(t *testing.T) []byte { return reflection(t, probe(t), acmeKey, "ceo@acme.example", stamp) },
			returnAddr, receiver.ReasonBadSignature, "5.7.1", submit.PhaseData},
		{"another customer's key", func(t *testing.T) []byte {
			p := probe(t)
			p.KeyID = globex.ID
			return reflection(t, p, globex, target, stamp)
		}, returnAddr, receiver.ReasonWrongCustomer, "5.7.1", submit.PhaseData},
		{"unknown check", func(t *testing.T) []byte {
			p := probe(t)
			p.CheckID = "initech-roundtrip"
			return reflection(t, p, acmeKey, target, stamp)
		}, returnAddr, receiver.ReasonUnknownCheck, "5.7.1", submit.PhaseData},
		{"unknown key id", func(t *testing.T) []byte {
			p := probe(t)
			p.KeyID = unknownKey.ID
			return reflection(t, p, unknownKey, target, stamp)
		}, returnAddr, receiver.ReasonUnknownKey, "5.7.1", submit.PhaseData},
		{"replay of an old probe", func(t *testing.T) []byte {
			p := probe(t)
			p.StartedAt = now.Add(-49 * time.Hour)
			return reflection(t, p, acmeKey, target, p.StartedAt.Add(time.Second))
		}, returnAddr, receiver.ReasonReplay, "5.7.1", submit.PhaseData},
		{"start in the future", func(t *testing.T) []byte {
			p := probe(t)
			p.StartedAt = now.Add(time.Hour)
			return reflection(t, p, acmeKey, target, stamp)
		}, returnAddr, receiver.ReasonFuture, "5.7.1", submit.PhaseData},
		{"malformed probe header", func(t *testing.T) []byte {
			return []byte("From: x@acme.example\r\nX-Scout-Probe: v=1; k=acme-2026a; id=x\r\nSubject: hi\r\n\r\nbody\r\n")
		}, returnAddr, receiver.ReasonMalformed, "5.6.0", submit.PhaseData},
		{"not a return address (no open relay)", func(t *testing.T) []byte { return reflection(t, probe(t), acmeKey, target, stamp) },
			"postmaster@elsewhere.example", receiver.ReasonRecipient, "5.1.1", submit.PhaseRcpt},
		{"another mailbox of our domain", func(t *testing.T) []byte { return reflection(t, probe(t), acmeKey, target, stamp) },
			"scout-return+other@monitor.example", receiver.ReasonRecipient, "5.1.1", submit.PhaseRcpt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := testkit.MustMetric(t, r.reg, "scout_receiver_rejected_total", map[string]string{"reason": tc.reason})
			reply, phase := send(t, r.addr, target, tc.rcpt, tc.msg(t))
			if reply.Code != 550 || reply.Enhanced != tc.enhanced || phase != tc.phase {
				t.Errorf("reply %v in phase %q, want 550 %s in %s", reply, phase, tc.enhanced, tc.phase)
			}
			if tc.phase == submit.PhaseData && !strings.Contains(reply.Text, tc.reason) {
				t.Errorf("reply %q does not give the reason %s", reply.Text, tc.reason)
			}
			if n := e.count(); n != 0 {
				t.Fatalf("%d mail.returned stored for refused mail", n)
			}
			if after := testkit.MustMetric(t, r.reg, "scout_receiver_rejected_total", map[string]string{"reason": tc.reason}); after != before+1 {
				t.Errorf("rejected_total{reason=%s} went %v -> %v", tc.reason, before, after)
			}
		})
	}
}

// TestDuplicateReturnAcceptedOnce: the same return delivered twice is
// answered 250 both times and stored once.
func TestDuplicateReturnAcceptedOnce(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	msg := reflection(t, probe(t), acmeKey, target, now.Add(-time.Second))
	for i := 0; i < 2; i++ {
		if reply, _ := send(t, r.addr, target, returnAddr, msg); reply.Code != 250 {
			t.Fatalf("delivery %d: %v", i+1, reply)
		}
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d mail.returned stored, want 1", n)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_duplicates_total", nil); v != 1 {
		t.Errorf("duplicates_total %v, want 1", v)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_returns_total", nil); v != 1 {
		t.Errorf("returns_total %v, want 1", v)
	}
}

// TestNATSDownAnswers451: with NATS down the return is answered 451 (the
// MTA keeps it); once NATS is back, the MTA's retry is stored, once.
func TestNATSDownAnswers451(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	srv := natstest.StartAt(t, dir, port)
	e := newEnvAt(t, srv)
	cfg := config()
	cfg.StoreTimeout = 500 * time.Millisecond
	r := e.start(cfg)
	msg := reflection(t, probe(t), acmeKey, target, now.Add(-time.Second))

	srv.Shutdown()
	srv.WaitForShutdown()
	reply, phase := send(t, r.addr, target, returnAddr, msg)
	if reply.Code != 451 || reply.Enhanced != "4.3.0" || phase != submit.PhaseData {
		t.Fatalf("with NATS down: %v in %s, want 451 4.3.0 to the DATA", reply, phase)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_store_failures_total", nil); v != 1 {
		t.Errorf("store_failures_total %v", v)
	}

	natstest.StartAt(t, dir, port)
	waitConnected(t, e.nc)
	// The MTA retries until the receiver says 250 (a new JetStream leader
	// may take a moment to answer after the restart).
	ctx := natstest.Context(t)
	for {
		reply, _ = send(t, r.addr, target, returnAddr, msg)
		if reply.Code == 250 {
			break
		}
		if reply.Code != 451 || ctx.Err() != nil {
			t.Fatalf("retry after NATS came back: %v", reply)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d mail.returned stored, want exactly 1", n)
	}
}

// TestRestartKeepsAcknowledgedReturn: a return answered 250 is in the
// stream after the receiver and the NATS server both restart.
func TestRestartKeepsAcknowledgedReturn(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	srv := natstest.StartAt(t, dir, port)
	e := newEnvAt(t, srv)
	r1 := e.start(config())
	p := probe(t)
	if reply, _ := send(t, r1.addr, target, returnAddr, reflection(t, p, acmeKey, target, now.Add(-time.Second))); reply.Code != 250 {
		t.Fatalf("reply %v", reply)
	}
	r1.stop()
	srv.Shutdown()
	srv.WaitForShutdown()

	natstest.StartAt(t, dir, port)
	waitConnected(t, e.nc)
	r2 := e.start(config())
	evs, _ := e.returned(1)
	if evs[0].TestID != p.TestID {
		t.Fatalf("after the restart the stream holds %+v", evs[0])
	}
	ctx := natstest.Context(t)
	for {
		reply, _ := send(t, r2.addr, target, returnAddr, reflection(t, probe(t), acmeKey, target, now.Add(-time.Second)))
		if reply.Code == 250 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("restarted receiver: %v", reply)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := e.count(); n != 2 {
		t.Errorf("%d mail.returned stored, want 2", n)
	}
}

// TestBounceToTheReturnAddress: bounces sent to the plain return address
// (VERP off, or a system that bounces to the header From) are answered 250
// (never 5xx: no double bounce). One that quotes a probe whose signature
// verifies is stored as mail.bounced of that probe; one that names no probe,
// and a forged reflection from the null sender, are dropped and counted.
func TestBounceToTheReturnAddress(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	p := probe(t)
	reply, _ := send(t, r.addr, "", returnAddr, dsnOf(t, p, returnAddr, "failed", "5.2.2", "smtp; 552 5.2.2 <webscout@acme.example>: mailbox full"))
	if reply.Code != 250 {
		t.Fatalf("bounce answered %v, want 250", reply)
	}
	b := e.bounced(1)[0]
	if b.TestID != p.TestID || b.CheckID != "acme-roundtrip" || b.Site != "us-east" || b.Action != events.BounceFailed ||
		b.MatchedBy != events.MatchedQuotedProbe || b.Bounce.Status != "5.2.2" || !strings.Contains(b.Bounce.Diagnostic, "mailbox full") {
		t.Errorf("mail.bounced %+v", b)
	}
	if n := e.count(); n != 0 {
		t.Errorf("%d mail.returned for a bounce", n)
	}
	// A bounce that names no probe, and a forged reflection from the null
	// sender, are accepted and dropped as well: never a 5xx to <>.
	forgedKey := probemail.Key{ID: acmeKey.ID, Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{8}, 32))}
	for _, m := range [][]byte{
		[]byte("From: MAILER-DAEMON@x.example\r\nSubject: failure\r\n\r\n?\r\n"),
		reflection(t, probe(t), forgedKey, target, now.Add(-time.Second)),
	} {
		if reply, _ := send(t, r.addr, "", returnAddr, m); reply.Code != 250 {
			t.Errorf("null-sender message answered %v", reply)
		}
	}
	if n := e.count(); n != 0 {
		t.Errorf("%d mail.returned for bounces", n)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_bounces_total", map[string]string{"outcome": "unmatched"}); v != 2 {
		t.Errorf("unmatched bounces %v, want 2", v)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_bounces_total", map[string]string{"outcome": "failed"}); v != 1 {
		t.Errorf("failed bounces %v, want 1", v)
	}
}

// TestReflectionFromNullSender: a verified reflection sent with a null
// envelope sender (as RFC 3834 auto-replies may be) is a return, not a
// bounce.
func TestReflectionFromNullSender(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	p := probe(t)
	if reply, _ := send(t, r.addr, "", returnAddr, reflection(t, p, acmeKey, target, now.Add(-time.Second))); reply.Code != 250 {
		t.Fatalf("reply %v", reply)
	}
	if evs, _ := e.returned(1); evs[0].TestID != p.TestID {
		t.Errorf("stored %+v", evs[0])
	}
	for _, o := range []string{"failed", "delayed", "unmatched", "not_a_bounce", "other"} {
		if v := testkit.MustMetric(t, r.reg, "scout_receiver_bounces_total", map[string]string{"outcome": o}); v != 0 {
			t.Errorf("bounces_total{outcome=%s} %v, want 0", o, v)
		}
	}
}

// TestMessageTooLarge: a message over SCOUT_RECEIVER_MAX_BYTES is refused
// with 552 and not stored.
func TestMessageTooLarge(t *testing.T) {
	e := newEnv(t)
	cfg := config()
	cfg.MaxBytes = 4096
	r := e.start(cfg)
	msg := reflection(t, probe(t), acmeKey, target, now.Add(-time.Second))
	msg = append(msg, bytes.Repeat([]byte("padding padding padding padding padding padding padding padding\r\n"), 100)...)
	reply, _ := send(t, r.addr, target, returnAddr, msg)
	if reply.Code != 552 {
		t.Errorf("reply %v, want 552", reply)
	}
	if n := e.count(); n != 0 {
		t.Errorf("%d stored", n)
	}
}

// TestStartTLSOffered: with a certificate configured, STARTTLS is offered
// and a return over TLS is stored.
func TestStartTLSOffered(t *testing.T) {
	e := newEnv(t)
	cert, pool := mailtest.Certificate(t, "127.0.0.1", "localhost")
	cfg := config()
	cfg.TLSCert, cfg.TLSKey = writePEM(t, cert)
	r := e.start(cfg)
	ctx, cancel := context.WithTimeout(natstest.Context(t), 20*time.Second)
	defer cancel()
	res, err := submit.Send(ctx, submit.Config{Addr: r.addr, TLS: submit.TLSStartTLS, TLSConfig: &tls.Config{RootCAs: pool}},
		target, []string{returnAddr}, reflection(t, probe(t), acmeKey, target, now.Add(-time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Timings.TLSVersion == "" || res.Reply.Code != 250 {
		t.Errorf("tls %q reply %v", res.Timings.TLSVersion, res.Reply)
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d stored", n)
	}
	cfg.TLSKey = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := receiver.New(cfg, receiver.Deps{Checks: e.checks, Publisher: nopPublisher{}, Keyring: e.keys}); err == nil || !strings.Contains(err.Error(), "SCOUT_RECEIVER_TLS_KEY") {
		t.Errorf("missing key file: %v", err)
	}
}

func writePEM(t *testing.T, cert tls.Certificate) (string, string) {
	t.Helper()
	dir := t.TempDir()
	var certPEM bytes.Buffer
	for _, der := range cert.Certificate {
		_ = pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func freePort(t *testing.T) int {
	t.Helper()
	addr := mailtest.ClosedAddr(t)
	var port int
	if _, err := fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	return port
}

func waitConnected(t *testing.T, nc *nats.Conn) {
	t.Helper()
	ctx := natstest.Context(t)
	for nc.Status() != nats.CONNECTED {
		if ctx.Err() != nil {
			t.Fatalf("nats is %v", nc.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, events.Event) (bool, error) { return false, nil }

// TestReturnDKIM: with SCOUT_RECEIVER_DKIM on, a return signed by the
// customer's outgoing server for the domain of its From (the probe
// mailbox) is "pass"; one signed for another domain "pass_unaligned"; an
// unsigned one "none". The verdict does not depend on it: it is recorded.
func TestReturnDKIM(t *testing.T) {
	e := newEnv(t)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	e.txt = dnsTXT{
		"mx2026._domainkey.acme.example":  "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		"mx2026._domainkey.other.example": "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
	}
	cfg := config()
	cfg.DKIM = true
	r := e.start(cfg)
	cases := []struct {
		domain string
		want   string
	}{{"acme.example", probemail.DKIMAligned}, {"other.example", probemail.DKIMUnaligned}, {"", probemail.DKIMNone}}
	for i, tc := range cases {
		msg := reflection(t, probe(t), acmeKey, target, now.Add(-time.Second))
		if tc.domain != "" {
			signed, err := probemail.DKIMSigner{Domain: tc.domain, Selector: "mx2026", Key: key}.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			msg = signed
		}
		if reply, _ := send(t, r.addr, target, returnAddr, msg); reply.Code != 250 {
			t.Fatalf("%s: %v", tc.want, reply)
		}
		if got, _ := e.returned(i + 1); got[i].DKIM != tc.want {
			t.Errorf("signed for %q: dkim %q, want %q", tc.domain, got[i].DKIM, tc.want)
		}
	}
}

// TestForwardedProbeStored: forward mode, nothing installed at the
// customer: a forwarding rule sends the probe itself back, its envelope
// sender SRS-rewritten and a "FW:" subject; or forwards it as an
// attachment. Either is a verified return without a reflector stamp (no
// legs), stored once; a replay of the same probe is a duplicate; a
// forwarded probe whose signature broke on the way is refused.
func TestForwardedProbeStored(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	p := probe(t)
	msg, err := probemail.Build(p, target, acmeKey, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fw := append([]byte("Received: from mx.acme.example by forwarder.acme.example; Fri, 1 May 2026 14:00:03 +0000\r\n"), bytes.Replace(msg, []byte("Subject: "), []byte("Subject: FW: "), 1)...)
	srs := "SRS0=HHH=TT=monitor.example=scout-return+eu-west@acme.example"
	if reply, _ := send(t, r.addr, srs, returnAddr, fw); reply.Code != 250 {
		t.Fatalf("forwarded probe: %v", reply)
	}
	got, _ := e.returned(1)
	if got[0].TestID != p.TestID || got[0].Path != probemail.PathForward || got[0].ReflectedAt != nil {
		t.Errorf("mail.returned %+v, want a forward without a stamp", got[0])
	}
	// The same probe forwarded again (a replay, or a second rule).
	if reply, _ := send(t, r.addr, srs, returnAddr, fw); reply.Code != 250 {
		t.Fatalf("replayed probe: %v", reply)
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d mail.returned after a replay, want 1", n)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_duplicates_total", nil); v != 1 {
		t.Errorf("duplicates %v, want 1", v)
	}

	// Forwarded as an attachment (Outlook "Forward as attachment").
	p2 := probe(t)
	msg2, err := probemail.Build(p2, target, acmeKey, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	att := []byte("From: webscout@acme.example\r\nTo: " + returnAddr + "\r\nSubject: FW: Email Scout probe\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"fw\"\r\n\r\n--fw\r\nContent-Type: text/plain\r\n\r\nforwarded\r\n--fw\r\n" +
		"Content-Type: message/rfc822\r\n\r\n" + string(msg2) + "\r\n--fw--\r\n")
	if reply, _ := send(t, r.addr, srs, returnAddr, att); reply.Code != 250 {
		t.Fatalf("forwarded as an attachment: %v", reply)
	}
	got, _ = e.returned(2)
	if got[1].TestID != p2.TestID || got[1].Path != probemail.PathForwardAttachment {
		t.Errorf("mail.returned %+v, want forward_attachment", got[1])
	}

	// A forwarder that rewrote the probe header breaks its signature.
	broken := bytes.Replace(msg2, []byte("; a=2;"), []byte("; a=3;"), 1)
	if bytes.Equal(broken, msg2) {
		t.Fatal("the test did not change the signed header")
	}
	if reply, _ := send(t, r.addr, srs, returnAddr, broken); reply.Code != 550 {
		t.Errorf("forward with a broken signature: %v, want 550", reply)
	}
}
