package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/services/notifier/internal/twilio"
	"github.com/emailscout/emailscout/services/notifier/internal/twiliotest"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	accountSID = "AC0123456789abcdef0123456789abcdef"
	authToken  = "fedcba9876543210fedcba9876543210"
	fromNumber = "+15555550199"
)

const checkFile = `
sites: [eu-west, us-east]
checks:
  - id: acme-roundtrip
    customer: acme
    name: ACME mail round trip
    kind: roundtrip
    target: webscout@acme.example
    contacts:
      - name: ACME on-call
        phone: "+15555550100"
      - name: ACME boss
        phone: "+15555550101"
  - id: globex-roundtrip
    customer: globex
    name: Globex mail
    kind: roundtrip
    target: probe@globex.example
    contacts:
      - name: Globex ops
        phone: "+15555550102"
    maintenance:
      - weekly: "Sun 02:00-04:00"
        timezone: Europe/Berlin
        reason: patch window
  - id: initech-roundtrip
    customer: initech
    name: Initech mail
    kind: roundtrip
    target: probe@initech.example
    contacts:
      - name: Initech ops
        phone: "+15555550103"
`

// t0 is a Sunday, 12:04 UTC (outside Globex's maintenance window).
var t0 = time.Date(2026, 11, 29, 12, 4, 0, 0, time.UTC)

// incID returns a 24-character incident id in the events.NewTestID form.
func incID(prefix string) string { return (prefix + strings.Repeat("a", 24))[:24] }

func openEvent(check, id string) events.IncidentOpen {
	return events.IncidentOpen{
		V: 1, IncidentID: id, CheckID: check, Customer: strings.TrimSuffix(check, "-roundtrip"), Kind: events.KindRoundTrip,
		Severity: events.SeverityCritical, Since: t0.Add(-25 * time.Minute), OpenedAt: t0,
		Reason: "no return from 2 of 2 sites; retest failed",
		Sites:  []events.SiteVote{{Site: "us-east", Verdict: "down"}, {Site: "eu-west", Verdict: "down"}},
		Quorum: 2, Eligible: 2, Notify: true,
	}
}

func resolvedEvent(open events.IncidentOpen, at time.Time) events.IncidentResolved {
	return events.IncidentResolved{
		V: 1, IncidentID: open.IncidentID, CheckID: open.CheckID, Customer: open.Customer, Kind: open.Kind,
		Severity: open.Severity, Since: open.Since, OpenedAt: open.OpenedAt, ResolvedAt: at,
		Reason: "returns from 2 of 2 sites", Notify: open.Notify,
	}
}

type harness struct {
	t      *testing.T
	ctx    context.Context
	nc     *nats.Conn
	js     jetstream.JetStream
	fake   *twiliotest.Server
	clock  *clockwork.FakeClock
	checks *checks.Live // the check file in force; Set is a reload

	mu     sync.Mutex
	events []events.Notification
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv)
	f, err := checks.Parse("checks.yaml", []byte(checkFile))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ctx: natstest.Context(t), nc: nc, js: js, fake: twiliotest.Start(t, accountSID, authToken),
		clock: clockwork.NewFakeClockAt(t0.Add(time.Minute)), checks: checks.NewLive(f)}
	sub, err := nc.Subscribe("notification.>", func(m *nats.Msg) {
		ev, err := events.Decode[events.Notification](m.Data)
		if err != nil {
			t.Errorf("bad notification event: %v", err)
			return
		}
		if m.Subject != ev.Subject() {
			t.Errorf("notification on %s, its subject is %s", m.Subject, ev.Subject())
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return h
}

// testConfig keeps the defaults except for a short backoff (the clock is
// fake anyway) and one worker.
func testConfig() Config {
	return Config{Env: EnvProduction, Workers: 2}
}

func (h *harness) twilio() Provider {
	h.t.Helper()
	p, err := twilio.New(twilio.Config{AccountSID: accountSID, AuthToken: authToken, From: fromNumber, HTTPClient: h.fake.Client()})
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// notifier builds a notifier replica with its own metrics registry.
func (h *harness) notifier(replica string, cfg Config, p Provider, pub platform.Publisher) (*Notifier, *prometheus.Registry) {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	if p == nil {
		p = h.twilio()
	}
	n, err := New(cfg, Deps{Checks: h.checks, JS: h.js, Publisher: pub, Provider: p, Clock: h.clock, ReplicaID: replica, Registerer: reg})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := n.openStore(h.ctx); err != nil {
		h.t.Fatal(err)
	}
	return n, reg
}

// run starts n on the consumer until the test ends.
func (h *harness) run(n *Notifier) {
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
}

// publish stores ev in the stream under msgID (empty: the event's own).
func (h *harness) publish(ev events.Event, msgID string) {
	h.t.Helper()
	if msgID == "" {
		msgID = ev.MsgID()
	}
	data, _ := json.Marshal(ev)
	if _, err := h.js.Publish(h.ctx, ev.Subject(), data, jetstream.WithMsgID(msgID)); err != nil {
		h.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the test's context ends.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	for !cond() {
		select {
		case <-h.ctx.Done():
			h.t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// settled waits until the consumer has no message left to deliver or
// acknowledge: nothing more will be sent.
func (h *harness) settled() {
	h.t.Helper()
	h.waitFor("the notifier consumer to drain", func() bool {
		c, err := h.js.Consumer(h.ctx, events.StreamName, "notifier")
		if err != nil {
			return false
		}
		info, err := c.Info(h.ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	// Events are published before the ack; make sure ours arrived.
	if err := h.nc.Flush(); err != nil {
		h.t.Fatal(err)
	}
}

// notifications returns the events seen, de-duplicated by message id (as
// the stream stores them), sorted by contact and transition.
func (h *harness) notifications() []events.Notification {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	var out []events.Notification
	for _, ev := range h.events {
		if !seen[ev.MsgID()] {
			seen[ev.MsgID()] = true
			out = append(out, ev)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Contact != out[j].Contact {
			return out[i].Contact < out[j].Contact
		}
		return out[i].Transition < out[j].Transition // open before resolved
	})
	return out
}

func (h *harness) waitNotifications(n int) []events.Notification {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%d notification events", n), func() bool { return len(h.notifications()) >= n })
	return h.notifications()
}

// advanceUntil moves the fake clock past every backoff until cond holds.
func (h *harness) advanceUntil(what string, cond func() bool) {
	h.t.Helper()
	for !cond() {
		if h.ctx.Err() != nil {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		wctx, cancel := context.WithTimeout(h.ctx, 20*time.Millisecond)
		if h.clock.BlockUntilContext(wctx, 1) == nil {
			h.clock.Advance(withDefaults(testConfig()).RetryMax) // every backoff is at most RetryMax
		}
		cancel()
	}
}

func (h *harness) receipt(key string) Receipt {
	h.t.Helper()
	kv, err := h.js.KeyValue(h.ctx, events.BucketNotifications)
	if err != nil {
		h.t.Fatal(err)
	}
	e, err := kv.Get(h.ctx, key)
	if err != nil {
		h.t.Fatalf("receipt %s: %v", key, err)
	}
	var r Receipt
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

func bodies(rs []twiliotest.Request) map[string]string {
	out := map[string]string{}
	for _, r := range rs {
		out[r.To] += r.Body
	}
	return out
}

// TestOpenResolvedPair: an open and its resolved send two SMS to each
// contact, with the texts asserted, receipts holding the Twilio SIDs, and
// notification.sent events for the recorder.
func TestOpenResolvedPair(t *testing.T) {
	h := newHarness(t)
	n, reg := h.notifier("r1", testConfig(), nil, nil)
	h.run(n)
	open := openEvent("acme-roundtrip", incID("pair"))
	h.publish(open, "")
	h.waitNotifications(2)
	wantOpen := "DOWN ACME mail round trip: no return from 2 of 2 sites; retest failed. Since 11:39 UTC, sites eu-west, us-east. Incident #pairaaaa"
	if got := bodies(h.fake.Created()); len(got) != 2 || got["+15555550100"] != wantOpen || got["+15555550101"] != wantOpen {
		t.Fatalf("open SMS %q, want %q to each contact", got, wantOpen)
	}
	h.publish(resolvedEvent(open, t0.Add(85*time.Minute)), "")
	evs := h.waitNotifications(4)
	h.settled()
	wantResolved := "RESOLVED ACME mail round trip: OK again after 1h50m (since 11:39 UTC). Incident #pairaaaa"
	created := h.fake.Created()
	if len(created) != 4 {
		t.Fatalf("%d SMS, want 4", len(created))
	}
	for _, r := range created[2:] {
		if r.Body != wantResolved || r.From != fromNumber {
			t.Errorf("resolved SMS %+v, want %q", r, wantResolved)
		}
	}
	if p := h.fake.Problems(); len(p) > 0 {
		t.Errorf("malformed Twilio requests: %v", p)
	}
	sids := map[string]bool{}
	for _, r := range created {
		sids[r.SID] = true
	}
	for _, ev := range evs {
		if ev.Outcome != events.NotifySent || ev.Provider != "twilio" || !sids[ev.ProviderID] || ev.Attempts != 1 || ev.Segments != 1 {
			t.Errorf("event %+v", ev)
		}
		r := h.receipt(ReceiptKey(ev.CheckID, ev.IncidentID, ev.Transition, ev.Address))
		if r.State != events.NotifySent || r.ProviderID != ev.ProviderID || r.InFlight || r.Text != ev.Text {
			t.Errorf("receipt %+v", r)
		}
	}
	if got := testkit.MustMetric(t, reg, "scout_notifier_messages_total", map[string]string{"provider": "twilio", "outcome": "sent"}); got != 4 {
		t.Errorf("messages_total{sent} = %v, want 4", got)
	}
	if got := testkit.MustMetric(t, reg, "scout_notifier_send_seconds", map[string]string{"provider": "twilio"}); got != 4 {
		t.Errorf("send_seconds count = %v, want 4", got)
	}
}

// flakyPublisher fails its first n publishes, like a JetStream outage
// right after the SMS went out.
type flakyPublisher struct {
	platform.Publisher
	mu   sync.Mutex
	fail int
}

func (p *flakyPublisher) Publish(ctx context.Context, ev events.Event) (bool, error) {
	p.mu.Lock()
	if p.fail > 0 {
		p.fail--
		p.mu.Unlock()
		return false, errors.New("nats: timeout")
	}
	p.mu.Unlock()
	return p.Publisher.Publish(ctx, ev)
}

// TestRedeliveredOpen: the handler fails after sending (the event could not
// be published), so JetStream redelivers the open; an evaluator replica
// also publishes the open again under another message id. One SMS per
// contact all the same, and the events still reach the recorder.
func TestRedeliveredOpen(t *testing.T) {
	h := newHarness(t)
	pub := &flakyPublisher{Publisher: platform.JetStreamPublisher{JS: h.js}, fail: 2}
	n, _ := h.notifier("r1", testConfig(), nil, pub)
	h.run(n)
	open := openEvent("acme-roundtrip", incID("redeliver"))
	h.publish(open, "")
	evs := h.waitNotifications(2)
	h.publish(open, "evaluator-replica-copy")
	h.settled()
	if got := h.fake.Created(); len(got) != 2 {
		t.Errorf("%d SMS, want 2 (one per contact)", len(got))
	}
	for _, ev := range evs {
		if ev.Outcome != events.NotifySent {
			t.Errorf("event %+v", ev)
		}
	}
	c, _ := h.js.Consumer(h.ctx, events.StreamName, "notifier")
	if info, err := c.Info(h.ctx); err != nil || info.Delivered.Consumer < 3 {
		t.Errorf("the open was never redelivered: %d deliveries of 2 messages", info.Delivered.Consumer)
	}
}

// TestTwoReplicas: two notifiers share the consumer and the receipts
// bucket; Twilio answers slowly so that their work overlaps, and the open
// is in the stream three times (evaluator replicas beyond the duplicate
// window). One SMS per contact.
func TestTwoReplicas(t *testing.T) {
	h := newHarness(t)
	h.fake.Respond(twiliotest.Response{Delay: 300 * time.Millisecond}, twiliotest.Response{Delay: 300 * time.Millisecond})
	a, _ := h.notifier("replica-a", testConfig(), nil, nil)
	b, _ := h.notifier("replica-b", testConfig(), nil, nil)
	h.run(a)
	h.run(b)
	open := openEvent("acme-roundtrip", incID("replicas"))
	for i := range 3 {
		h.publish(open, fmt.Sprintf("copy-%d", i))
	}
	h.waitNotifications(2)
	h.publish(resolvedEvent(open, t0.Add(10*time.Minute)), "")
	h.waitNotifications(4)
	h.settled()
	got := h.fake.Created()
	if len(got) != 4 {
		t.Fatalf("%d SMS, want 4 (open and resolved to each of 2 contacts): %+v", len(got), got)
	}
	per := map[string]int{}
	for _, r := range got {
		per[r.To]++
	}
	if per["+15555550100"] != 2 || per["+15555550101"] != 2 {
		t.Errorf("SMS per number %v", per)
	}
}

// TestConcurrentHandle races two replicas on the very same event, many
// times over, below the consumer: the compare-and-set receipt lets exactly
// one of them send to each contact.
func TestConcurrentHandle(t *testing.T) {
	h := newHarness(t)
	h.fake.Respond(twiliotest.Response{Delay: 100 * time.Millisecond}, twiliotest.Response{Delay: 100 * time.Millisecond})
	a, _ := h.notifier("replica-a", testConfig(), nil, nil)
	b, _ := h.notifier("replica-b", testConfig(), nil, nil)
	open := openEvent("acme-roundtrip", incID("race"))
	data, _ := json.Marshal(open)
	var wg sync.WaitGroup
	busy := make(chan struct{}, 100)
	for i := range 8 {
		n := a
		if i%2 == 1 {
			n = b
		}
		wg.Go(func() {
			for {
				err := n.router.Dispatch(h.ctx, open.Subject(), data)
				if err == nil {
					return
				}
				if !errors.Is(err, errBusy) || h.ctx.Err() != nil {
					t.Errorf("handle: %v", err)
					return
				}
				busy <- struct{}{}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if got := h.fake.Created(); len(got) != 2 {
		t.Errorf("%d SMS, want 2", len(got))
	}
	if len(busy) == 0 {
		t.Error("no handler ever found a receipt held by another: the race was not exercised")
	}
}

// TestRetry429Then201: Twilio says 429, then 201: one SMS, retried after a
// backoff (on the fake clock), two requests.
func TestRetry429Then201(t *testing.T) {
	h := newHarness(t)
	h.fake.Respond(twiliotest.Response{Status: http.StatusTooManyRequests, Code: 20429, Message: "Too Many Requests", RetryAfter: "1"})
	n, reg := h.notifier("r1", testConfig(), nil, nil)
	h.run(n)
	h.publish(openEvent("initech-roundtrip", incID("retry")), "")
	h.advanceUntil("the retry", func() bool { return len(h.notifications()) >= 1 })
	h.settled()
	reqs := h.fake.Requests()
	if len(reqs) != 2 || reqs[0].Status != 429 || reqs[1].Status != 201 {
		t.Fatalf("requests %+v, want 429 then 201", reqs)
	}
	evs := h.notifications()
	if len(evs) != 1 || evs[0].Outcome != events.NotifySent || evs[0].Attempts != 2 || evs[0].ProviderID != reqs[1].SID {
		t.Errorf("events %+v", evs)
	}
	if got := testkit.MustMetric(t, reg, "scout_notifier_retries_total", nil); got != 1 {
		t.Errorf("retries_total = %v, want 1", got)
	}
}

// TestGiveUpAfter500s: Twilio answers 500 every time: the notifier gives
// up after MaxAttempts requests and publishes notification.failed.
func TestGiveUpAfter500s(t *testing.T) {
	h := newHarness(t)
	for range 10 {
		h.fake.Respond(twiliotest.Response{Status: 500, Code: 20500, Message: "Internal Server Error"})
	}
	n, reg := h.notifier("r1", testConfig(), nil, nil)
	h.run(n)
	open := openEvent("initech-roundtrip", incID("fivehundred"))
	h.publish(open, "")
	h.advanceUntil("the notifier to give up", func() bool { return len(h.notifications()) >= 1 })
	h.settled()
	if got := len(h.fake.Requests()); got != 5 {
		t.Errorf("%d requests, want 5 (SCOUT_NOTIFIER_MAX_ATTEMPTS)", got)
	}
	evs := h.notifications()
	if len(evs) != 1 || evs[0].Outcome != events.NotifyFailed || evs[0].Attempts != 5 || !strings.Contains(evs[0].Error, "HTTP 500") {
		t.Fatalf("events %+v", evs)
	}
	if got := testkit.MustMetric(t, reg, "scout_notifier_messages_total", map[string]string{"outcome": "failed"}); got != 1 {
		t.Errorf("messages_total{failed} = %v", got)
	}
	// Nobody received the open: the resolved is recorded, not sent.
	h.publish(resolvedEvent(open, t0.Add(time.Hour)), "")
	evs = h.waitNotifications(2)
	h.settled()
	if got := len(h.fake.Requests()); got != 5 {
		t.Errorf("%d requests after the resolved, want still 5", got)
	}
	if r := evs[1]; r.Transition != TransitionResolved || r.Outcome != events.NotifySuppressed || !strings.Contains(r.Reason, "the open was not delivered") {
		t.Errorf("resolved event %+v", r)
	}
}

// TestInvalidNumber: a permanent 400 (Twilio 21211) is recorded as failed
// at once: exactly one request, no backoff.
func TestInvalidNumber(t *testing.T) {
	h := newHarness(t)
	h.fake.Respond(twiliotest.Response{Status: 400, Code: 21211, Message: "The 'To' number +15555550103 is not a valid phone number."})
	n, _ := h.notifier("r1", testConfig(), nil, nil)
	h.run(n)
	h.publish(openEvent("initech-roundtrip", incID("invalid")), "")
	evs := h.waitNotifications(1)
	h.settled()
	if got := len(h.fake.Requests()); got != 1 {
		t.Errorf("%d requests, want exactly 1", got)
	}
	if evs[0].Outcome != events.NotifyFailed || evs[0].Attempts != 1 || !strings.Contains(evs[0].Error, "21211") {
		t.Errorf("event %+v", evs[0])
	}
}

// TestResolvedWithoutOpen: a resolved whose open never reached anyone is
// never sent. While the open may still come it waits (redelivery); after
// OpenWait it is recorded as suppressed. A late open then pages nobody.
func TestResolvedWithoutOpen(t *testing.T) {
	h := newHarness(t)
	n, _ := h.notifier("r1", testConfig(), nil, nil)
	open := openEvent("initech-roundtrip", incID("noopen"))
	res := resolvedEvent(open, h.clock.Now())
	data, _ := json.Marshal(res)
	if err := n.router.Dispatch(h.ctx, res.Subject(), data); !errors.Is(err, errBusy) || fault.MarkedPermanent(err) {
		t.Fatalf("fresh resolved without an open: err = %v, want a temporary wait", err)
	}
	h.run(n)
	h.publish(res, "")
	h.clock.Advance(11 * time.Minute)
	evs := h.waitNotifications(1)
	if evs[0].Outcome != events.NotifySuppressed || evs[0].Transition != TransitionResolved || !strings.Contains(evs[0].Reason, "no open was sent") {
		t.Errorf("event %+v", evs[0])
	}
	h.publish(open, "")
	evs = h.waitNotifications(2)
	h.settled()
	if got := len(h.fake.Requests()); got != 0 {
		t.Errorf("%d requests, want none", got)
	}
	if evs[0].Transition != TransitionOpen || evs[0].Outcome != events.NotifySuppressed || !strings.Contains(evs[0].Reason, "resolved before its open") {
		t.Errorf("late open event %+v", evs[0])
	}
}

// TestCheckRemoved: acme-roundtrip's incident was sent to its two
// contacts, then the check leaves the file (a reload) and the evaluator
// closes the incident with events.ResolvedCheckRemoved: the same two are
// told it is closed, not that it recovered. Initech's incident opened
// after Initech was removed: nobody was told of it, nobody hears of its
// close.
func TestCheckRemoved(t *testing.T) {
	h := newHarness(t)
	n, _ := h.notifier("r1", testConfig(), nil, nil)
	h.run(n)
	open := openEvent("acme-roundtrip", incID("gone"))
	h.publish(open, "")
	h.waitNotifications(2)

	f, err := checks.Parse("checks.yaml", []byte(`
sites: [eu-west, us-east]
checks:
  - id: globex-roundtrip
    customer: globex
    kind: roundtrip
    target: probe@globex.example
    contacts:
      - name: Globex ops
        phone: "+15555550102"
`))
	if err != nil {
		t.Fatal(err)
	}
	h.checks.Set(f)
	initech := openEvent("initech-roundtrip", incID("late"))
	h.publish(initech, "")
	closed := resolvedEvent(open, t0.Add(30*time.Minute))
	closed.Reason, closed.CheckName = events.ResolvedCheckRemoved, "ACME mail round trip" // as the evaluator copies it from the open
	h.publish(closed, "")
	gone := resolvedEvent(initech, t0.Add(30*time.Minute))
	gone.Reason = events.ResolvedCheckRemoved
	h.publish(gone, "")
	h.waitNotifications(4)
	h.settled()

	created := h.fake.Created()
	if len(created) != 4 {
		t.Fatalf("%d SMS, want the 2 opens and the 2 closes of acme: %+v", len(created), created)
	}
	want := "CLOSED ACME mail round trip: check removed after 55m (since 11:39 UTC). Incident #goneaaaa"
	if got := bodies(created[2:]); len(got) != 2 || got["+15555550100"] != want || got["+15555550101"] != want {
		t.Errorf("close SMS %q, want %q to each contact told of the open", got, want)
	}
	for _, ev := range h.notifications() {
		if ev.CheckID == "initech-roundtrip" {
			t.Errorf("initech's incident, never sent, produced %+v", ev)
		}
	}
}

// TestSuppressed: Notify=false, a warning of a check without
// notify_warnings, and an incident inside a maintenance window are
// recorded (notification.suppressed) but not sent, and neither are their
// resolveds.
func TestSuppressed(t *testing.T) {
	silenced := openEvent("acme-roundtrip", incID("silenced"))
	silenced.Notify, silenced.Silenced = false, "warning; notify_warnings is off"
	warning := openEvent("initech-roundtrip", incID("warning"))
	warning.Severity = events.SeverityWarning
	// Sunday 02:30 in Berlin (01:30 UTC in winter): Globex's patch window.
	maint := openEvent("globex-roundtrip", incID("maintenance"))
	maint.OpenedAt = time.Date(2026, 11, 29, 1, 30, 0, 0, time.UTC)
	cases := []struct {
		name   string
		open   events.IncidentOpen
		n      int
		reason string
	}{
		{"notify false", silenced, 2, "notify is false: warning; notify_warnings is off"},
		{"warning", warning, 1, "notify_warnings is off"},
		{"maintenance window", maint, 1, "opened inside maintenance Sun 02:00-04:00 Europe/Berlin (patch window)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			n, reg := h.notifier("r1", testConfig(), nil, nil)
			h.run(n)
			h.publish(tc.open, "")
			evs := h.waitNotifications(tc.n)
			for _, ev := range evs {
				if ev.Outcome != events.NotifySuppressed || !strings.Contains(ev.Reason, tc.reason) || ev.Text == "" {
					t.Errorf("event %+v, want suppressed with reason %q", ev, tc.reason)
				}
			}
			h.publish(resolvedEvent(tc.open, t0.Add(time.Hour)), "")
			evs = h.waitNotifications(2 * tc.n)
			h.settled()
			for _, ev := range evs {
				if ev.Transition == TransitionResolved && (ev.Outcome != events.NotifySuppressed || !strings.Contains(ev.Reason, "the open was suppressed")) {
					t.Errorf("resolved event %+v", ev)
				}
			}
			if got := len(h.fake.Requests()); got != 0 {
				t.Errorf("%d requests to Twilio, want none", got)
			}
			if got := testkit.MustMetric(t, reg, "scout_notifier_messages_total", map[string]string{"outcome": "suppressed"}); got != float64(2*tc.n) {
				t.Errorf("messages_total{suppressed} = %v", got)
			}
		})
	}
}

// TestAbandonedReceipts: receipts left pending by a replica that crashed.
// One whose lease runs is left alone; once the lease expires it is taken
// over and sent if no request was in flight, and recorded as failed
// (never resent) if one was.
func TestAbandonedReceipts(t *testing.T) {
	h := newHarness(t)
	n, _ := h.notifier("survivor", testConfig(), nil, nil)
	open := openEvent("acme-roundtrip", incID("abandoned"))
	data, _ := json.Marshal(open)
	kv, _ := h.js.KeyValue(h.ctx, events.BucketNotifications)
	now := h.clock.Now()
	put := func(phone string, inFlight bool) {
		r := Receipt{V: 1, IncidentID: open.IncidentID, CheckID: open.CheckID, Customer: "acme", Transition: TransitionOpen,
			Contact: "x", Phone: phone, State: StatePending, Owner: "crashed", LeaseUntil: now.Add(time.Minute),
			InFlight: inFlight, Attempts: 1, Provider: "twilio", Text: "DOWN (as the crashed replica wrote it)", CreatedAt: now, UpdatedAt: now}
		b, _ := json.Marshal(r)
		if _, err := kv.Create(h.ctx, ReceiptKey(open.CheckID, open.IncidentID, TransitionOpen, phone), b); err != nil {
			t.Fatal(err)
		}
	}
	put("+15555550100", false) // refused by Twilio, then the replica died in its backoff
	put("+15555550101", true)  // died waiting for Twilio's answer
	if err := n.router.Dispatch(h.ctx, open.Subject(), data); !errors.Is(err, errBusy) {
		t.Fatalf("while the lease runs: err = %v, want busy", err)
	}
	if got := len(h.fake.Requests()); got != 0 {
		t.Fatalf("%d requests while another replica holds the receipts", got)
	}
	h.clock.Advance(2 * time.Minute)
	if err := n.router.Dispatch(h.ctx, open.Subject(), data); err != nil {
		t.Fatal(err)
	}
	created := h.fake.Created()
	if len(created) != 1 || created[0].To != "+15555550100" || created[0].Body != "DOWN (as the crashed replica wrote it)" {
		t.Errorf("SMS %+v, want one to +15555550100 with the receipt's text", created)
	}
	sent := h.receipt(ReceiptKey(open.CheckID, open.IncidentID, TransitionOpen, "+15555550100"))
	if sent.State != events.NotifySent || sent.Attempts != 2 || sent.Owner != "survivor" {
		t.Errorf("taken-over receipt %+v", sent)
	}
	unknown := h.receipt(ReceiptKey(open.CheckID, open.IncidentID, TransitionOpen, "+15555550101"))
	if unknown.State != events.NotifyFailed || !strings.Contains(unknown.Error, "outcome unknown") {
		t.Errorf("in-flight receipt %+v, want failed with an unknown outcome", unknown)
	}
	h.waitFor("two events", func() bool { return len(h.notifications()) == 2 })
}

// TestShutdownDuringBackoff: a replica stopping while it waits to retry
// gives the receipt back, and another replica sends the message at once.
func TestShutdownDuringBackoff(t *testing.T) {
	h := newHarness(t)
	h.fake.Respond(twiliotest.Response{Status: 503, Message: "Service Unavailable"})
	a, _ := h.notifier("replica-a", testConfig(), nil, nil)
	b, _ := h.notifier("replica-b", testConfig(), nil, nil)
	open := openEvent("initech-roundtrip", incID("shutdown"))
	data, _ := json.Marshal(open)
	stop, cancel := context.WithCancel(h.ctx)
	errc := make(chan error, 1)
	go func() { errc <- a.router.Dispatch(platform.WithStopping(h.ctx, stop.Done()), open.Subject(), data) }()
	if err := h.clock.BlockUntilContext(h.ctx, 1); err != nil { // a waits for its backoff
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; err == nil || fault.MarkedPermanent(err) {
		t.Fatalf("a: err = %v, want a temporary error (redelivery)", err)
	}
	key := ReceiptKey(open.CheckID, open.IncidentID, TransitionOpen, "+15555550103")
	if r := h.receipt(key); r.State != StatePending || r.InFlight || h.clock.Now().Before(r.LeaseUntil) {
		t.Fatalf("receipt after a stopped: %+v, want pending, not in flight, lease given back", r)
	}
	if err := b.router.Dispatch(h.ctx, open.Subject(), data); err != nil {
		t.Fatal(err)
	}
	if r := h.receipt(key); r.State != events.NotifySent || r.Attempts != 2 || r.Owner != "replica-b" {
		t.Errorf("receipt %+v", r)
	}
	if got := len(h.fake.Created()); got != 1 {
		t.Errorf("%d SMS, want 1", got)
	}
}

// TestLogProvider: what `scout dev` shows: one readable line per would-be
// SMS, for the open and the resolved.
func TestLogProvider(t *testing.T) {
	h := newHarness(t)
	var out testkit.LogBuffer
	n, _ := h.notifier("dev", Config{Env: EnvDev}, NewLogProvider(&out), nil)
	h.run(n)
	open := openEvent("initech-roundtrip", incID("dev"))
	h.publish(open, "")
	h.waitNotifications(1)
	h.publish(resolvedEvent(open, t0.Add(5*time.Minute)), "")
	evs := h.waitNotifications(2)
	want := "SMS to Initech ops +15555550103 [GSM-7 122/160]: DOWN Initech mail: no return from 2 of 2 sites; retest failed. Since 11:39 UTC, sites eu-west, us-east. Incident #devaaaaa\n" +
		"SMS to Initech ops +15555550103 [GSM-7 79/160]: RESOLVED Initech mail: OK again after 30m (since 11:39 UTC). Incident #devaaaaa\n"
	if got := out.String(); got != want {
		t.Errorf("output\n%s\nwant\n%s", got, want)
	}
	if evs[0].Provider != "log" || evs[0].Outcome != events.NotifySent {
		t.Errorf("event %+v", evs[0])
	}
}

// TestPoisonEvents: malformed events and unknown checks are terminated,
// not retried.
func TestPoisonEvents(t *testing.T) {
	h := newHarness(t)
	n, _ := h.notifier("r1", testConfig(), nil, nil)
	unknown := openEvent("no-such-check", incID("unknown"))
	data, _ := json.Marshal(unknown)
	for name, tc := range map[string]struct {
		subject string
		data    []byte
	}{
		"unknown check": {unknown.Subject(), data},
		"not json":      {"incident.open.acme-roundtrip", []byte("{")},
		"no incident":   {"incident.resolved.acme-roundtrip", []byte(`{"v":1,"check_id":"acme-roundtrip","resolved_at":"2026-11-29T12:00:00Z"}`)},
		"bad subject":   {"incident.open.a.b", data},
	} {
		if err := n.router.Dispatch(h.ctx, tc.subject, tc.data); !fault.MarkedPermanent(err) {
			t.Errorf("%s: err = %v, want permanent", name, err)
		}
	}
}

func TestReceiptKey(t *testing.T) {
	if got := ReceiptKey("acme-roundtrip", "ab2cd3efgh4ijk5lmn6opq7r", "open", "+15555550100"); got != "acme-roundtrip.ab2cd3efgh4ijk5lmn6opq7r.open.15555550100" {
		t.Errorf("key %q", got)
	}
	odd := ReceiptKey("acme", "inc/with spaces.and.dots", "resolved", "+15555550100")
	if strings.Count(odd, ".") != 3 || strings.ContainsAny(odd, " /") {
		t.Errorf("key %q must stay four KV tokens", odd)
	}
	if ReceiptKey("acme", "a b", "open", "+1") == ReceiptKey("acme", "a c", "open", "+1") {
		t.Error("hashed ids collide")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	h := newHarness(t)
	_, err := New(Config{Lease: time.Minute, SendTimeout: 15 * time.Second, RetryMax: 2 * time.Minute}, Deps{Checks: h.checks, JS: h.js, Provider: h.twilio()})
	if err == nil || !strings.Contains(err.Error(), "SCOUT_NOTIFIER_LEASE") {
		t.Errorf("err = %v", err)
	}
	if _, err := New(Config{}, Deps{Checks: h.checks}); err == nil {
		t.Error("missing deps accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{}, Deps{Checks: h.checks, JS: h.js, Provider: h.twilio(), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{}, Deps{Checks: h.checks, JS: h.js, Provider: h.twilio(), Registerer: reg}); err == nil {
		t.Error("a second notifier on the same registry must fail, not panic")
	}
}

// BenchmarkHandleOpen measures one incident open to one contact end to end
// below the consumer: receipt create, attempt update, the Twilio request
// (fake, on loopback), the final update and the event publish.
func BenchmarkHandleOpen(b *testing.B) {
	srv := natstest.Start(b)
	_, js := natstest.Connect(b, srv)
	f, err := checks.Parse("checks.yaml", []byte(checkFile))
	if err != nil {
		b.Fatal(err)
	}
	fake := twiliotest.Start(b, accountSID, authToken)
	p, err := twilio.New(twilio.Config{AccountSID: accountSID, AuthToken: authToken, From: fromNumber, HTTPClient: fake.Client()})
	if err != nil {
		b.Fatal(err)
	}
	n, err := New(Config{}, Deps{Checks: f, JS: js, Provider: p, Clock: clockwork.NewFakeClockAt(t0)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := natstest.Context(b)
	if err := n.openStore(ctx); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		open := openEvent("initech-roundtrip", fmt.Sprintf("bench%019d", i))
		data, _ := json.Marshal(open)
		if err := n.router.Dispatch(ctx, open.Subject(), data); err != nil {
			b.Fatal(err)
		}
	}
	if got := len(fake.Created()); got != i {
		b.Fatalf("%d SMS for %d incidents", got, i)
	}
}

// withDefaults is cfg as New sees it.
func withDefaults(cfg Config) Config {
	platform.FillDefaults(&cfg)
	return cfg
}
