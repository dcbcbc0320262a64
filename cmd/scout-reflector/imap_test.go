package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/imapwatch"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"
	"github.com/jonboulle/clockwork"
)

// Tests of imap mode: the reflector's rules on a folder watched over IMAP
// (a go-imap/v2 server on 127.0.0.1), reflections sent over SMTP to a
// go-smtp server on 127.0.0.1.

var (
	imapKey   = probemail.Key{ID: "acme-1", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{7}, 32))}
	imapStart = time.Date(2026, 11, 29, 7, 55, 0, 0, time.UTC) // 23:55 the day before in UTC-8 (c10)
)

// testCtx bounds a test by its deadline.
func testCtx(t *testing.T) context.Context {
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		t.Cleanup(cancel)
	}
	return ctx
}

func imapProbe(t *testing.T, testID string, signer probemail.Key) []byte {
	t.Helper()
	return imapProbeAt(t, testID, signer, imapStart)
}

// imapProbeAt is imapProbe started at started (the monitor's clock).
func imapProbeAt(t *testing.T, testID string, signer probemail.Key, started time.Time) []byte {
	t.Helper()
	p := probemail.Probe{KeyID: signer.ID, TestID: testID, CheckID: "acme-rt", Site: "eu-west", Attempt: 1,
		StartedAt: started, ReturnTo: ret}
	msg, err := probemail.Build(p, mailbox, signer, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("Return-Path: <bounces@monitor.example>\r\n"), msg...)
}

var foreignMail = []byte("Return-Path: <friend@example.org>\r\nFrom: friend@example.org\r\nTo: webscout@acme.example\r\n" +
	"Subject: Email Scout probe aaaaaaaaaaaaaaaaaaaaaaaa? no, lunch\r\nDate: Sun, 29 Nov 2026 07:00:00 +0000\r\n\r\nhi\r\n")

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// watch starts a Watcher with the reflector's handler, answering through
// a real SMTP server.
func watch(t *testing.T, ctx context.Context, addr string, smtpSrv *mailtest.Server, clock clockwork.Clock) <-chan error {
	t.Helper()
	return watchWith(t, ctx, imapwatch.Config{Addr: addr, TLS: imapwatch.TLSNone, Username: mailtest.IMAPUser, Password: mailtest.IMAPPassword}, smtpSrv, clock)
}

// watchWith is watch with the watcher's configuration.
func watchWith(t *testing.T, ctx context.Context, wc imapwatch.Config, smtpSrv *mailtest.Server, clock clockwork.Clock) <-chan error {
	t.Helper()
	keys, err := probemail.NewKeyring(imapKey)
	if err != nil {
		t.Fatal(err)
	}
	seen, err := reflector.NewFileSeen(t.TempDir(), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	r := reflector.New(reflector.Config{Keys: keys, Mailboxes: []string{mailbox}, EnvelopeFrom: mailbox},
		reflector.SMTP{Config: submit.Config{Addr: smtpSrv.Addr, TLS: submit.TLSNone}}, seen, clock.Now)
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := newIMAPWatch(wc, r, clock, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return done
}

func reflectedIDs(msgs []mailtest.Message) []string {
	var ids []string
	for _, m := range msgs {
		if ret, err := probemail.ParseReturned(m.Data); err == nil && ret.Reflected() {
			ids = append(ids, ret.TestID)
		}
	}
	slices.Sort(ids)
	return ids
}

func waitReflected(t *testing.T, srv *mailtest.Server, want ...string) {
	t.Helper()
	got := reflectedIDs(srv.Wait(len(want), 20*time.Second))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("reflected %v, want %v", got, want)
	}
}

func TestIMAPAnswersDeletesAndKeepsForeignMail(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}})
	other := probemail.Key{ID: "acme-1", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{8}, 32))}
	reflection, _ := probemail.Reflect(imapProbe(t, "rrrrrrrrrrrrrrrrrrrrrrrr", imapKey), probemail.Probe{TestID: "rrrrrrrrrrrrrrrrrrrrrrrr", ReturnTo: ret}, mailbox, mailbox, imapStart)
	bounce := append([]byte("Return-Path: <>\r\n"), imapProbe(t, "bbbbbbbbbbbbbbbbbbbbbbbb", imapKey)[len("Return-Path: <bounces@monitor.example>\r\n"):]...)
	// c10: the internal date is "yesterday" for a monitor in UTC-8; found by UID all the same.
	yesterday := imapStart.Add(-10 * time.Hour)
	srv.Deliver(imapProbe(t, "aaaaaaaaaaaaaaaaaaaaaaaa", imapKey), yesterday)
	uidF := srv.Deliver(foreignMail, yesterday)
	uidForged := srv.Deliver(imapProbe(t, "ffffffffffffffffffffffff", other), yesterday)
	uidR := srv.Deliver(reflection, yesterday)
	uidBounce := srv.Deliver(bounce, yesterday)
	srv.Deliver(imapProbe(t, "cccccccccccccccccccccccc", imapKey), yesterday)

	smtpSrv := mailtest.NewServer(t, mailtest.Options{})
	clock := clockwork.NewFakeClockAt(imapStart.Add(3 * time.Second))
	done := watch(t, ctx, srv.Addr, smtpSrv, clock)

	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa", "cccccccccccccccccccccccc")
	srv.WaitUIDs(ctx, uidF, uidForged, uidR, uidBounce)
	if srv.Commands("UID EXPUNGE") == 0 {
		t.Error("UIDPLUS offered but no UID EXPUNGE sent")
	}
	for _, m := range smtpSrv.Messages() {
		if m.From != mailbox || len(m.To) != 1 || m.To[0] != ret {
			t.Errorf("envelope %s -> %v", m.From, m.To)
		}
	}

	// A probe that arrives while the watcher idles is answered at once:
	// the server's EXISTS ends the IDLE, no clock needs to move.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	srv.Deliver(imapProbe(t, "dddddddddddddddddddddddd", imapKey), time.Time{})
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa", "cccccccccccccccccccccccc", "dddddddddddddddddddddddd")
	srv.WaitUIDs(ctx, uidF, uidForged, uidR, uidBounce)

	// IDLE is re-issued after the refresh (9m), within RFC 2177's 29 minutes.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	idles := srv.Commands("IDLE")
	clock.Advance(9 * time.Minute)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for srv.Commands("IDLE") <= idles {
		select {
		case <-ctx.Done():
			t.Fatal("IDLE was not re-issued")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if len(smtpSrv.Messages()) != 3 {
		t.Errorf("%d reflections after a refresh, want 3 (no probe answered twice)", len(smtpSrv.Messages()))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
}

func TestIMAPPollsWithoutIDLE(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, nil)
	uidF := srv.Deliver(foreignMail, time.Time{})
	srv.Deliver(imapProbe(t, "aaaaaaaaaaaaaaaaaaaaaaaa", imapKey), time.Time{})
	smtpSrv := mailtest.NewServer(t, mailtest.Options{})
	clock := clockwork.NewFakeClockAt(imapStart.Add(time.Second))
	// go-imap's server always offers IDLE: a proxy hides it, as servers
	// without IDLE do.
	done := watch(t, ctx, mailtest.IMAPHideCapability(t, srv.Addr, "IDLE"), smtpSrv, clock)

	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa")
	srv.WaitUIDs(ctx, uidF)
	srv.Deliver(imapProbe(t, "bbbbbbbbbbbbbbbbbbbbbbbb", imapKey), time.Time{})
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute) // the poll interval
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb")
	srv.WaitUIDs(ctx, uidF)
	cancel()
	<-done
}

// TestIMAPFastPollsAroundTheNextProbe: on a server whose IDLE announces
// nothing and with a poll interval of a minute, the third probe of a check
// that sends one a minute is answered when the window before its predicted
// arrival opens (2 s before it), not at the next minute's poll: the
// reflector learned the interval from the first two probes' start times.
func TestIMAPFastPollsAroundTheNextProbe(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}})
	srv.SilentIdle(true)
	srv.Deliver(imapProbeAt(t, "aaaaaaaaaaaaaaaaaaaaaaaa", imapKey, imapStart), time.Time{})
	smtpSrv := mailtest.NewServer(t, mailtest.Options{})
	clock := clockwork.NewFakeClockAt(imapStart.Add(time.Second))
	done := watchWith(t, ctx, imapwatch.Config{Addr: srv.Addr, TLS: imapwatch.TLSNone, Username: mailtest.IMAPUser,
		Password: mailtest.IMAPPassword, PollInterval: time.Minute, FastPoll: 100 * time.Millisecond}, smtpSrv, clock)
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa") // the first scan

	// The second probe is found by the minute's poll: it teaches the interval.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	srv.Deliver(imapProbeAt(t, "bbbbbbbbbbbbbbbbbbbbbbbb", imapKey, imapStart.Add(time.Minute)), time.Time{})
	clock.Advance(time.Minute)
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb")

	// The third is in the folder; IDLE says nothing. 58 s on, the window
	// opens and the watcher scans at once, 2 s before its next poll.
	if err := clock.BlockUntilContext(ctx, 2); err != nil { // the watcher's wait and the window's timer
		t.Fatal(err)
	}
	srv.Deliver(imapProbeAt(t, "cccccccccccccccccccccccc", imapKey, imapStart.Add(2*time.Minute)), time.Time{})
	clock.Advance(time.Minute - dueLead)
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccc")
	cancel()
	<-done
}

func TestIMAPRetriesATemporarySendFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}})
	uid := srv.Deliver(imapProbe(t, "aaaaaaaaaaaaaaaaaaaaaaaa", imapKey), time.Time{})
	var refusing atomic.Bool
	refusing.Store(true)
	var refused atomic.Int32
	smtpSrv := mailtest.NewServer(t, mailtest.Options{Rcpt: func(string) error {
		if refusing.Load() {
			refused.Add(1)
			return &smtp.SMTPError{Code: 451, Message: "try again later"}
		}
		return nil
	}})
	clock := clockwork.NewFakeClockAt(imapStart.Add(time.Second))
	done := watch(t, ctx, srv.Addr, smtpSrv, clock)
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // idling after the failed attempt
		t.Fatal(err)
	}
	if refused.Load() != 1 {
		t.Fatalf("%d refused attempts, want 1", refused.Load())
	}
	srv.WaitUIDs(ctx, uid) // kept for the retry
	refusing.Store(false)
	clock.Advance(30 * time.Second) // the retry interval
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa")
	srv.WaitUIDs(ctx)
	cancel()
	<-done
}

// TestIMAPModeKeepsItsSMTPSession: in imap mode (one process, many
// reflections) the SMTP output carries reflections that come in quick
// succession over one session, and ends it with QUIT when the reflector
// stops; a pipe run's output opens a session for its one reflection.
func TestIMAPModeKeepsItsSMTPSession(t *testing.T) {
	for _, tc := range []struct {
		keep     bool
		sessions int64
	}{{true, 1}, {false, 3}} {
		srv := mailtest.NewServer(t, mailtest.Options{})
		cfg := &resolved{Config: Config{Output: outputSMTP, SMTP: SMTPConfig{Addr: srv.Addr, TLS: submit.TLSNone, Helo: "mx.acme.example"}}}
		out, closeOut := newSender(cfg, tc.keep)
		for i := range 3 {
			msg := []byte(fmt.Sprintf("Subject: %d\r\n\r\nreflection\r\n", i))
			if err := out.Send(context.Background(), mailbox, []string{"scout@eu-west.return.test"}, msg); err != nil {
				t.Fatalf("keep %v, reflection %d: %v", tc.keep, i, err)
			}
		}
		closeOut()
		if got := len(srv.Wait(3, 10*time.Second)); got != 3 {
			t.Fatalf("keep %v: %d reflections arrived, want 3", tc.keep, got)
		}
		if n := srv.Connections(); n != tc.sessions {
			t.Errorf("keep %v: %d SMTP sessions for 3 reflections, want %d", tc.keep, n, tc.sessions)
		}
	}
}
