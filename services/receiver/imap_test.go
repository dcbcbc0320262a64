package receiver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/emersion/go-imap/v2"
)

// IMAP mode against a real go-imap/v2 server (imapserver + imapmemserver)
// on 127.0.0.1, with a real embedded JetStream and a fake clock.

var imapCaps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}}

func imapConfig(t *testing.T, addr string) receiver.Config {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config()
	cfg.Mode = receiver.ModeIMAP
	cfg.IMAPServer = host
	cfg.IMAPPort, _ = strconv.Atoi(port)
	cfg.IMAPTLS = receiver.IMAPTLSNone
	cfg.IMAPUser, cfg.IMAPPassword = mailtest.IMAPUser, mailtest.IMAPPassword
	cfg.IMAPMailbox = "INBOX"
	cfg.IMAPPollInterval = 10 * time.Second
	cfg.IMAPIdleRefresh = 9 * time.Minute
	cfg.IMAPCleanupMargin = time.Hour // clean-up age: 10m (the checks' timeout) + 1h
	return cfg
}

// siteProbe is a probe of acme-roundtrip from site s with s's return
// address, started at startedAt.
func siteProbe(t testing.TB, s string, startedAt time.Time) probemail.Probe {
	return probemail.Probe{KeyID: acmeKey.ID, TestID: testID(t), CheckID: "acme-roundtrip", Site: s, Attempt: 1,
		StartedAt: startedAt, ReturnTo: "scout-return+" + s + "@monitor.example"}
}

// delivered is msg as a delivery agent stores it: with Return-Path.
func delivered(returnPath string, msg []byte) []byte {
	return append([]byte("Return-Path: <"+returnPath+">\r\nDelivered-To: "+returnAddr+"\r\n"), msg...)
}

// returned is p reflected 1s after its start, as delivered to the mailbox.
func returned(t testing.TB, p probemail.Probe) []byte {
	return delivered(target, reflection(t, p, acmeKey, target, p.StartedAt.Add(time.Second)))
}

func dsn(p probemail.Probe, t testing.TB) []byte {
	msg, err := probemail.Build(p, target, acmeKey, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	headers, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	return delivered("", []byte(fmt.Sprintf("From: MAILER-DAEMON@mx.acme.example (Mail Delivery System)\r\nTo: %s\r\n"+
		"Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n"+
		"--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"+
		"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.acme.example\r\n\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: 5.2.2\r\n"+
		"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n%s\r\n--b1--\r\n", returnAddr, target, headers)))
}

var lunch = delivered("friend@example.org", []byte("From: friend@example.org\r\nTo: "+returnAddr+"\r\n"+
	"Subject: Email Scout probe lunch?\r\nDate: Fri, 1 May 2026 13:00:00 +0000\r\n\r\nhi\r\n"))

// waitIdle waits until the receiver's watcher idles on the fake clock.
func (e *env) waitIdle(ctx context.Context) {
	e.t.Helper()
	if err := e.clock.BlockUntilContext(ctx, 1); err != nil {
		e.t.Fatal(err)
	}
}

// TestIMAPTakesReturnsAndLeavesTheRest: this site's return is stored with
// Via imap and the time the watcher saw it, then deleted; foreign mail,
// another site's return, a forged return and a bounce stay in the
// mailbox. A return arriving while the receiver idles is taken at once.
func TestIMAPTakesReturnsAndLeavesTheRest(t *testing.T) {
	e := newEnv(t)
	ctx := natstest.Context(t)
	srv := mailtest.NewIMAPServer(t, imapCaps)
	forgedKey := probemail.Key{ID: acmeKey.ID, Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{8}, 32))}
	pA := siteProbe(t, site, now.Add(-4*time.Second))
	srv.Deliver(returned(t, pA), now.Add(-8*time.Hour)) // INTERNALDATE: any date (c10)
	uidF := srv.Deliver(lunch, time.Time{})
	uidO := srv.Deliver(returned(t, siteProbe(t, "us-east", now.Add(-4*time.Second))), time.Time{})
	pX := siteProbe(t, site, now.Add(-4*time.Second))
	uidX := srv.Deliver(delivered(target, reflection(t, pX, forgedKey, target, now)), time.Time{})
	uidB := srv.Deliver(dsn(siteProbe(t, site, now.Add(-time.Minute)), t), time.Time{})

	r := e.start(imapConfig(t, srv.Addr))
	evs, subjects := e.returned(1)
	got := evs[0]
	if got.TestID != pA.TestID || got.Via != "imap" || got.Site != site || subjects[0] != events.StoredSubject("mail.returned.eu-west.acme-roundtrip") {
		t.Errorf("stored %+v on %s", got, subjects[0])
	}
	if !got.ReceivedAt.Equal(now) || got.ReceivedAt.Sub(got.StartedAt) != 4*time.Second {
		t.Errorf("received_at %v (rtt %v), want the fake clock's %v (rtt 4s)", got.ReceivedAt, got.ReceivedAt.Sub(got.StartedAt), now)
	}
	srv.WaitUIDs(ctx, uidF, uidO, uidX, uidB)
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"scout_receiver_imap_deleted_total", map[string]string{"reason": receiver.DeletedTaken}, 1},
		{"scout_receiver_imap_deleted_total", map[string]string{"reason": receiver.DeletedCleanup}, 0},
		{"scout_receiver_bounces_total", nil, 1},
		{"scout_receiver_rejected_total", map[string]string{"reason": receiver.ReasonBadSignature}, 1},
	} {
		if v := testkit.MustMetric(t, r.reg, m.name, m.labels); v != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, v, m.want)
		}
	}
	if err := r.health.Ready(); err != nil {
		t.Errorf("not ready while watching: %v", err)
	}
	if !strings.Contains(r.logs.String(), `"test_id":"`+pA.TestID+`"`) {
		t.Error("the stored return is not logged with its test id")
	}

	// While idling: a return 0.4 s after its start is taken at once.
	e.waitIdle(ctx)
	e.clock.Advance(400 * time.Millisecond)
	pC := siteProbe(t, site, now)
	srv.Deliver(returned(t, pC), time.Time{})
	evs, _ = e.returned(2)
	if evs[1].TestID != pC.TestID || evs[1].ReceivedAt.Sub(evs[1].StartedAt) != 400*time.Millisecond {
		t.Errorf("stored %+v, want %s with rtt 400ms", evs[1], pC.TestID)
	}
	srv.WaitUIDs(ctx, uidF, uidO, uidX, uidB)
	if n := e.count(); n != 2 {
		t.Errorf("%d mail.returned, want 2", n)
	}
}

// TestIMAPFastReturnsAndCleanup is docs/field-cases.md, c01 in IMAP mode: probes
// that return in 0.4 s and 0.5 s are taken (never mistaken for orphans);
// the clean-up deletes only this site's probes that could not be taken
// and whose signed start is older than the longest timeout plus the
// margin, never another site's, never a young one.
func TestIMAPFastReturnsAndCleanup(t *testing.T) {
	e := newEnv(t)
	ctx := natstest.Context(t)
	srv := mailtest.NewIMAPServer(t, imapCaps)
	t0 := now
	// Left in the mailbox from before: this site's replay (3 days old: not
	// taken, deleted at once), another site's (as old: never touched), a
	// return of a check this receiver does not know yet (taken by none,
	// deleted once older than 10m + 1h), a bounce quoting a probe.
	pOld := siteProbe(t, site, t0.Add(-72*time.Hour))
	uidOld := srv.Deliver(returned(t, pOld), time.Time{})
	uidOther := srv.Deliver(returned(t, siteProbe(t, "us-east", t0.Add(-72*time.Hour))), time.Time{})
	pNew := siteProbe(t, site, t0.Add(-time.Minute))
	pNew.CheckID = "acme-new-check"
	uidNew := srv.Deliver(returned(t, pNew), time.Time{})
	uidF := srv.Deliver(lunch, time.Time{})

	r := e.start(imapConfig(t, srv.Addr))
	srv.WaitUIDs(ctx, uidOther, uidNew, uidF)
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_imap_deleted_total", map[string]string{"reason": receiver.DeletedCleanup}); v != 1 {
		t.Errorf("cleanup deletions %v, want 1 (the 3-day-old probe of this site)", v)
	}
	_ = uidOld

	// t=0 test A sent; t=0.4 A returned; t=300 test B sent; t=300.5 B returned.
	e.waitIdle(ctx)
	pA := siteProbe(t, site, t0)
	e.clock.Advance(400 * time.Millisecond)
	srv.Deliver(returned(t, pA), time.Time{})
	evs, _ := e.returned(1)
	e.waitIdle(ctx)
	pB := siteProbe(t, site, t0.Add(300*time.Second))
	e.clock.Advance(300*time.Second - 400*time.Millisecond) // t=300
	e.waitIdle(ctx)
	e.clock.Advance(500 * time.Millisecond) // t=300.5
	srv.Deliver(returned(t, pB), time.Time{})
	evs, _ = e.returned(2)
	for i, want := range []struct {
		id  string
		rtt time.Duration
	}{{pA.TestID, 400 * time.Millisecond}, {pB.TestID, 500 * time.Millisecond}} {
		if evs[i].TestID != want.id || evs[i].ReceivedAt.Sub(evs[i].StartedAt) != want.rtt {
			t.Errorf("return %d: %s rtt %v, want %s rtt %v", i, evs[i].TestID, evs[i].ReceivedAt.Sub(evs[i].StartedAt), want.id, want.rtt)
		}
	}
	srv.WaitUIDs(ctx, uidOther, uidNew, uidF)

	// Sweeps every 10 minutes: the unknown check's return goes at the
	// first one after its age passed 1h10m (t = 1h09m), never before.
	var goneAt time.Duration
	for goneAt == 0 {
		e.waitIdle(ctx)
		e.clock.Advance(time.Minute)
		e.waitIdle(ctx)
		elapsed := e.clock.Now().Sub(t0)
		uids := srv.UIDs()
		switch {
		case !slices.Contains(uids, uidNew):
			goneAt = elapsed
		case elapsed > 2*time.Hour:
			t.Fatalf("the stale probe is still there at t=%v", elapsed)
		}
		if !slices.Contains(uids, uidOther) || !slices.Contains(uids, uidF) {
			t.Fatalf("at t=%v the mailbox holds %v: another site's probe or foreign mail deleted", elapsed, uids)
		}
	}
	if age := goneAt + time.Minute; age <= 70*time.Minute || age > 80*time.Minute {
		t.Errorf("the stale probe was deleted at age %v, want the first sweep after 1h10m", age)
	}
	if n := e.count(); n != 2 {
		t.Errorf("%d mail.returned, want 2 (A and B; nothing lost, nothing extra)", n)
	}
	if v := testkit.MustMetric(t, r.reg, "scout_receiver_imap_deleted_total", map[string]string{"reason": receiver.DeletedCleanup}); v != 2 {
		t.Errorf("cleanup deletions %v, want 2", v)
	}
}

// TestIMAPUIDVALIDITYChange: after the mailbox is re-created (new
// UIDVALIDITY, UIDs from 1 again), the receiver scans it from the start.
func TestIMAPUIDVALIDITYChange(t *testing.T) {
	e := newEnv(t)
	ctx := natstest.Context(t)
	srv := mailtest.NewIMAPServer(t, imapCaps)
	srv.Deliver(lunch, time.Time{})
	srv.Deliver(lunch, time.Time{})
	srv.Deliver(returned(t, siteProbe(t, site, now.Add(-time.Second))), time.Time{}) // UID 3
	r := e.start(imapConfig(t, srv.Addr))
	e.returned(1)
	srv.WaitUIDs(ctx, 1, 2)

	srv.RecreateInbox()
	pB := siteProbe(t, site, now)
	if uid := srv.Deliver(returned(t, pB), time.Time{}); uid != 1 {
		t.Fatalf("first UID of the new mailbox %d", uid)
	}
	srv.Restart()
	for e.count() < 2 {
		e.waitIdle(ctx)
		if r.health.Ready() != nil { // reconnecting: past the backoff
			e.clock.Advance(5 * time.Minute)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if evs, _ := e.returned(2); evs[1].TestID != pB.TestID {
		t.Errorf("second return %+v, want %s", evs[1], pB.TestID)
	}
	srv.WaitUIDs(ctx)
}

// TestIMAPJetStreamDown: while JetStream cannot store mail.returned,
// nothing is deleted; once it is back, the return is taken with the time
// it was first seen, and deleted.
func TestIMAPJetStreamDown(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	ns := natstest.StartAt(t, dir, port)
	e := newEnvAt(t, ns)
	ctx := natstest.Context(t)
	srv := mailtest.NewIMAPServer(t, imapCaps)
	cfg := imapConfig(t, srv.Addr)
	cfg.StoreTimeout = 500 * time.Millisecond
	r := e.start(cfg)
	e.waitIdle(ctx)

	ns.Shutdown()
	ns.WaitForShutdown()
	e.clock.Advance(time.Second)
	pA := siteProbe(t, site, now)
	uidA := srv.Deliver(returned(t, pA), time.Time{})
	for testkit.MustMetric(t, r.reg, "scout_receiver_store_failures_total", nil) < 1 {
		if ctx.Err() != nil {
			t.Fatal("no store failure")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.waitIdle(ctx)
	srv.WaitUIDs(ctx, uidA) // kept

	natstest.StartAt(t, dir, port)
	waitConnected(t, e.nc)
	// Retried every 30s until JetStream answers again (a new leader may
	// take a moment), and deleted only then.
	for len(srv.UIDs()) > 0 {
		e.waitIdle(ctx)
		e.clock.Advance(30 * time.Second)
		e.waitIdle(ctx)
		if ctx.Err() != nil {
			t.Fatal("the return was not taken after JetStream came back")
		}
	}
	evs, _ := e.returned(1)
	if evs[0].TestID != pA.TestID || evs[0].ReceivedAt.Sub(pA.StartedAt) != time.Second {
		t.Errorf("stored %+v (rtt %v), want %s received when first seen (rtt 1s)", evs[0], evs[0].ReceivedAt.Sub(pA.StartedAt), pA.TestID)
	}
	if n := e.count(); n != 1 {
		t.Errorf("%d mail.returned, want 1", n)
	}
}

// TestIMAPRefusedLogin: a wrong password stops the receiver with an error
// naming the variables to fix.
func TestIMAPRefusedLogin(t *testing.T) {
	e := newEnv(t)
	srv := mailtest.NewIMAPServer(t, imapCaps)
	cfg := imapConfig(t, srv.Addr)
	cfg.IMAPPassword = "wrong"
	r, err := receiver.New(cfg, receiver.Deps{Checks: e.checks, Publisher: nopPublisher{}, Keyring: e.keys, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(natstest.Context(t))
	if err == nil || !strings.Contains(err.Error(), "SCOUT_RECEIVER_IMAP_USER") || !strings.Contains(err.Error(), "login as "+mailtest.IMAPUser) {
		t.Errorf("Run = %v, want a refused login naming SCOUT_RECEIVER_IMAP_USER", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Error("Run ran until the test's end")
	}
}

// TestIMAPOAuthLogin: with SCOUT_RECEIVER_IMAP_OAUTH_* (client
// credentials from a token endpoint on loopback) the receiver logs in with
// AUTHENTICATE XOAUTH2 and the issued token, no password, and takes a
// return.
func TestIMAPOAuthLogin(t *testing.T) {
	e := newEnv(t)
	srv := mailtest.NewIMAPServer(t, imapCaps)
	tokens := probetest.NewTokenEndpoint(t, srv.AllowToken)
	p := siteProbe(t, site, now.Add(-2*time.Second))
	srv.Deliver(returned(t, p), time.Time{})
	cfg := imapConfig(t, srv.Addr)
	cfg.IMAPPassword = ""
	cfg.IMAPOAuth = mailauth.Config{Provider: mailauth.ProviderMicrosoft, TokenURL: tokens.URL,
		ClientID: probetest.ClientID, ClientSecret: probetest.ClientSecret}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e.start(cfg)
	evs, _ := e.returned(1)
	if evs[0].TestID != p.TestID || evs[0].Via != "imap" {
		t.Errorf("stored %+v", evs[0])
	}
	if used := srv.TokensUsed(); len(used) == 0 || used[0] != "tok-1" || tokens.Issued() != 1 {
		t.Errorf("tokens used %v, issued %d: want tok-1, issued once", used, tokens.Issued())
	}
}

// TestIMAPOAuthRevokedSecret: a client secret the token endpoint refuses
// stops the receiver with an error naming the variables and the provider's
// words (AADSTS7000215); the IMAP server is never asked.
func TestIMAPOAuthRevokedSecret(t *testing.T) {
	e := newEnv(t)
	srv := mailtest.NewIMAPServer(t, imapCaps)
	tokens := probetest.NewTokenEndpoint(t, srv.AllowToken)
	tokens.Revoke()
	cfg := imapConfig(t, srv.Addr)
	cfg.IMAPPassword = ""
	cfg.IMAPOAuth = mailauth.Config{Provider: mailauth.ProviderMicrosoft, TokenURL: tokens.URL,
		ClientID: probetest.ClientID, ClientSecret: probetest.ClientSecret}
	r, err := receiver.New(cfg, receiver.Deps{Checks: e.checks, Publisher: nopPublisher{}, Keyring: e.keys, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(natstest.Context(t))
	if err == nil || !strings.Contains(err.Error(), "SCOUT_RECEIVER_IMAP_USER") || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("Run = %v, want the refused secret named", err)
	}
	if strings.Contains(fmt.Sprint(err), probetest.ClientSecret) {
		t.Errorf("the secret is in the error: %v", err)
	}
	if n := srv.Commands("AUTHENTICATE") + srv.Commands("LOGIN"); n != 0 {
		t.Errorf("%d logins tried at the IMAP server, want none", n)
	}
}

// TestIMAPOAuthConfig: a password and an OAuth login together, or an OAuth
// login missing a field, are refused naming the variables.
func TestIMAPOAuthConfig(t *testing.T) {
	cfg := imapConfig(t, "127.0.0.1:143")
	cfg.IMAPOAuth = mailauth.Config{Provider: mailauth.ProviderMicrosoft, Tenant: "acme.example", ClientID: "c", ClientSecret: "s"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "give a password or an OAuth login, not both") {
		t.Errorf("password and OAuth: %v", err)
	}
	cfg.IMAPPassword = ""
	cfg.IMAPOAuth.ClientID = ""
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "SCOUT_RECEIVER_IMAP_OAUTH_CLIENT_ID: required by provider microsoft") {
		t.Errorf("no client id: %v", err)
	}
	cfg.IMAPOAuth = mailauth.Config{}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "SCOUT_RECEIVER_IMAP_PASSWORD: imap mode needs the mailbox's password (or an OAuth login") {
		t.Errorf("neither: %v", err)
	}
}

// TestIMAPFastPollWhileProbesAreOut: a mail.sent of this site (core NATS)
// makes the receiver leave its IDLE (here one that announces nothing) and
// poll every SCOUT_RECEIVER_IMAP_FAST_POLL; the return is stored with
// received_at the middle of the window it arrived in: between the NOOP
// that found the mailbox empty and the one that found it, one fast poll
// wide, or from the probe's start when it started within the window.
// Another site's mail.sent changes nothing.
func TestIMAPFastPollWhileProbesAreOut(t *testing.T) {
	e := newEnv(t)
	ctx := natstest.Context(t)
	srv := mailtest.NewIMAPServer(t, imapCaps)
	srv.SilentIdle(true)
	cfg := imapConfig(t, srv.Addr)
	cfg.IMAPFastPoll = 100 * time.Millisecond
	e.start(cfg)
	if err := e.clock.BlockUntilContext(ctx, 1); err != nil { // idling
		t.Fatal(err)
	}
	noops := srv.Commands("NOOP")
	sent := func(s string) {
		ev := events.MailSent{V: events.SchemaVersion, TestID: testID(t), CheckID: "acme-roundtrip", Site: s, Attempt: 1,
			Status: events.SentOK, StartedAt: e.clock.Now(), SentAt: e.clock.Now()}
		if _, err := (platform.JetStreamPublisher{JS: e.js}).Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	sent("us-east")
	e.nc.Flush()
	time.Sleep(50 * time.Millisecond) // delivered to the subscription by now: it must not wake the watcher
	if n := srv.Commands("NOOP"); n != noops {
		t.Fatalf("another site's mail.sent woke the watcher (%d NOOPs)", n-noops)
	}
	t0 := e.clock.Now()
	sent(site)
	for srv.Commands("NOOP") == noops { // IDLE ended, the empty mailbox asked
		select {
		case <-ctx.Done():
			t.Fatal("the site's mail.sent did not end IDLE")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := e.clock.BlockUntilContext(ctx, 1); err != nil { // the fast poll's wait
		t.Fatal(err)
	}
	p := siteProbe(t, site, t0.Add(-2*time.Second))
	srv.Deliver(returned(t, p), time.Time{})
	e.clock.Advance(100 * time.Millisecond)
	evs, _ := e.returned(1)
	if want := t0.Add(50 * time.Millisecond); evs[0].TestID != p.TestID || !evs[0].ReceivedAt.Equal(want) {
		t.Errorf("stored %s received_at %v, want %s at %v (the middle of the 100 ms window)", evs[0].TestID, evs[0].ReceivedAt, p.TestID, want)
	}

	// A probe started within the window it came back in (CI, 2026-12-06:
	// a round trip of -1 ms through Postfix and Dovecot): the window
	// starts at its start, not before. The middle of the whole window
	// would be 10 ms before the probe started.
	if err := e.clock.BlockUntilContext(ctx, 1); err != nil { // the next fast poll's wait
		t.Fatal(err)
	}
	t1 := e.clock.Now()
	p2 := siteProbe(t, site, t1.Add(60*time.Millisecond))
	srv.Deliver(returned(t, p2), time.Time{})
	e.clock.Advance(100 * time.Millisecond)
	evs, _ = e.returned(2)
	if want := t1.Add(80 * time.Millisecond); evs[1].TestID != p2.TestID || !evs[1].ReceivedAt.Equal(want) {
		t.Errorf("stored %s received_at %v, want %s at %v (the middle of its start and the scan that found it)", evs[1].TestID, evs[1].ReceivedAt, p2.TestID, want)
	}
}
