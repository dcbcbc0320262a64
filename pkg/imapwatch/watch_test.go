package imapwatch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/imapwatch"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emersion/go-imap/v2"
	"github.com/jonboulle/clockwork"
)

var (
	start   = time.Date(2026, 11, 29, 7, 55, 0, 0, time.UTC) // 23:55 the day before in UTC-8 (c10)
	allCaps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}}
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

// msg is a message whose X-Test field tells the test handler what to do:
// "skip" (Want says no), "keep", "delete", "retry" (until released), or
// "sweep" (kept, then deleted by a sweep).
func msg(name, action string) []byte {
	return []byte("Return-Path: <sender@example.org>\r\nFrom: sender@example.org\r\nTo: box@example.org\r\n" +
		"Subject: " + name + "\r\nX-Test: " + action + "\r\n\r\nbody of " + name + "\r\n")
}

// call is one Handle call.
type call struct {
	Name      string
	UID       imap.UID
	SeenAt    time.Time
	NotBefore time.Time
	Body      string
}

// handler decides by the X-Test field and records what it was given.
type handler struct {
	mu       sync.Mutex
	wanted   []string
	calls    []call
	swept    []string
	released bool
	got      chan struct{}
	// onHandle, when set, runs after each Handle with the message's
	// Subject (a test delivers more mail while a scan runs).
	onHandle func(name string)
}

func newHandler() *handler { return &handler{got: make(chan struct{}, 100)} }

func field(hdr []byte, name string) string {
	for _, l := range strings.Split(string(hdr), "\r\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	return ""
}

func (h *handler) Want(m *imapwatch.Message) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wanted = append(h.wanted, field(m.Header, "Subject"))
	return field(m.Header, "X-Test") != "skip"
}

func (h *handler) Handle(_ context.Context, m *imapwatch.Message, body []byte) imapwatch.Action {
	h.mu.Lock()
	hook := h.onHandle
	defer func() {
		h.mu.Unlock()
		if hook != nil {
			hook(field(m.Header, "Subject"))
		}
		h.got <- struct{}{}
	}()
	_, b, _ := strings.Cut(string(body), "\r\n\r\n")
	h.calls = append(h.calls, call{Name: field(m.Header, "Subject"), UID: m.UID, SeenAt: m.SeenAt, NotBefore: m.NotBefore, Body: b})
	switch field(m.Header, "X-Test") {
	case "delete":
		return imapwatch.Delete
	case "retry":
		if h.released {
			return imapwatch.Delete
		}
		return imapwatch.Retry
	}
	return imapwatch.Keep
}

func (h *handler) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.released = true
}

func (h *handler) handled() []call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

func (h *handler) names() []string {
	var out []string
	for _, c := range h.handled() {
		out = append(out, c.Name)
	}
	return out
}

// waitCalls waits until Handle was called n times in all.
func (h *handler) waitCalls(ctx context.Context, t *testing.T, n int) []call {
	t.Helper()
	for {
		if c := h.handled(); len(c) >= n {
			return c
		}
		select {
		case <-h.got:
		case <-ctx.Done():
			t.Fatalf("%d Handle calls (%v), want %d", len(h.handled()), h.names(), n)
		}
	}
}

// sweeper is a handler that also cleans up: it deletes "sweep" messages.
type sweeper struct{ *handler }

func (s sweeper) Sweep(m *imapwatch.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.swept = append(s.swept, field(m.Header, "Subject"))
	return field(m.Header, "X-Test") == "sweep"
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func run(t *testing.T, ctx context.Context, addr string, h imapwatch.Handler, clock clockwork.Clock) (*imapwatch.Watcher, <-chan error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := imapwatch.New(imapwatch.Config{Addr: addr, TLS: imapwatch.TLSNone, Username: mailtest.IMAPUser, Password: mailtest.IMAPPassword}, h, clock, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return w, done
}

// TestScanIDLEDeleteKeep: messages are found by UID whatever their internal
// date (c10), handed over in UID order with their header and body,
// deleted with UID EXPUNGE or kept untouched; one that arrives during
// IDLE is handled at once; IDLE is re-issued after 9 minutes and nothing
// is handed over twice.
func TestScanIDLEDeleteKeep(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, allCaps)
	yesterday := start.Add(-10 * time.Hour) // "yesterday" for a monitor in UTC-8
	srv.Deliver(msg("a", "delete"), yesterday)
	uidB := srv.Deliver(msg("b", "keep"), yesterday)
	uidC := srv.Deliver(msg("c", "skip"), yesterday)
	srv.Deliver(msg("d", "delete"), yesterday)

	h := newHandler()
	clock := clockwork.NewFakeClockAt(start)
	w, done := run(t, ctx, srv.Addr, h, clock)
	calls := h.waitCalls(ctx, t, 3)
	srv.WaitUIDs(ctx, uidB, uidC)
	if got := h.names(); !slices.Equal(got, []string{"a", "b", "d"}) {
		t.Errorf("handled %v, want a, b, d (c not wanted)", got)
	}
	if calls[0].Body != "body of a\r\n" || !calls[0].SeenAt.Equal(start) {
		t.Errorf("first call %+v, want the whole message seen at %v", calls[0], start)
	}
	if srv.Commands("UID EXPUNGE") != 1 || srv.Commands("EXPUNGE") != 0 {
		t.Errorf("UID EXPUNGE %d, EXPUNGE %d; want one UID EXPUNGE with UIDPLUS", srv.Commands("UID EXPUNGE"), srv.Commands("EXPUNGE"))
	}
	if srv.Commands("UID SEARCH")+srv.Commands("SEARCH") != 0 {
		t.Error("the watcher searched the folder")
	}
	if err := w.Status(); err != nil {
		t.Errorf("Status while watching: %v", err)
	}

	// Arrives while idling: handled without any clock movement, seen now.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(400 * time.Millisecond)
	srv.Deliver(msg("e", "delete"), time.Time{})
	calls = h.waitCalls(ctx, t, 4)
	if calls[3].Name != "e" || !calls[3].SeenAt.Equal(start.Add(400*time.Millisecond)) {
		t.Errorf("call %+v, want e seen at +400ms", calls[3])
	}
	srv.WaitUIDs(ctx, uidB, uidC)

	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	idles := srv.Commands("IDLE")
	clock.Advance(9 * time.Minute)
	for srv.Commands("IDLE") <= idles {
		select {
		case <-ctx.Done():
			t.Fatal("IDLE was not re-issued after 9 minutes")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := h.names(); len(got) != 4 {
		t.Errorf("handled %v after the refresh, want nothing twice", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
	if w.Status() == nil {
		t.Error("Status nil after Run returned")
	}
}

// TestPollWithoutIDLEAndExpungeWithoutUIDPLUS: a server without IDLE is
// polled every minute (NOOP); without UIDPLUS plain EXPUNGE is used.
func TestPollWithoutIDLEAndExpungeWithoutUIDPLUS(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, nil)
	uidK := srv.Deliver(msg("k", "keep"), time.Time{})
	srv.Deliver(msg("a", "delete"), time.Time{})
	h := newHandler()
	clock := clockwork.NewFakeClockAt(start)
	// go-imap's server always offers IDLE: a proxy hides it.
	_, done := run(t, ctx, mailtest.IMAPHideCapability(t, srv.Addr, "IDLE"), h, clock)
	h.waitCalls(ctx, t, 2)
	srv.WaitUIDs(ctx, uidK)
	if srv.Commands("IDLE") != 0 || srv.Commands("UID EXPUNGE") != 0 || srv.Commands("EXPUNGE") != 1 {
		t.Errorf("IDLE %d, UID EXPUNGE %d, EXPUNGE %d; want 0, 0, 1", srv.Commands("IDLE"), srv.Commands("UID EXPUNGE"), srv.Commands("EXPUNGE"))
	}
	srv.Deliver(msg("b", "delete"), time.Time{})
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	noops := srv.Commands("NOOP")
	clock.Advance(time.Minute)
	calls := h.waitCalls(ctx, t, 3)
	if calls[2].Name != "b" || !calls[2].SeenAt.Equal(start.Add(time.Minute)) {
		t.Errorf("call %+v, want b seen at the poll", calls[2])
	}
	// b deleted, the watcher waits for the next poll: the EXISTS that
	// NOOP brought was the scan's news, not a reason to ask again at once.
	srv.WaitUIDs(ctx, uidK)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if srv.Commands("NOOP") != noops+1 {
		t.Errorf("%d NOOPs for one poll", srv.Commands("NOOP")-noops)
	}
	cancel()
	<-done
}

// TestRetry: a message answered Retry stays, later messages are handled
// meanwhile (kept ones only once), and it is handed over again after the
// retry interval with its first SeenAt.
func TestRetry(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, allCaps)
	uidR := srv.Deliver(msg("r", "retry"), time.Time{})
	uidK := srv.Deliver(msg("k", "keep"), time.Time{})
	srv.Deliver(msg("d", "delete"), time.Time{})
	h := newHandler()
	clock := clockwork.NewFakeClockAt(start)
	_, done := run(t, ctx, srv.Addr, h, clock)
	h.waitCalls(ctx, t, 3)
	srv.WaitUIDs(ctx, uidR, uidK)

	// New mail ends the IDLE: r is handed over again (and stays), k not.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	uidS := srv.Deliver(msg("s", "skip"), time.Time{})
	h.waitCalls(ctx, t, 4)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	h.release()
	clock.Advance(30 * time.Second) // the retry interval, counted from the last scan
	calls := h.waitCalls(ctx, t, 5)
	srv.WaitUIDs(ctx, uidK, uidS)
	if got := h.names(); !slices.Equal(got, []string{"r", "k", "d", "r", "r"}) {
		t.Errorf("handled %v, want r k d r r", got)
	}
	for _, i := range []int{3, 4} {
		if !calls[i].SeenAt.Equal(start) || calls[i].UID != uidR {
			t.Errorf("retry %d: %+v, want uid %d first seen at %v", i, calls[i], uidR, start)
		}
	}
	h.mu.Lock()
	wanted := slices.Clone(h.wanted)
	h.mu.Unlock()
	if n := strings.Count(strings.Join(wanted, ","), "s"); n != 1 {
		t.Errorf("s looked at %d times, want once (%v)", n, wanted)
	}
	cancel()
	<-done
}

// TestSweep: a Sweeper is offered the kept messages every 10 minutes and
// deletes those it names; a message waiting for a retry is not offered.
func TestSweep(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, allCaps)
	uidK := srv.Deliver(msg("k", "keep"), time.Time{})
	srv.Deliver(msg("old", "sweep"), time.Time{})
	uidR := srv.Deliver(msg("r", "retry"), time.Time{})
	h := sweeper{newHandler()}
	clock := clockwork.NewFakeClockAt(start)
	_, done := run(t, ctx, srv.Addr, h, clock)
	h.waitCalls(ctx, t, 3)
	for i := 0; i < 20; i++ { // 20 retries, 30s apart: the sweep comes at 10m
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(30 * time.Second)
		h.waitCalls(ctx, t, 4+i)
	}
	srv.WaitUIDs(ctx, uidK, uidR)
	h.mu.Lock()
	swept := slices.Clone(h.swept)
	h.mu.Unlock()
	if !slices.Equal(swept, []string{"k", "old"}) {
		t.Errorf("swept %v, want k and old (not r, which waits for a retry)", swept)
	}
	cancel()
	<-done
}

// TestUIDVALIDITYChange: a re-created folder starts its UIDs at 1 again
// under a new UIDVALIDITY, below the watcher's next UID: the watcher
// notices after reconnecting and scans from UID 1.
func TestUIDVALIDITYChange(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, allCaps)
	srv.Deliver(msg("k1", "keep"), time.Time{})
	srv.Deliver(msg("k2", "keep"), time.Time{})
	srv.Deliver(msg("a", "delete"), time.Time{}) // UID 3
	h := newHandler()
	clock := clockwork.NewFakeClockAt(start)
	w, done := run(t, ctx, srv.Addr, h, clock)
	h.waitCalls(ctx, t, 3)
	srv.WaitUIDs(ctx, 1, 2)

	srv.RecreateInbox()
	if uid := srv.Deliver(msg("b", "delete"), time.Time{}); uid != 1 {
		t.Fatalf("new folder's first UID %d", uid)
	}
	srv.Restart()
	// Reconnect: move the fake clock past the backoff until b is handled.
	for len(h.handled()) < 4 {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if w.Status() == nil {
			clock.Advance(time.Millisecond)
			continue
		}
		clock.Advance(5 * time.Minute)
		select {
		case <-h.got:
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got := h.names(); !slices.Equal(got, []string{"k1", "k2", "a", "b"}) {
		t.Errorf("handled %v", got)
	}
	srv.WaitUIDs(ctx)
	cancel()
	<-done
}

func TestRefusedLoginOrFolderIsRejected(t *testing.T) {
	srv := mailtest.NewIMAPServer(t, nil)
	log := slog.New(slog.NewTextHandler(tWriter{t}, nil))
	for _, tc := range []struct {
		name   string
		cfg    imapwatch.Config
		naming string
	}{
		{"password", imapwatch.Config{Username: mailtest.IMAPUser, Password: "wrong"}, "login as " + mailtest.IMAPUser},
		{"folder", imapwatch.Config{Username: mailtest.IMAPUser, Password: mailtest.IMAPPassword, Folder: "Probes"}, "select Probes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Addr, tc.cfg.TLS = srv.Addr, imapwatch.TLSNone
			w, err := imapwatch.New(tc.cfg, newHandler(), clockwork.NewFakeClock(), log)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Run(ctxFor(t)); !errors.Is(err, imapwatch.ErrRejected) || !strings.Contains(err.Error(), tc.naming) {
				t.Fatalf("Run = %v, want ErrRejected naming %q", err, tc.naming)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []imapwatch.Config{{Addr: "imap.example.org", TLS: imapwatch.TLSImplicit}, {Addr: "127.0.0.1:143", TLS: "ssl"}} {
		if _, err := imapwatch.New(cfg, newHandler(), nil, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestReturnPath(t *testing.T) {
	for _, tc := range []struct {
		hdr  string
		want string
		ok   bool
	}{
		{"Return-Path: <a@b.example>\r\nFrom: x@y\r\n\r\n", "a@b.example", true},
		{"Return-Path: <>\r\nFrom: x@y\r\n\r\n", "", true},
		{"From: x@y\r\n\r\n", "", false},
		{"return-path: bare@example.org\r\n\r\n", "bare@example.org", true},
		{"Return-Path: <SRS0=ab=CD=acme.example=webscout@fwd.example>\r\n\r\n", "SRS0=ab=CD=acme.example=webscout@fwd.example", true},
		{"Return-Path: not an address\r\n\r\n", "", false},
		{"return-pAth: \n 0  \r0", "", false}, // found by FuzzReturnPath: no address, and a bare CR
	} {
		t.Run(fmt.Sprintf("%q", tc.hdr), func(t *testing.T) {
			got, ok := (&imapwatch.Message{Header: []byte(tc.hdr)}).ReturnPath()
			if got != tc.want || ok != tc.ok {
				t.Errorf("ReturnPath = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestExpectPollsFast: with FastPoll, Expect ends a (here silent) IDLE at
// once and the watcher asks with NOOP every FastPoll until the
// expectation ends, without IDLE; each message carries the window it
// arrived in (NotBefore: the last look that did not list it; SeenAt: the
// scan that did), one FastPoll wide while polling fast. Then it idles
// again.
func TestExpectPollsFast(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, allCaps)
	srv.SilentIdle(true) // only a NOOP reveals new mail
	h := newHandler()
	clock := clockwork.NewFakeClockAt(start)
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := imapwatch.New(imapwatch.Config{Addr: srv.Addr, TLS: imapwatch.TLSNone, Username: mailtest.IMAPUser, Password: mailtest.IMAPPassword,
		PollInterval: time.Hour, FastPoll: 100 * time.Millisecond}, h, clock, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // idling
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	srv.Deliver(msg("a", "delete"), time.Time{})
	w.Expect(clock.Now().Add(time.Minute))
	calls := h.waitCalls(ctx, t, 1)
	if a := calls[0]; a.Name != "a" || !a.SeenAt.Equal(start.Add(time.Second)) || !a.NotBefore.Equal(start) {
		t.Errorf("a %+v, want seen at +1s, not before the SELECT at +0s", a)
	}
	idles := srv.Commands("IDLE")

	// Polling fast: the next message is seen at the next NOOP, 100 ms on,
	// and arrived after the previous scan.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	srv.Deliver(msg("b", "delete"), time.Time{})
	clock.Advance(100 * time.Millisecond)
	calls = h.waitCalls(ctx, t, 2)
	if b := calls[1]; b.Name != "b" || !b.SeenAt.Equal(start.Add(1100*time.Millisecond)) || !b.NotBefore.Equal(start.Add(time.Second)) {
		t.Errorf("b %+v, want seen at +1.1s, not before +1s (one FastPoll wide)", b)
	}
	if n := srv.Commands("IDLE"); n != idles {
		t.Errorf("%d IDLE commands while polling fast, want none", n-idles)
	}

	// Expectations that extend the window while it polls fast add no NOOP:
	// one every FastPoll.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	noops := srv.Commands("NOOP")
	for i := range 5 {
		w.Expect(clock.Now().Add(time.Minute + time.Duration(i+1)*time.Millisecond))
	}
	clock.Advance(100 * time.Millisecond)
	for srv.Commands("NOOP") == noops {
		select {
		case <-ctx.Done():
			t.Fatal("no NOOP after a FastPoll")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // waiting again
		t.Fatal(err)
	}
	if n := srv.Commands("NOOP") - noops; n != 1 {
		t.Errorf("%d NOOPs in one FastPoll with five more expectations, want 1", n)
	}

	// Mail that arrives while a scan runs is reported with the answers to
	// the scan's commands: the watcher asks again at once, without waiting
	// a FastPoll (the fake clock does not move).
	h.mu.Lock()
	h.onHandle = func(name string) {
		if name == "c" {
			srv.Deliver(msg("d", "delete"), time.Time{})
		}
	}
	h.mu.Unlock()
	srv.Deliver(msg("c", "delete"), time.Time{})
	clock.Advance(100 * time.Millisecond)
	calls = h.waitCalls(ctx, t, 4)
	if d := calls[3]; d.Name != "d" || !d.SeenAt.Equal(calls[2].SeenAt) {
		t.Errorf("d %+v, want it seen at once after c (%s)", d, calls[2].SeenAt)
	}

	// The expectation ends: IDLE again.
	for clock.Now().Before(start.Add(time.Minute + 2*time.Second)) {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(100 * time.Millisecond)
	}
	for srv.Commands("IDLE") == idles {
		select {
		case <-ctx.Done():
			t.Fatal("no IDLE after the expectation ended")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
}
