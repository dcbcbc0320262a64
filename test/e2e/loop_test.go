//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/stack"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// The whole loop on the real stack: the real services (sender, receiver,
// evaluator) in this process on an embedded JetStream, wired as
// `scout dev` wires them, Postfix and Dovecot from scripts/mailstack.sh,
// and scout-reflector run by Postfix's local(8) from ~/.forward.

const (
	site       = "e2e"
	imapReturn = "scoutreturn@imap.monitor.example" // delivered by Postfix to the Maildir of scoutreturn
	returnUser = "scoutreturn"
)

// loopChecks: a normal check and one with a short timeout, for late returns.
const loopChecks = `
sites: [e2e]
defaults:
  interval: 1h
  timeout: 30s
  slow: 10s
  retry_delay: 10m
  retries: 1
  quorum: 1
checks:
  - id: acme-rt
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
  - id: acme-late
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
    timeout: 3s
    slow: 1s
`

// loop is one test's monitor: embedded NATS, sender, receiver, evaluator.
type loop struct {
	t       *testing.T
	e       *env
	ctx     context.Context
	js      jetstream.JetStream
	pub     platform.Publisher
	checks  *checks.File
	keySpec string
	keyring *probemail.Keyring
	ret     string // the sender's return address
	log     *slog.Logger
	logs    *testkit.LogBuffer
	reg     *prometheus.Registry
	recvReg *prometheus.Registry // the metrics of the receiver started last
	wg      sync.WaitGroup

	mu      sync.Mutex
	results map[string][]events.CheckResult // by test id, in arrival order
	got     chan struct{}
}

// startLoop starts NATS, the evaluator and the sender of site e2e, which
// submits probes to Postfix on 127.0.0.1:25 with STARTTLS (the stack's
// certificate) and signs them for the return address ret. The receiver is
// started by the test (startSMTPReceiver, startIMAPReceiver).
func startLoop(t *testing.T, e *env, ret string) *loop {
	t.Helper()
	return startLoopWith(t, e, ret, loopChecks, nil)
}

// startLoopWith is startLoop with another check file; adjust, when not
// nil, changes the stack's configuration and deps before it starts (a
// notifier, say).
func startLoopWith(t *testing.T, e *env, ret, checkFile string, adjust func(*stack.Config, *stack.Deps)) *loop {
	t.Helper()
	f, err := checks.Parse("e2e-checks.yaml", []byte(checkFile))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := os.ReadFile(filepath.Join(stackDir, "probe-keys"))
	if err != nil {
		t.Fatal(err)
	}
	// NATS first: its clean-up (shutdown) then runs after the services'.
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	ctx, cancel := context.WithCancel(e.ctx)
	l := &loop{js: js, t: t, e: e, ctx: ctx, checks: f, keySpec: strings.TrimSpace(string(spec)), keyring: e.keys, ret: ret,
		logs: &testkit.LogBuffer{}, reg: prometheus.NewRegistry(), results: map[string][]events.CheckResult{}, got: make(chan struct{}, 1)}
	l.log = slog.New(slog.NewJSONHandler(l.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service logs:\n%s", l.logs.String())
		}
	})
	t.Cleanup(func() { cancel(); l.wg.Wait() })

	l.pub = platform.JetStreamPublisher{JS: l.js}
	// The monitor as `scout dev` composes it (internal/stack), without
	// receivers: each test starts its own (SMTP or IMAP mode), and stops it.
	cfg := stack.Config{Sites: []string{site}, ProbeKeys: l.keySpec, ReturnAddress: func(string) string { return ret },
		Sender: sender.Defaults(), Evaluator: evaluator.Defaults()}
	cfg.Sender.RelayAddr, cfg.Sender.RelayTLS, cfg.Sender.HeloName = "127.0.0.1:25", "starttls", "scout.monitor.example"
	cfg.Sender.SubmitTimeout, cfg.Sender.Workers = 30*time.Second, 2
	cfg.Evaluator.SubmitGrace, cfg.Evaluator.Settle, cfg.Evaluator.Workers, cfg.Evaluator.Failover = 10*time.Second, 500*time.Millisecond, 4, 5*time.Second
	deps := stack.Deps{Checks: f, JS: l.js, Logger: l.log, Registerer: l.reg,
		SenderDeps: func(_ string, d *sender.Deps) { d.RelayTLS = tlsFor(e.cas) }}
	if adjust != nil {
		adjust(&cfg, &deps)
	}
	st, err := stack.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	l.run("stack", st.Run)
	l.run("results", l.follow)
	return l
}

// run runs a service until the test ends; an error fails the test.
func (l *loop) run(name string, fn func(context.Context) error) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := fn(l.ctx); err != nil && l.ctx.Err() == nil {
			l.t.Errorf("%s: %v", name, err)
		}
	}()
}

// follow collects every check.result.
func (l *loop) follow(ctx context.Context) error {
	cons, err := l.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectCheckResult + ".>"}})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			continue
		}
		for msg := range batch.Messages() {
			res, err := events.Decode[events.CheckResult](msg.Data())
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.results[res.TestID] = append(l.results[res.TestID], res)
			l.mu.Unlock()
			select {
			case l.got <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// result waits for revision rev of the result of test id.
func (l *loop) result(id string, rev int) events.CheckResult {
	l.t.Helper()
	for {
		l.mu.Lock()
		for _, r := range l.results[id] {
			if r.Revision == rev {
				l.mu.Unlock()
				return r
			}
		}
		l.mu.Unlock()
		select {
		case <-l.got:
		case <-time.After(100 * time.Millisecond):
		case <-l.ctx.Done():
			l.t.Fatalf("no check.result revision %d for test %s", rev, id)
		}
	}
}

// resultsOf returns every result recorded for test id.
func (l *loop) resultsOf(id string) []events.CheckResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results[id])
}

// schedule publishes test.scheduled for check, as the scheduler does for
// an interval slot, and returns the test id.
func (l *loop) schedule(check string) string {
	l.t.Helper()
	id, err := events.NewTestID(rand.Reader)
	if err != nil {
		l.t.Fatal(err)
	}
	now := time.Now()
	ev := events.TestScheduled{V: events.SchemaVersion, TestID: id, CheckID: check, Site: site, Kind: events.KindRoundTrip,
		Attempt: 1, Reason: events.ReasonInterval, Slot: now.UnixNano(), ScheduledAt: now,
		NotAfter: now.Add(l.checks.Lookup(check).SendWindow())}
	if _, err := l.pub.Publish(l.ctx, ev); err != nil {
		l.t.Fatal(err)
	}
	return id
}

// returns counts the mail.returned events stored.
func (l *loop) returns() int {
	l.t.Helper()
	st, err := l.js.Stream(l.ctx, events.StreamName)
	if err != nil {
		l.t.Fatal(err)
	}
	info, err := st.Info(l.ctx, jetstream.WithSubjectFilter(events.SubjectMailReturned+".>"))
	if err != nil {
		l.t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

func receiverConfig(ret string) receiver.Config {
	return receiver.Config{Site: site, Mode: receiver.ModeSMTP, Listen: "127.0.0.1:0", ReturnAddresses: []string{ret},
		MaxBytes: probemail.MaxMessageBytes, MaxAge: 48 * time.Hour, Timeout: time.Minute, StoreTimeout: 10 * time.Second}
}

// startSMTPReceiver runs the receiver in SMTP mode on ln and routes the
// return domain to it (the transport map of scripts/mailstack.sh). It
// returns a function that stops it.
func (l *loop) startSMTPReceiver(ln net.Listener) func() {
	l.t.Helper()
	cfg := receiverConfig(l.ret)
	cfg.ProbeKeys = receiver.Secret(l.keySpec)
	l.recvReg = prometheus.NewRegistry()
	r, err := receiver.New(cfg, receiver.Deps{Checks: l.checks, Publisher: l.pub, Keyring: l.keyring, Listener: ln,
		Logger: l.log, Registerer: l.recvReg})
	if err != nil {
		l.t.Fatal(err)
	}
	l.e.route(ln.Addr().String())
	ctx, cancel := context.WithCancel(l.ctx)
	done := make(chan struct{})
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(done)
		if err := r.Run(ctx); err != nil && ctx.Err() == nil {
			l.t.Errorf("receiver: %v", err)
		}
	}()
	return func() { cancel(); <-done }
}

// startIMAPReceiver runs the receiver in IMAP mode on scoutreturn's
// mailbox in Dovecot (STARTTLS, the stack's certificate).
func (l *loop) startIMAPReceiver() {
	l.t.Helper()
	pw, err := os.ReadFile(filepath.Join(stackDir, "return-imap-password"))
	if err != nil {
		l.t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(imapAddr)
	cfg := receiverConfig(l.ret)
	cfg.ProbeKeys = receiver.Secret(l.keySpec)
	cfg.Mode = receiver.ModeIMAP
	cfg.IMAPServer = host
	if cfg.IMAPPort, err = strconv.Atoi(port); err != nil {
		l.t.Fatal(err)
	}
	cfg.IMAPTLS, cfg.IMAPUser, cfg.IMAPPassword = receiver.IMAPTLSStartTLS, returnUser, receiver.Secret(strings.TrimSpace(string(pw)))
	cfg.IMAPMailbox, cfg.IMAPPollInterval, cfg.IMAPIdleRefresh, cfg.IMAPCleanupMargin = "INBOX", 10*time.Second, 9*time.Minute, time.Hour
	cfg.IMAPFastPoll = receiver.Defaults().IMAPFastPoll
	r, err := receiver.New(cfg, receiver.Deps{Checks: l.checks, Publisher: l.pub, Keyring: l.keyring,
		IMAPTLS: &tls.Config{RootCAs: l.e.cas, MinVersion: tls.VersionTLS12}, Logger: l.log, Registerer: prometheus.NewRegistry(),
		Sent: platform.NATSSubscriber{NC: l.js.Conn()}})
	if err != nil {
		l.t.Fatal(err)
	}
	l.run("receiver", r.Run)
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func ms(p *int64) time.Duration {
	if p == nil {
		return -1
	}
	return time.Duration(*p) * time.Millisecond
}

// checkOK asserts a first-revision ok result with a real round trip.
func checkOK(t *testing.T, r events.CheckResult) time.Duration {
	t.Helper()
	if r.Status != events.StatusOK || r.Revision != 1 || r.Late || r.RTTMS == nil || r.ReceivedAt == nil || r.ReflectedAt == nil {
		t.Fatalf("result %+v, want revision 1 ok with rtt, received and reflected times", r)
	}
	rtt := ms(r.RTTMS)
	if d := r.ReceivedAt.Sub(r.StartedAt); rtt <= 0 || (d-rtt).Abs() >= time.Millisecond {
		t.Fatalf("rtt %v is not received_at - started_at (%v)", rtt, d)
	}
	return rtt
}

func summary(rtts []time.Duration) string {
	s := slices.Clone(rtts)
	slices.Sort(s)
	return fmt.Sprintf("rtt min %v, median %v, max %v (n=%d)", s[0], s[len(s)/2], s[len(s)-1], len(s))
}

// TestLoopSMTP: the sender submits probes to Postfix; local(8) runs
// scout-reflector from ~/.forward; the reflection goes back through
// Postfix, whose transport map routes the return domain to the receiver's
// SMTP port; the evaluator records ok with the measured rtt.
func TestLoopSMTP(t *testing.T) {
	e := setup(t)
	l := startLoop(t, e, returnAddr)
	l.startSMTPReceiver(listen(t, "127.0.0.1:0"))
	var rtts []time.Duration
	for i := 0; i < 5; i++ {
		rtts = append(rtts, checkOK(t, l.result(l.schedule("acme-rt"), 1)))
	}
	if n := l.returns(); n != 5 {
		t.Errorf("%d mail.returned, want 5", n)
	}
	fmt.Printf("e2e: loop sender -> Postfix (STARTTLS) -> local(8) -> .forward -> scout-reflector -> Postfix -> receiver (SMTP) -> evaluator: %s\n", summary(rtts))
	t.Logf("measured %s", summary(rtts))
}

// TestLoopIMAP: the return address is delivered by Postfix to a Maildir;
// the receiver in IMAP mode takes the returns from Dovecot, deletes them
// and leaves foreign mail alone; the evaluator records ok.
func TestLoopIMAP(t *testing.T) {
	e := setup(t)
	l := startLoop(t, e, imapReturn)
	marker := fmt.Sprintf("lunch-%d", time.Now().UnixNano())
	qid := e.submit(imapReturn, []byte("From: friend@example.org\r\nTo: "+imapReturn+"\r\nSubject: "+marker+"\r\n\r\nhi\r\n"))
	e.maillog(qid, `status=sent \(delivered to maildir\)`)
	l.startIMAPReceiver()
	var rtts []time.Duration
	var ids []string
	for i := 0; i < 3; i++ {
		id := l.schedule("acme-rt")
		ids = append(ids, id)
		r := l.result(id, 1)
		rtts = append(rtts, checkOK(t, r))
	}
	// The returns are deleted, the foreign message is kept.
	maildir := "/home/" + returnUser + "/Maildir"
	for {
		foreign, probes := maildirCount(maildir, marker, ids)
		if foreign == 1 && probes == 0 {
			break
		}
		select {
		case <-e.ctx.Done():
			t.Fatalf("in %s: %d copies of the foreign message (want 1), %d returns (want 0)", maildir, foreign, probes)
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Printf("e2e: loop sender -> Postfix -> .forward -> scout-reflector -> Postfix -> Maildir -> Dovecot -> receiver (IMAP, fast poll while probes are out) -> evaluator: %s\n", summary(rtts))
	t.Logf("measured %s", summary(rtts))
}

// maildirCount counts the messages in maildir that contain marker, and
// those that contain one of ids.
func maildirCount(maildir, marker string, ids []string) (withMarker, withID int) {
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(maildir, sub))
		for _, de := range entries {
			b, _ := os.ReadFile(filepath.Join(maildir, sub, de.Name()))
			if bytes.Contains(b, []byte(marker)) {
				withMarker++
			}
			for _, id := range ids {
				if bytes.Contains(b, []byte(id)) {
					withID++
				}
			}
		}
	}
	return withMarker, withID
}

// TestLoopReturnPortDownThenUp: the receiver's port is down when the
// reflection comes back; Postfix defers it; the attempt times out; when
// the receiver is up again and Postfix retries, the return is recorded as
// revision 2 of the result: still a timeout, late, with its real rtt. Not
// lost.
func TestLoopReturnPortDownThenUp(t *testing.T) {
	e := setup(t)
	l := startLoop(t, e, returnAddr)
	ln := listen(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	l.startSMTPReceiver(ln)() // routed there, then stopped: the port is closed
	id := l.schedule("acme-late")
	_, port, _ := net.SplitHostPort(addr)
	deferred := regexp.MustCompile(`to=<` + regexp.QuoteMeta(returnAddr) + `>.*status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:` + port + `: Connection refused\)`)
	for !deferred.Match(readFile(postfixLog)) {
		select {
		case <-e.ctx.Done():
			t.Fatal("the reflection was not deferred by Postfix")
		case <-time.After(50 * time.Millisecond):
		}
	}
	first := l.result(id, 1)
	if first.Status != events.StatusTimeout || first.RTTMS != nil {
		t.Fatalf("first result %+v, want a timeout without rtt", first)
	}
	l.startSMTPReceiver(listen(t, addr))
	run(t, "postqueue", "-f")
	late := l.result(id, 2)
	if late.Status != events.StatusTimeout || !late.Late || late.RTTMS == nil || ms(late.RTTMS) < 3*time.Second {
		t.Fatalf("revision 2 %+v, want a late timeout with an rtt of at least the 3s timeout", late)
	}
	if n := l.returns(); n != 1 {
		t.Errorf("%d mail.returned, want 1", n)
	}
	fmt.Printf("e2e: loop with the receiver's port down, then up: timeout, then revision 2 late with rtt %v (not lost)\n", ms(late.RTTMS))
}

func readFile(name string) []byte {
	b, _ := os.ReadFile(name)
	return b
}

// TestLoopForgedProbe: a probe forged with a wrong key, for the check and
// site of the loop, injected straight into Postfix: the reflector ignores
// it, nothing comes back, nothing is recorded as returned; a genuine test
// right after it is ok.
func TestLoopForgedProbe(t *testing.T) {
	e := setup(t)
	l := startLoop(t, e, returnAddr)
	l.startSMTPReceiver(listen(t, "127.0.0.1:0"))
	forger := probemail.Key{ID: e.key.ID, Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{0x42}, 32))}
	forgedID, err := events.NewTestID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := probemail.Build(probemail.Probe{KeyID: forger.ID, TestID: forgedID, CheckID: "acme-rt", Site: site, Attempt: 1,
		StartedAt: time.Now().Truncate(time.Millisecond), ReturnTo: returnAddr}, probeBox, forger, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	qid := e.submit(probeBox, forged)
	e.maillog(qid, `status=sent \(delivered to command: `)
	checkOK(t, l.result(l.schedule("acme-rt"), 1))
	e.quiet()
	if n := l.returns(); n != 1 {
		t.Errorf("%d mail.returned, want 1 (the genuine test's)", n)
	}
	if r := l.resultsOf(forgedID); len(r) != 0 {
		t.Errorf("results for the forged probe: %+v", r)
	}
	if b := readFile(postfixLog); bytes.Contains(b, []byte("reflected."+forgedID)) {
		t.Errorf("the maillog shows a reflection of the forged probe")
	}
}
