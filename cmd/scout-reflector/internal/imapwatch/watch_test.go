package imapwatch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/pkg/reflector"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"
	"github.com/jonboulle/clockwork"
)

var (
	key     = probemail.Key{ID: "acme-1", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{7}, 32))}
	mailbox = "webscout@acme.example"
	start   = time.Date(2026, 11, 29, 7, 55, 0, 0, time.UTC) // 23:55 the day before in UTC-8 (c10)
)

// ctxFor bounds a test by its deadline.
func ctxFor(t *testing.T) context.Context {
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		t.Cleanup(cancel)
	}
	return ctx
}

func probe(t *testing.T, testID string, signer probemail.Key) []byte {
	t.Helper()
	p := probemail.Probe{KeyID: signer.ID, TestID: testID, CheckID: "acme-rt", Site: "eu-west", Attempt: 1,
		StartedAt: start, ReturnTo: "return@monitor.example"}
	msg, err := probemail.Build(p, mailbox, signer, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("Return-Path: <bounces@monitor.example>\r\n"), msg...)
}

var foreign = []byte("Return-Path: <friend@example.org>\r\nFrom: friend@example.org\r\nTo: webscout@acme.example\r\n" +
	"Subject: Email Scout probe aaaaaaaaaaaaaaaaaaaaaaaa? no, lunch\r\nDate: Sun, 29 Nov 2026 07:00:00 +0000\r\n\r\nhi\r\n")

// imapServer is a go-imap/v2 server on 127.0.0.1 backed by imapmemserver,
// recording the commands it received.
type imapServer struct {
	t    *testing.T
	mem  *imapmemserver.Server
	user *imapmemserver.User
	caps imap.CapSet
	addr string
	srv  *imapserver.Server
	mu   sync.Mutex
	wire bytes.Buffer
}

func newIMAPServer(t *testing.T, caps imap.CapSet) *imapServer {
	s := &imapServer{t: t, mem: imapmemserver.New(), user: imapmemserver.NewUser("webscout", "secret"), caps: caps}
	if err := s.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	s.mem.AddUser(s.user)
	s.start("127.0.0.1:0")
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func (s *imapServer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wire.Write(p)
}

// commands counts client commands (tagged lines) whose verb is verb.
func (s *imapServer) commands(verb string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range strings.Split(s.wire.String(), "\r\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.EqualFold(strings.Join(f[1:min(len(f), 1+len(strings.Fields(verb)))], " "), verb) {
			n++
		}
	}
	return n
}

func (s *imapServer) start(addr string) {
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return s.mem.NewSession(), nil, nil
		},
		Caps:         s.caps,
		InsecureAuth: true,
		DebugWriter:  s,
		Logger:       testLogger{s.t},
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go func() { _ = s.srv.Serve(l) }()
}

// restart drops every connection and serves again on the same address.
func (s *imapServer) restart() {
	_ = s.srv.Close()
	s.start(s.addr)
}

type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

func (s *imapServer) deliver(msg []byte, internalDate time.Time) imap.UID {
	s.t.Helper()
	data, err := s.user.Append("INBOX", literal{bytes.NewReader(msg)}, &imap.AppendOptions{Time: internalDate})
	if err != nil {
		s.t.Fatal(err)
	}
	return data.UID
}

// uids lists the INBOX over IMAP, as any client would see it.
func (s *imapServer) uids(t *testing.T) []imap.UID {
	t.Helper()
	c, err := imapclient.DialInsecure(s.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("webscout", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []imap.UID
	for _, m := range msgs {
		out = append(out, m.UID)
	}
	slices.Sort(out)
	return out
}

// waitUIDs waits until the INBOX holds exactly want.
func (s *imapServer) waitUIDs(ctx context.Context, t *testing.T, want ...imap.UID) {
	t.Helper()
	for {
		got := s.uids(t)
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("INBOX UIDs %v, want %v", got, want)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// hideCapability runs a TCP proxy on 127.0.0.1 to the IMAP server at
// backend that removes capability from the server's CAPABILITY lists.
func hideCapability(t *testing.T, backend, capability string) string {
	return mailtest.Script(t, func(c net.Conn) {
		b, err := net.Dial("tcp", backend)
		if err != nil {
			return
		}
		defer b.Close()
		go func() { _, _ = io.Copy(b, c); _ = b.Close() }()
		r := bufio.NewReader(b)
		for {
			line, err := r.ReadString('\n')
			if strings.Contains(line, "CAPABILITY ") {
				line = strings.Replace(line, " "+capability+" ", " ", 1)
				line = strings.Replace(line, " "+capability+"]", "]", 1)
				line = strings.Replace(line, " "+capability+"\r\n", "\r\n", 1)
			}
			if _, werr := io.WriteString(c, line); werr != nil || err != nil {
				return
			}
		}
	})
}

type testLogger struct{ t *testing.T }

func (l testLogger) Printf(format string, args ...any) { l.t.Logf("imapserver: "+format, args...) }

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// watch starts a Watcher answering through a real SMTP server.
func watch(t *testing.T, ctx context.Context, addr string, smtpSrv *mailtest.Server, clock clockwork.Clock, now func() time.Time) <-chan error {
	t.Helper()
	keys, err := probemail.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	seen, err := reflector.NewFileSeen(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	r := reflector.New(reflector.Config{Keys: keys, Mailboxes: []string{mailbox}, EnvelopeFrom: mailbox},
		reflector.SMTP{Config: submit.Config{Addr: smtpSrv.Addr, TLS: submit.TLSNone}}, seen, now)
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := New(Config{Addr: addr, TLS: TLSNone, Username: "webscout", Password: "secret"}, r, clock, log)
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

func TestWatchIDLEAnswersDeletesAndKeepsForeignMail(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := newIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}})
	other := probemail.Key{ID: "acme-1", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{8}, 32))}
	reflection, _ := probemail.Reflect(probe(t, "rrrrrrrrrrrrrrrrrrrrrrrr", key), probemail.Probe{TestID: "rrrrrrrrrrrrrrrrrrrrrrrr", ReturnTo: "return@monitor.example"}, mailbox, mailbox, start)
	bounce := append([]byte("Return-Path: <>\r\n"), probe(t, "bbbbbbbbbbbbbbbbbbbbbbbb", key)[len("Return-Path: <bounces@monitor.example>\r\n"):]...)
	// c10: the internal date is "yesterday" for a monitor in UTC-8; found by UID all the same.
	yesterday := start.Add(-10 * time.Hour)
	uidA := srv.deliver(probe(t, "aaaaaaaaaaaaaaaaaaaaaaaa", key), yesterday)
	uidF := srv.deliver(foreign, yesterday)
	uidForged := srv.deliver(probe(t, "ffffffffffffffffffffffff", other), yesterday)
	uidR := srv.deliver(reflection, yesterday)
	uidBounce := srv.deliver(bounce, yesterday)
	uidB := srv.deliver(probe(t, "cccccccccccccccccccccccc", key), yesterday)

	smtpSrv := mailtest.NewServer(t, mailtest.Options{})
	clock := clockwork.NewFakeClockAt(start.Add(3 * time.Second))
	done := watch(t, ctx, srv.addr, smtpSrv, clock, clock.Now)

	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa", "cccccccccccccccccccccccc")
	srv.waitUIDs(ctx, t, uidF, uidForged, uidR, uidBounce)
	if srv.commands("UID EXPUNGE") == 0 {
		t.Error("UIDPLUS offered but no UID EXPUNGE sent")
	}
	for _, m := range smtpSrv.Messages() {
		if m.From != mailbox || len(m.To) != 1 || m.To[0] != "return@monitor.example" {
			t.Errorf("envelope %s -> %v", m.From, m.To)
		}
	}
	_ = uidA
	_ = uidB

	// A probe that arrives while the watcher idles is answered at once:
	// the server's EXISTS ends the IDLE, no clock needs to move.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	srv.deliver(probe(t, "dddddddddddddddddddddddd", key), time.Time{})
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa", "cccccccccccccccccccccccc", "dddddddddddddddddddddddd")
	srv.waitUIDs(ctx, t, uidF, uidForged, uidR, uidBounce)

	// IDLE is re-issued after IdleRefresh, within RFC 2177's 29 minutes.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	idles := srv.commands("IDLE")
	clock.Advance(9 * time.Minute)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for srv.commands("IDLE") <= idles {
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

func TestWatchPollsWithoutIDLEAndExpungesWithoutUIDPLUS(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := newIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}})
	uidF := srv.deliver(foreign, time.Time{})
	srv.deliver(probe(t, "aaaaaaaaaaaaaaaaaaaaaaaa", key), time.Time{})
	smtpSrv := mailtest.NewServer(t, mailtest.Options{})
	clock := clockwork.NewFakeClockAt(start.Add(time.Second))
	// go-imap's server always offers IDLE: a proxy hides it, as servers
	// without IDLE do.
	done := watch(t, ctx, hideCapability(t, srv.addr, "IDLE"), smtpSrv, clock, clock.Now)

	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa")
	srv.waitUIDs(ctx, t, uidF)
	if srv.commands("IDLE") != 0 || srv.commands("UID EXPUNGE") != 0 || srv.commands("EXPUNGE") != 1 {
		t.Errorf("IDLE %d, UID EXPUNGE %d, EXPUNGE %d; want 0, 0, 1 on a server without IDLE and UIDPLUS",
			srv.commands("IDLE"), srv.commands("UID EXPUNGE"), srv.commands("EXPUNGE"))
	}

	srv.deliver(probe(t, "bbbbbbbbbbbbbbbbbbbbbbbb", key), time.Time{})
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute) // the poll interval
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb")
	srv.waitUIDs(ctx, t, uidF)
	cancel()
	<-done
}

func TestWatchRescansWhenUIDVALIDITYChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := newIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}})
	srv.deliver(foreign, time.Time{})
	srv.deliver(foreign, time.Time{})
	srv.deliver(probe(t, "aaaaaaaaaaaaaaaaaaaaaaaa", key), time.Time{}) // UID 3
	smtpSrv := mailtest.NewServer(t, mailtest.Options{})
	clock := clockwork.NewFakeClockAt(start.Add(time.Second))
	done := watch(t, ctx, srv.addr, smtpSrv, clock, clock.Now)
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa")
	srv.waitUIDs(ctx, t, 1, 2)

	// The folder is re-created (a restore, a migration): UIDs start at 1
	// again under a new UIDVALIDITY, below the watcher's next UID (4).
	if err := srv.user.Delete("INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := srv.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	if uid := srv.deliver(probe(t, "bbbbbbbbbbbbbbbbbbbbbbbb", key), time.Time{}); uid != 1 {
		t.Fatalf("new folder's first UID %d", uid)
	}
	srv.restart()
	// Reconnect: move the fake clock past the backoff until the probe is answered.
	for len(smtpSrv.Messages()) < 2 {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(5 * time.Minute)
		smtpSrv.Wait(2, 50*time.Millisecond)
	}
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb")
	srv.waitUIDs(ctx, t)
	cancel()
	<-done
}

func TestWatchRetriesATemporarySendFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := newIMAPServer(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}})
	uid := srv.deliver(probe(t, "aaaaaaaaaaaaaaaaaaaaaaaa", key), time.Time{})
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
	clock := clockwork.NewFakeClockAt(start.Add(time.Second))
	done := watch(t, ctx, srv.addr, smtpSrv, clock, clock.Now)
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // idling after the failed attempt
		t.Fatal(err)
	}
	if refused.Load() != 1 {
		t.Fatalf("%d refused attempts, want 1", refused.Load())
	}
	srv.waitUIDs(ctx, t, uid) // kept for the retry
	refusing.Store(false)
	clock.Advance(9 * time.Minute) // the IDLE refresh scans again
	waitReflected(t, smtpSrv, "aaaaaaaaaaaaaaaaaaaaaaaa")
	srv.waitUIDs(ctx, t)
	cancel()
	<-done
}

func TestWatchRefusedLoginIsAConfigurationError(t *testing.T) {
	srv := newIMAPServer(t, nil)
	log := slog.New(slog.NewTextHandler(tWriter{t}, nil))
	w, err := New(Config{Addr: srv.addr, TLS: TLSNone, Username: "webscout", Password: "wrong"}, nil, clockwork.NewFakeClock(), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(ctxFor(t)); !errors.Is(err, ErrRejected) {
		t.Fatalf("Run = %v, want ErrRejected", err)
	}
	w, _ = New(Config{Addr: srv.addr, TLS: TLSNone, Username: "webscout", Password: "secret", Folder: "Probes"}, nil, clockwork.NewFakeClock(), log)
	if err := w.Run(ctxFor(t)); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "Probes") {
		t.Fatalf("Run = %v, want ErrRejected naming the folder", err)
	}
}

func TestReturnPath(t *testing.T) {
	for _, tc := range []struct{ hdr, want string }{
		{"Return-Path: <a@b.example>\r\nFrom: x@y\r\n\r\n", "a@b.example"},
		{"Return-Path: <>\r\nFrom: x@y\r\n\r\n", ""},
		{"From: x@y\r\n\r\n", reflector.UnknownSender},
	} {
		if got := returnPath([]byte(tc.hdr)); got != tc.want {
			t.Errorf("returnPath(%q) = %q, want %q", tc.hdr, got, tc.want)
		}
	}
}
