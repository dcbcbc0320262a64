package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/scheduler"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// The simulation runs the real scheduler and evaluator on an embedded
// nats-server with a fake clock, and plays the sender, the customer's mail
// system and the receiver itself: each test.scheduled is "sent" after the
// site's phase offset and "returns" (or not) as the scenario says. The fake
// clock moves in one-second steps; after each step the world runs until
// nothing is left to do, so hours pass in seconds and every time is exact.

// outcome is what happens to one probe.
type outcome struct {
	sent   string        // events.SentOK (default), SentFailed, SentMonitorError, or "none" (the sender is dead)
	rtt    time.Duration // round trip; negative: the probe never returns
	reply  *events.SMTPReply
	reflDt time.Duration // reflector clock offset
	// bounce, when set, comes back bounceAfter the send instead of the
	// probe (mail.bounced, as the receiver publishes it).
	bounce      *events.Bounce
	bounceAfter time.Duration
	// deferFor: the customer's MX answers 4xx for this long (mail.sent
	// "deferred" at once), then takes the probe; the round trip counts
	// from the first attempt.
	deferFor time.Duration
}

type behaviour func(site string, ts events.TestScheduled, now time.Time) outcome

type sim struct {
	t      *testing.T
	srv    *natstest.Server
	js     jetstream.JetStream
	pub    platform.JetStreamPublisher
	clock  *clockwork.FakeClock
	checks *checks.Live // the scheduler's and evaluators' check file
	cfg    evaluator.Config
	behave behaviour
	// phase delays each site's sending (random phases across sites).
	phase map[string]time.Duration

	sender  jetstream.Consumer
	pending []delayed // sends and returns waiting for their time

	ctx     context.Context
	cancel  context.CancelFunc
	waiters int // clock waiters when the world is idle
	evals   []*runningEval
	start   time.Time
	logs    *testkit.LogBuffer // the evaluators' logs, shown when a test fails
	log     *slog.Logger
}

type delayed struct {
	at  time.Time
	run func(now time.Time)
}

type runningEval struct {
	e      *evaluator.Evaluator
	cancel context.CancelFunc
	done   chan error
}

func newSim(t *testing.T, checkYAML string, behave behaviour) *sim {
	t.Helper()
	f, err := checks.Parse("sim.yaml", []byte(checkYAML))
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithCancel(natstest.Context(t))
	t.Cleanup(cancel)
	// A fixed, arbitrary start: slots and phases are then reproducible.
	start := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	s := &sim{
		t: t, srv: srv, js: js, pub: platform.JetStreamPublisher{JS: js}, clock: clockwork.NewFakeClockAt(start),
		checks: checks.NewLive(f), behave: behave, phase: map[string]time.Duration{}, ctx: ctx, cancel: cancel, start: start,
		cfg: evaluator.Config{SubmitGrace: 2 * time.Minute, Settle: time.Second, Workers: 4, Failover: 2 * time.Second},
	}
	s.logs = &testkit.LogBuffer{}
	s.log = slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("evaluator logs:\n%s", s.logs.String())
		}
	})
	s.sender, err = js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable: "sim-sender", FilterSubjects: []string{"test.scheduled.>"}, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts the scheduler and one evaluator.
func (s *sim) run() {
	sch, err := scheduler.New(scheduler.Config{}, scheduler.Deps{Checks: s.checks, Publisher: s.pub, Clock: s.clock})
	if err != nil {
		s.t.Fatal(err)
	}
	go func() { _ = sch.Run(s.ctx) }()
	s.waiters++
	s.startEvaluator()
	s.settle()
}

func (s *sim) startEvaluator() *runningEval {
	e, err := evaluator.New(s.cfg, evaluator.Deps{Checks: s.checks, JS: s.js, Clock: s.clock, Logger: s.log})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	re := &runningEval{e: e, cancel: cancel, done: make(chan error, 1)}
	go func() { re.done <- e.Run(ctx) }()
	s.evals = append(s.evals, re)
	s.waiters++
	return re
}

// kill stops an evaluator abruptly (no goodbye: its consumer pin lapses).
func (s *sim) kill(re *runningEval) {
	re.cancel()
	if err := <-re.done; err != nil {
		s.t.Fatalf("evaluator: %v", err)
	}
	s.waiters--
	for i, x := range s.evals {
		if x == re {
			s.evals = append(s.evals[:i], s.evals[i+1:]...)
			break
		}
	}
}

// advance moves the fake clock by d, stopping at every moment something is
// due (a slot, a timer, a send or a return) so that each happens at its
// exact time.
func (s *sim) advance(d time.Duration) {
	end := s.clock.Now().Add(d)
	for s.clock.Now().Before(end) {
		next := minTime(s.nextDue(), end)
		if !next.After(s.clock.Now()) {
			next = s.clock.Now().Add(time.Millisecond)
		}
		s.clock.Advance(next.Sub(s.clock.Now()))
		s.settle()
	}
}

// nextDue is the earliest moment something in the world is due.
func (s *sim) nextDue() time.Time {
	now := s.clock.Now()
	next := now.Add(time.Hour)
	for _, p := range s.pending {
		next = minTime(next, p.at)
	}
	for _, c := range s.checks.Current().Checks {
		next = minTime(next, scheduler.SlotStart(c, scheduler.SlotAt(c, now)+1))
	}
	for _, re := range s.evals {
		if t, ok := re.e.NextTimer(); ok {
			next = minTime(next, t)
		}
	}
	return next
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// settle runs the world until it is idle: every goroutine waits on the
// clock, every consumer is drained and nothing due is left to play.
func (s *sim) settle() {
	s.t.Helper()
	idle := 0
	deadline := time.Now().Add(30 * time.Second)
	for idle < 2 {
		bctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		err := s.clock.BlockUntilContext(bctx, s.waiters)
		cancel()
		if err != nil {
			s.t.Fatalf("settle: the world did not come to rest (%d clock waiters expected): %v", s.waiters, err)
		}
		if time.Now().After(deadline) {
			evaluatorDrained, senderDrained := s.drained()
			s.t.Fatalf("settle: still busy after 30s (evaluator drained %v, sim sender drained %v, %d pending)",
				evaluatorDrained, senderDrained, len(s.pending))
		}
		busy := s.playSender()
		busy = s.playDue() || busy
		if !busy && s.idle() {
			idle++
		} else {
			idle = 0
			time.Sleep(time.Millisecond)
		}
	}
}

// drained reports whether the evaluator's consumers (one per partition)
// and the sim's sender have delivered and seen acknowledged every stored
// message their filters match. It asks the server three things whatever the
// number of partitions: every consumer's info, the stored subjects, and the
// last message of each stored subject a consumer's filter matches.
func (s *sim) drained() (evaluatorDrained, senderDrained bool) {
	st, err := s.js.Stream(s.ctx, events.StreamName)
	if err != nil {
		s.t.Fatal(err)
	}
	infos := map[string]*jetstream.ConsumerInfo{}
	list := st.ListConsumers(s.ctx)
	for info := range list.Info() {
		infos[info.Name] = info
	}
	if err := list.Err(); err != nil {
		s.t.Fatal(err)
	}
	si, err := st.Info(s.ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		s.t.Fatal(err)
	}
	evaluatorDrained = true
	for _, d := range events.EvaluatorConsumer().Durables() {
		info, ok := infos[d]
		if !ok {
			// Not bound yet: drained only when no evaluator runs.
			evaluatorDrained = len(s.evals) == 0
			break
		}
		if !s.consumerDrained(st, info, si.State.Subjects) {
			evaluatorDrained = false
			break
		}
	}
	return evaluatorDrained, s.consumerDrained(st, infos["sim-sender"], si.State.Subjects)
}

// idle reports whether every consumer is drained.
func (s *sim) idle() bool {
	evaluatorDrained, senderDrained := s.drained()
	return evaluatorDrained && senderDrained
}

// consumerDrained reports whether the consumer has nothing pending or
// unacknowledged. The server updates a consumer's pending count
// asynchronously after a publish: under load it can read 0 for a message
// just stored. So the last stored message of every subject its filter
// matches must have been delivered (and, with nothing ack-pending, handled).
func (s *sim) consumerDrained(st jetstream.Stream, info *jetstream.ConsumerInfo, stored map[string]uint64) bool {
	if info == nil {
		s.t.Fatal("sim: a consumer is missing")
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		return false
	}
	filters := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filters = append(filters, info.Config.FilterSubject)
	}
	for subject := range stored {
		if !slices.ContainsFunc(filters, func(f string) bool { return server.SubjectMatchesFilter(subject, f) }) {
			continue
		}
		last, err := st.GetLastMsgForSubject(s.ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			s.t.Fatal(err)
		}
		if last.Sequence > info.Delivered.Stream {
			return false
		}
	}
	return true
}

// playSender takes the scheduled tests and plans their sending.
func (s *sim) playSender() bool {
	batch, err := s.sender.FetchNoWait(100)
	if err != nil {
		s.t.Fatal(err)
	}
	n := 0
	for msg := range batch.Messages() {
		n++
		ts, err := events.Decode[events.TestScheduled](msg.Data())
		if err != nil {
			s.t.Fatal(err)
		}
		_ = msg.Ack()
		at := s.clock.Now()
		if ts.Reason == events.ReasonInterval {
			at = at.Add(s.phase[ts.Site])
		}
		s.pending = append(s.pending, delayed{at: at, run: func(now time.Time) { s.send(ts, now) }})
	}
	return n > 0
}

func (s *sim) send(ts events.TestScheduled, now time.Time) {
	o := s.behave(ts.Site, ts, now)
	if o.sent == "none" {
		return
	}
	if o.sent == "" {
		o.sent = events.SentOK
	}
	started := now.Truncate(time.Millisecond)
	sent := events.MailSent{V: 1, TestID: ts.TestID, CheckID: ts.CheckID, Site: ts.Site, Attempt: ts.Attempt,
		Status: o.sent, StartedAt: started, Reply: o.reply}
	if o.sent == events.SentOK {
		sent.SentAt = started.Add(50*time.Millisecond + o.deferFor)
	}
	if o.sent == events.SentMonitorError {
		sent.ErrorClass = "relay_unreachable"
	}
	if o.deferFor > 0 && o.sent == events.SentOK {
		deferred := sent
		deferred.Status, deferred.ErrorClass, deferred.SentAt = events.SentDeferred, "mx_deferred", time.Time{}
		deferred.Evidence = &events.Evidence{Deferred: &events.SMTPReply{Code: 451, Enhanced: "4.7.1", Text: "greylisted, try again later"}}
		s.publish(deferred)
		s.pending = append(s.pending, delayed{at: sent.SentAt, run: func(time.Time) { s.publish(sent) }})
	} else {
		s.publish(sent)
	}
	if o.bounce != nil && o.sent == events.SentOK {
		b := events.MailBounced{V: 1, TestID: ts.TestID, CheckID: ts.CheckID, Site: ts.Site, Action: o.bounce.Action,
			Bounce: *o.bounce, ReceivedAt: started.Add(o.bounceAfter), MatchedBy: events.MatchedVERP, Via: "smtp"}
		s.pending = append(s.pending, delayed{at: b.ReceivedAt, run: func(time.Time) { s.publish(b) }})
		return
	}
	if o.sent != events.SentOK || o.rtt < 0 {
		return
	}
	refl := started.Add(o.rtt / 2).Add(o.reflDt)
	ret := events.MailReturned{V: 1, TestID: ts.TestID, CheckID: ts.CheckID, Site: ts.Site, Attempt: ts.Attempt,
		KeyID: "k", StartedAt: started, ReflectedAt: &refl, ReceivedAt: started.Add(o.rtt), Via: "smtp", MatchedBy: "header"}
	s.pending = append(s.pending, delayed{at: started.Add(o.rtt), run: func(time.Time) { s.publish(ret) }})
}

func (s *sim) playDue() bool {
	now := s.clock.Now()
	sort.SliceStable(s.pending, func(i, j int) bool { return s.pending[i].at.Before(s.pending[j].at) })
	ran := false
	for len(s.pending) > 0 && !s.pending[0].at.After(now) {
		d := s.pending[0]
		s.pending = s.pending[1:]
		d.run(now)
		ran = true
	}
	return ran
}

func (s *sim) publish(ev events.Event) {
	if _, err := s.pub.Publish(s.ctx, ev); err != nil {
		s.t.Fatalf("publish %s: %v", ev.Subject(), err)
	}
}

// stored returns every event stored on subjects matching filter, decoded
// by decode, in stream order.
func stored[T any](s *sim, filter string) []T {
	s.t.Helper()
	c, err := s.js.OrderedConsumer(s.ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := c.Info(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []T
	for remaining := int(info.NumPending); remaining > 0; {
		batch, err := c.Fetch(remaining, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			s.t.Fatal(err)
		}
		for msg := range batch.Messages() {
			var v T
			if err := json.Unmarshal(msg.Data(), &v); err != nil {
				s.t.Fatal(err)
			}
			out = append(out, v)
			remaining--
		}
		if batch.Error() != nil {
			s.t.Fatal(batch.Error())
		}
	}
	return out
}

func (s *sim) opens() []events.IncidentOpen { return stored[events.IncidentOpen](s, "incident.open.>") }
func (s *sim) resolveds() []events.IncidentResolved {
	return stored[events.IncidentResolved](s, "incident.resolved.>")
}
func (s *sim) results() []events.CheckResult { return stored[events.CheckResult](s, "check.result.>") }

// Scenario helpers.

const defaultsOneSite = `
sites: [eu-west]
checks:
  - id: acme
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
`

const defaultsThreeSites = `
sites: [eu-west, us-east, ap-south]
checks:
  - id: acme
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
`

// outageFrom returns a behaviour in which every probe started in [from, to)
// never returns (to zero: never ends), and all others return after rtt.
func outageFrom(from, to time.Time, rtt time.Duration) behaviour {
	return func(_ string, _ events.TestScheduled, now time.Time) outcome {
		if !now.Before(from) && (to.IsZero() || now.Before(to)) {
			return outcome{rtt: -1}
		}
		return outcome{rtt: rtt}
	}
}

// lastGoodStart runs the sim until the first regular test has returned and
// returns when that good test started and ended.
func (s *sim) firstGoodTest() (started, returned time.Time) {
	s.t.Helper()
	for i := 0; i < 3600; i++ {
		if rs := s.results(); len(rs) > 0 {
			return rs[0].StartedAt, *rs[0].ReceivedAt
		}
		s.advance(10 * time.Second)
	}
	s.t.Fatal("no result within an hour")
	return
}

func TestSimOneSiteOutageBound(t *testing.T) {
	var outage time.Time
	s := newSim(t, defaultsOneSite, func(site string, ts events.TestScheduled, now time.Time) outcome {
		if !outage.IsZero() && !now.Before(outage) {
			return outcome{rtt: -1}
		}
		return outcome{rtt: 4 * time.Second}
	})
	s.run()
	_, returned := s.firstGoodTest()
	outage = returned // the outage starts right after a good test
	s.advance(returned.Sub(s.clock.Now()) + 45*time.Minute)
	opens := s.opens()
	if len(opens) != 1 {
		t.Fatalf("%d incidents opened, want 1: %+v", len(opens), opens)
	}
	delay := opens[0].OpenedAt.Sub(outage)
	t.Logf("outage at %s, incident opened %s later: %s", outage.Format(time.TimeOnly), delay, opens[0].Reason)
	if delay > 40*time.Minute+30*time.Second {
		t.Errorf("incident opened %v after the outage began, bound is 40m30s", delay)
	}
	if opens[0].Severity != events.SeverityCritical || opens[0].Reason != "no return from the only site; retest failed" || !opens[0].Notify {
		t.Errorf("incident: %+v", opens[0])
	}
	if got := len(opens[0].Sites[0].Attempts); got != 2 {
		t.Errorf("evidence: %d attempts, want attempt 1 and its retest", got)
	}
	// c12: the retest is a new probe sent retry_delay after attempt 1 timed out.
	var first, retest *events.CheckResult
	for _, r := range s.results() {
		r := r
		if r.Status == events.StatusTimeout && r.Attempt == 1 && first == nil {
			first = &r
		}
		if r.Attempt == 2 && retest == nil {
			retest = &r
		}
	}
	if first == nil || retest == nil || retest.TestID == first.TestID || retest.OriginTestID != first.TestID {
		t.Fatalf("attempt 1 %+v, retest %+v", first, retest)
	}
	if gap := retest.StartedAt.Sub(first.StartedAt); gap < 10*time.Minute+30*time.Second {
		t.Errorf("retest started %v after attempt 1, want >= timeout + retry_delay (10m30s)", gap)
	}
}

func TestSimThreeSitesRandomPhases(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 42))
			var outage time.Time
			s := newSim(t, defaultsThreeSites, func(site string, ts events.TestScheduled, now time.Time) outcome {
				if !outage.IsZero() && !now.Before(outage) {
					return outcome{rtt: -1}
				}
				return outcome{rtt: 3 * time.Second}
			})
			for _, site := range []string{"eu-west", "us-east", "ap-south"} {
				s.phase[site] = time.Duration(rnd.Int64N(int64(20 * time.Minute)))
			}
			s.run()
			s.advance(45 * time.Minute) // every site has had good tests
			// The outage begins right after the last good test of any site.
			var last time.Time
			for _, r := range s.results() {
				if r.ReceivedAt != nil && r.ReceivedAt.After(last) {
					last = *r.ReceivedAt
				}
			}
			outage = last
			s.advance(outage.Sub(s.clock.Now()) + 50*time.Minute)
			opens := s.opens()
			if len(opens) != 1 {
				t.Fatalf("%d opens, want 1", len(opens))
			}
			delay := opens[0].OpenedAt.Sub(outage)
			t.Logf("phases %v: opened %v after the outage: %s", s.phase, delay, opens[0].Reason)
			if delay > 40*time.Minute+30*time.Second+5*time.Second {
				t.Errorf("opened %v after the outage, bound is 40m30s plus a few seconds", delay)
			}
			if opens[0].Quorum != 2 || len(opens[0].Sites) < 2 {
				t.Errorf("quorum %d with %d sites", opens[0].Quorum, len(opens[0].Sites))
			}
		})
	}
}

func TestSimNoIncident(t *testing.T) {
	cases := []struct {
		name   string
		behave func(s *sim) behaviour
		check  func(t *testing.T, s *sim)
	}{
		{"one lost mail", func(s *sim) behaviour {
			lost := 0
			return func(site string, ts events.TestScheduled, now time.Time) outcome {
				if site == "eu-west" && ts.Attempt == 1 && now.Sub(s.start) > 30*time.Minute && lost == 0 {
					lost++
					return outcome{rtt: -1}
				}
				return outcome{rtt: 2 * time.Second}
			}
		}, func(t *testing.T, s *sim) {
			if n := countStatus(s.results(), events.StatusTimeout); n != 1 {
				t.Errorf("%d timeouts, want the one lost mail", n)
			}
		}},
		{"one site's network down", func(s *sim) behaviour {
			return func(site string, _ events.TestScheduled, now time.Time) outcome {
				if site == "eu-west" && now.Sub(s.start) > 30*time.Minute {
					return outcome{rtt: -1}
				}
				return outcome{rtt: 2 * time.Second}
			}
		}, func(t *testing.T, s *sim) {
			if n := countStatus(s.results(), events.StatusTimeout); n < 3 {
				t.Errorf("%d timeouts: the broken site was not tested", n)
			}
		}},
		{"our relay down", func(s *sim) behaviour {
			return func(string, events.TestScheduled, time.Time) outcome {
				return outcome{sent: events.SentMonitorError, reply: &events.SMTPReply{Code: 421, Text: "relay unavailable"}}
			}
		}, func(t *testing.T, s *sim) {
			rs := s.results()
			if n := countStatus(rs, events.StatusMonitorError); n == 0 || n != len(rs) {
				t.Errorf("%d of %d results are monitor_error, want all", n, len(rs))
			}
			health := stored[events.MonitorHealthEvent](s, "monitor.health.>")
			down := 0
			for _, h := range health {
				if h.Status == events.MonitorDown {
					down++
				}
			}
			if down != 3 {
				t.Errorf("monitor health events %+v: want every site reported down once", health)
			}
		}},
		{"attempt 2 succeeds", func(s *sim) behaviour {
			return func(_ string, ts events.TestScheduled, now time.Time) outcome {
				if ts.Attempt == 1 && now.Sub(s.start) > 30*time.Minute && now.Sub(s.start) < 50*time.Minute {
					return outcome{rtt: -1}
				}
				return outcome{rtt: 2 * time.Second}
			}
		}, func(t *testing.T, s *sim) {
			confirmed := 0
			for _, r := range s.results() {
				if r.Attempt == 2 && r.Status == events.StatusOK {
					confirmed++
				}
			}
			if confirmed == 0 {
				t.Error("no successful confirmation attempt")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, defaultsThreeSites, nil)
			s.behave = tc.behave(s)
			s.run()
			s.advance(2 * time.Hour)
			if o := s.opens(); len(o) != 0 {
				t.Errorf("incident opened: %+v", o)
			}
			if r := s.resolveds(); len(r) != 0 {
				t.Errorf("incident resolved: %+v", r)
			}
			tc.check(t, s)
		})
	}
}

func countStatus(rs []events.CheckResult, status string) int {
	n := 0
	for _, r := range rs {
		if r.Status == status && r.Revision <= 1 {
			n++
		}
	}
	return n
}

// TestSimRecovery is docs/field-cases.md, c12 across sites: resolved once, only
// after the open, never while a confirmation is pending.
func TestSimRecovery(t *testing.T) {
	start := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	from, to := start.Add(30*time.Minute), start.Add(90*time.Minute)
	s := newSim(t, defaultsThreeSites, outageFrom(from, to, 3*time.Second))
	s.run()
	s.advance(3 * time.Hour)
	opens, resolveds := s.opens(), s.resolveds()
	if len(opens) != 1 || len(resolveds) != 1 {
		t.Fatalf("opens %d, resolveds %d; want 1 and 1", len(opens), len(resolveds))
	}
	o, r := opens[0], resolveds[0]
	if r.IncidentID != o.IncidentID || !r.ResolvedAt.After(o.OpenedAt) {
		t.Errorf("resolved %+v does not follow open %+v", r, o)
	}
	if r.ResolvedAt.Before(to) {
		t.Errorf("resolved at %v, before the outage ended at %v", r.ResolvedAt, to)
	}
	// No confirmation was in flight at the resolution.
	for _, res := range s.results() {
		if res.Attempt >= 2 && res.StartedAt.Before(r.ResolvedAt) && res.FinishedAt.After(r.ResolvedAt) {
			t.Errorf("resolved at %v while confirmation %s (started %v) was pending", r.ResolvedAt, res.TestID, res.StartedAt)
		}
	}
	t.Logf("outage %v..%v; open %v (%s); resolved %v", from.Format(time.TimeOnly), to.Format(time.TimeOnly),
		o.OpenedAt.Format(time.TimeOnly), o.Reason, r.ResolvedAt.Format(time.TimeOnly))
}

// TestSimEvaluatorRestartMidTimeout kills the evaluator while an attempt is
// in flight and starts another: the deadline fires once, on time.
func TestSimEvaluatorRestartMidTimeout(t *testing.T) {
	start := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	s := newSim(t, defaultsOneSite, outageFrom(start.Add(30*time.Minute), time.Time{}, 2*time.Second))
	s.run()
	s.advance(30 * time.Minute)
	// Run until an attempt is in flight after the outage began.
	var inflight string
	for i := 0; i < 1800 && inflight == ""; i++ {
		s.advance(10 * time.Second)
		for _, ev := range stored[events.MailSent](s, "mail.sent.>") {
			if ev.StartedAt.After(start.Add(30 * time.Minute)) {
				inflight = ev.TestID
			}
		}
	}
	if inflight == "" {
		t.Fatal("no attempt in flight")
	}
	s.advance(3 * time.Minute)
	s.kill(s.evals[0])
	// Time passes with no evaluator running: the deadline is missed...
	s.advance(10 * time.Minute)
	// ...and a new evaluator fires it.
	time.Sleep(s.cfg.Failover + time.Second)
	s.startEvaluator()
	s.settle()
	s.advance(2 * time.Second)
	var got []events.CheckResult
	for _, r := range s.results() {
		if r.TestID == inflight {
			got = append(got, r)
		}
	}
	if len(got) != 1 || got[0].Status != events.StatusTimeout {
		t.Fatalf("results for the in-flight attempt: %+v, want exactly one timeout", got)
	}
}

// TestSimTwoEvaluators runs two evaluator replicas side by side: one
// incident, one resolution.
func TestSimTwoEvaluators(t *testing.T) {
	start := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	s := newSim(t, defaultsThreeSites, outageFrom(start.Add(30*time.Minute), start.Add(100*time.Minute), 3*time.Second))
	s.run()
	s.startEvaluator()
	s.advance(3 * time.Hour)
	if o, r := s.opens(), s.resolveds(); len(o) != 1 || len(r) != 1 {
		t.Fatalf("two evaluators: %d opens, %d resolutions; want 1 and 1", len(o), len(r))
	}
}

// TestSimOutOfOrderAndRedelivered feeds one attempt's events in every order
// and twice: the verdicts are the same.
func TestSimOutOfOrderAndRedelivered(t *testing.T) {
	const oneCheck = `
sites: [eu-west]
checks:
  - {id: acme, customer: acme, kind: roundtrip, target: webscout@acme.example, interval: 1h}
`
	orders := [][]string{
		{"scheduled", "sent", "returned"},
		{"returned", "sent", "scheduled"},
		{"sent", "returned", "scheduled"},
		{"returned", "scheduled", "sent", "returned", "scheduled"},
	}
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			s := newSim(t, oneCheck, func(string, events.TestScheduled, time.Time) outcome { return outcome{sent: "none"} })
			s.cfg.Workers = 1
			s.startEvaluator()
			s.settle()
			now := s.clock.Now()
			id, _ := events.NewTestID(rand.NewChaCha8([32]byte{7}))
			evs := map[string]events.Event{
				"scheduled": events.TestScheduled{V: 1, TestID: id, CheckID: "acme", Site: "eu-west", Kind: events.KindRoundTrip,
					Attempt: 1, Reason: events.ReasonInterval, Slot: 1, ScheduledAt: now, NotAfter: now.Add(time.Minute)},
				"sent": events.MailSent{V: 1, TestID: id, CheckID: "acme", Site: "eu-west", Attempt: 1, Status: events.SentOK,
					StartedAt: now, SentAt: now.Add(time.Second)},
				"returned": events.MailReturned{V: 1, TestID: id, CheckID: "acme", Site: "eu-west", Attempt: 1,
					StartedAt: now, ReceivedAt: now.Add(3 * time.Minute), Via: "smtp"},
			}
			for _, name := range order {
				// Raw publishes without a message id: redelivered copies reach
				// the evaluator.
				data, _ := json.Marshal(evs[name])
				if _, err := s.js.Publish(s.ctx, evs[name].Subject(), data); err != nil {
					t.Fatal(err)
				}
				s.settle()
			}
			s.advance(15 * time.Minute)
			rs := s.results()
			if len(rs) != 1 || rs[0].Status != events.StatusSlow || *rs[0].RTTMS != 180000 {
				t.Fatalf("results %+v, want one slow result with rtt 180000 ms", rs)
			}
		})
	}
}

// TestSimAttemptRecordOfTheLastRelease: an attempt in flight when the
// evaluator is upgraded has its record at the key of the last release,
// attempt.<test id>, without the partition that keys carry now. The new
// evaluator arms its deadline from the KV watch and times it out: one
// timeout result, and the old record is marked done.
func TestSimAttemptRecordOfTheLastRelease(t *testing.T) {
	const oneCheck = `
sites: [eu-west]
checks:
  - {id: acme, customer: acme, kind: roundtrip, target: webscout@acme.example, interval: 1h}
`
	s := newSim(t, oneCheck, func(string, events.TestScheduled, time.Time) outcome { return outcome{sent: "none"} })
	now := s.clock.Now()
	id, _ := events.NewTestID(rand.NewChaCha8([32]byte{9}))
	sent := now.Add(-time.Minute)
	old := evaluator.Attempt{TestID: id, CheckID: "acme", Site: "eu-west", Kind: events.KindRoundTrip, Attempt: 1,
		Reason: events.ReasonInterval, ScheduledAt: sent, StartedAt: sent, SentAt: &sent,
		Deadline: now.Add(2 * time.Minute), DeadlineKind: events.DeadlineReturn}
	kv, err := s.js.KeyValue(s.ctx, events.BucketEvaluator)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(old)
	if _, err := kv.Put(s.ctx, "attempt."+id, data); err != nil {
		t.Fatal(err)
	}
	s.startEvaluator()
	s.settle()
	s.advance(3 * time.Minute)
	rs := s.results()
	if len(rs) != 1 || rs[0].TestID != id || rs[0].Status != events.StatusTimeout {
		t.Fatalf("results %+v, want one timeout of %s", rs, id)
	}
	e, err := kv.Get(s.ctx, "attempt."+id)
	if err != nil {
		t.Fatal(err)
	}
	var a evaluator.Attempt
	if err := json.Unmarshal(e.Value(), &a); err != nil || !a.Done || a.Status != events.StatusTimeout {
		t.Errorf("the record of the last release: %+v (%v), want done with status timeout", a, err)
	}
}

// TestSimCheckRemoved: acme's outage opens an incident; then acme leaves
// the check file (a reload: checks.Live.Set). The evaluator resolves the
// open incident with "check removed" at once, tests of acme stop, and
// globex, still in the file, goes on.
func TestSimCheckRemoved(t *testing.T) {
	two := defaultsOneSite + `  - id: globex
    customer: globex
    kind: roundtrip
    target: probe@globex.example
`
	start := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	s := newSim(t, two, func(_ string, ts events.TestScheduled, now time.Time) outcome {
		if ts.CheckID == "acme" && !now.Before(start.Add(30*time.Minute)) {
			return outcome{rtt: -1}
		}
		return outcome{rtt: 3 * time.Second}
	})
	s.run()
	s.advance(2 * time.Hour)
	opens := s.opens()
	if len(opens) != 1 || opens[0].CheckID != "acme" || len(s.resolveds()) != 0 {
		t.Fatalf("before the reload: opens %+v, resolveds %+v; want acme's incident open", opens, s.resolveds())
	}
	f, err := checks.Parse("sim.yaml", []byte(strings.Replace(two, `  - id: acme
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
`, "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	removedAt := s.clock.Now()
	s.checks.Set(f)
	// The clock stands still: the evaluator resolves on the reload itself,
	// not on a later event or timer.
	for len(s.resolveds()) == 0 && s.ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	s.advance(time.Hour)
	rs := s.resolveds()
	if len(rs) != 1 || rs[0].IncidentID != opens[0].IncidentID || rs[0].Reason != events.ResolvedCheckRemoved {
		t.Fatalf("resolveds %+v; want acme's incident resolved with %q", rs, events.ResolvedCheckRemoved)
	}
	if !rs[0].ResolvedAt.Equal(removedAt) {
		t.Errorf("resolved at %v, want at the reload (%v)", rs[0].ResolvedAt, removedAt)
	}
	if !rs[0].Notify {
		t.Error("the resolution must reach the notifier (which tells only those told of the open)")
	}
	lastGlobex := time.Time{}
	for _, r := range s.results() {
		if r.CheckID == "acme" && r.StartedAt.After(removedAt.Add(time.Second)) {
			t.Errorf("acme tested at %v, after its removal at %v", r.StartedAt, removedAt)
		}
		if r.CheckID == "globex" && r.StartedAt.After(lastGlobex) {
			lastGlobex = r.StartedAt
		}
	}
	if lastGlobex.Before(removedAt.Add(30 * time.Minute)) {
		t.Errorf("globex's last result started at %v: it stopped with acme's removal at %v", lastGlobex, removedAt)
	}
	if n := len(s.opens()); n != 1 {
		t.Errorf("%d incidents opened, want only acme's", n)
	}
}
