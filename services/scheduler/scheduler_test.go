package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/scheduler"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
)

const checkFile = `
sites: [eu-west, us-east]
checks:
  - id: acme-roundtrip
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
  - id: globex-roundtrip
    customer: globex
    kind: roundtrip
    target: probe@globex.example
    sites: [eu-west]
    interval: 5m
`

func loadChecks(t *testing.T) *checks.File {
	t.Helper()
	f, err := checks.Parse("checks.yaml", []byte(checkFile))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type recorder struct {
	mu  sync.Mutex
	evs []events.TestScheduled
	err error
}

func (r *recorder) PublishAll(_ context.Context, evs []events.Event) []platform.Published {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]platform.Published, len(evs))
	for i, ev := range evs {
		if out[i].Err = r.err; r.err == nil {
			r.evs = append(r.evs, ev.(events.TestScheduled))
		}
	}
	return out
}

func (r *recorder) take() []events.TestScheduled {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	return out
}

// advance moves clock by d a second at a time, each step once the
// scheduler waits on it.
func advance(t *testing.T, clock *clockwork.FakeClock, d time.Duration) {
	t.Helper()
	end := clock.Now().Add(d)
	for clock.Now().Before(end) {
		if err := clock.BlockUntilContext(natstest.Context(t), 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
}

// byPair takes the tests published so far, by "<check>/<site>".
func (r *recorder) byPair() map[string][]events.TestScheduled {
	got := map[string][]events.TestScheduled{}
	for _, ev := range r.take() {
		got[ev.CheckID+"/"+ev.Site] = append(got[ev.CheckID+"/"+ev.Site], ev)
	}
	return got
}

func TestSlots(t *testing.T) {
	c := loadChecks(t).Lookup("acme-roundtrip")
	for _, at := range []time.Time{time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), time.Unix(0, 0), time.Unix(-1, 0)} {
		n := scheduler.SlotAt(c, at)
		start := scheduler.SlotStart(c, n)
		if start.After(at) || !scheduler.SlotStart(c, n+1).After(at) {
			t.Errorf("slot %d [%v, %v) does not contain %v", n, start, scheduler.SlotStart(c, n+1), at)
		}
	}
	if p := c.Phase(); p < 0 || p >= c.Interval {
		t.Errorf("phase %v outside [0, %v)", p, c.Interval)
	}
	other := loadChecks(t).Lookup("globex-roundtrip")
	if c.Phase() == other.Phase()%c.Interval && c.Phase() == 0 {
		t.Error("phases do not spread checks")
	}
}

// TestScheduleOverHours moves a fake clock through six hours: every check
// and site gets exactly one test per interval, at its phase, with the slot's
// message id and a send window.
func TestScheduleOverHours(t *testing.T) {
	f := loadChecks(t)
	start := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	rec := &recorder{}
	s, err := scheduler.New(scheduler.Config{CatchUp: time.Nanosecond}, scheduler.Deps{Checks: f, Publisher: rec, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	advance(t, clock, 6*time.Hour)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rec.byPair()
	want := map[string]int{"acme-roundtrip/eu-west": 18, "acme-roundtrip/us-east": 18, "globex-roundtrip/eu-west": 72}
	for key, n := range want {
		evs := got[key]
		if len(evs) != n {
			t.Errorf("%s: %d tests in 6h, want %d", key, len(evs), n)
			continue
		}
		c := f.Lookup(evs[0].CheckID)
		ids := map[string]bool{}
		for i, ev := range evs {
			if i > 0 && ev.ScheduledAt.Sub(evs[i-1].ScheduledAt) != c.Interval {
				t.Errorf("%s: gap %v between tests", key, ev.ScheduledAt.Sub(evs[i-1].ScheduledAt))
			}
			if off := ev.ScheduledAt.Sub(time.Unix(0, 0)) % c.Interval; off != c.Phase() {
				t.Errorf("%s: test at offset %v, phase is %v", key, off, c.Phase())
			}
			if ev.NotAfter.Sub(ev.ScheduledAt) != c.SendWindow() || ev.Attempt != 1 || ev.Reason != events.ReasonInterval {
				t.Errorf("%s: %+v", key, ev)
			}
			if err := ev.Validate(); err != nil {
				t.Error(err)
			}
			ids[ev.TestID] = true
		}
		if len(ids) != n {
			t.Errorf("%s: test ids repeat", key)
		}
	}
}

// TestTwoReplicasOneCopy runs two schedulers against a real JetStream: each
// slot is stored once.
func TestTwoReplicasOneCopy(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithCancel(natstest.Context(t))
	defer cancel()
	f := loadChecks(t)
	// Start just after a slot of globex (5m interval) so that both replicas
	// catch it up at once.
	g := f.Lookup("globex-roundtrip")
	at := scheduler.SlotStart(g, scheduler.SlotAt(g, time.Now())).Add(time.Second)
	clock := clockwork.NewFakeClockAt(at)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		s, err := scheduler.New(scheduler.Config{CatchUp: 2 * time.Minute}, scheduler.Deps{Checks: f, Publisher: platform.JetStreamPublisher{JS: js}, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
	}
	if err := clock.BlockUntilContext(ctx, 2); err != nil {
		t.Fatal(err)
	}
	clock.Advance(5 * time.Minute)
	if err := clock.BlockUntilContext(ctx, 2); err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	st, err := js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("test.scheduled.>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects[events.StoredSubject("test.scheduled.eu-west.globex-roundtrip")]; got != 2 {
		t.Errorf("globex/eu-west stored %d tests for 2 slots by 2 replicas, want 2 (subjects %v)", got, info.State.Subjects)
	}
}

func TestPublishFailureRetriedWithinWindow(t *testing.T) {
	f, err := checks.Parse("c.yaml", []byte("sites: [a]\nchecks:\n  - {id: c, customer: x, kind: roundtrip, target: p@x.example, interval: 1m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := f.Lookup("c")
	clock := clockwork.NewFakeClockAt(scheduler.SlotStart(c, 1000).Add(-time.Second))
	rec := &recorder{err: errors.New("nats down")}
	s, _ := scheduler.New(scheduler.Config{}, scheduler.Deps{Checks: f, Publisher: rec, Clock: clock})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	clock.BlockUntilContext(ctx, 1)
	clock.Advance(time.Second) // slot 1000 starts; publish fails
	clock.BlockUntilContext(ctx, 1)
	clock.Advance(time.Second) // retry fails again
	clock.BlockUntilContext(ctx, 1)
	rec.mu.Lock()
	rec.err = nil
	rec.mu.Unlock()
	clock.Advance(time.Second) // retry succeeds, 2s into the 15s window
	clock.BlockUntilContext(ctx, 1)
	cancel()
	<-done
	got := rec.take()
	if len(got) != 1 || got[0].Slot != 1000 {
		t.Fatalf("published %+v, want slot 1000 once after retries", got)
	}
}

// TestReload: a new version of the check file (checks.Live.Set, as the
// check file watcher does) applies while Run runs: the removed check stops,
// the added one starts with its next slot, and a kept check neither skips
// nor repeats a slot.
func TestReload(t *testing.T) {
	start := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	rec := &recorder{}
	live := checks.NewLive(loadChecks(t))
	var logs testkit.LogBuffer
	s, err := scheduler.New(scheduler.Config{CatchUp: time.Nanosecond}, scheduler.Deps{Checks: live, Publisher: rec, Clock: clock,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	advance(t, clock, time.Hour)
	reloadAt := clock.Now()
	next, err := checks.Parse("checks.yaml", []byte(`
sites: [eu-west, us-east]
checks:
  - id: acme-roundtrip
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
  - id: initech-roundtrip
    customer: initech
    kind: roundtrip
    target: probe@initech.example
    sites: [us-east]
    interval: 5m
`))
	if err != nil {
		t.Fatal(err)
	}
	live.Set(next)
	// The fake clock stands still until the scheduler has replanned.
	for len(logs.Lines("check file changed: rescheduled")) == 0 {
		if natstest.Context(t).Err() != nil {
			t.Fatal("the scheduler never replanned")
		}
		time.Sleep(time.Millisecond)
	}
	advance(t, clock, time.Hour)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rec.byPair()
	for _, ev := range got["globex-roundtrip/eu-west"] {
		if ev.ScheduledAt.After(reloadAt) {
			t.Errorf("removed check still scheduled at %v (reload at %v)", ev.ScheduledAt, reloadAt)
		}
	}
	if n := len(got["globex-roundtrip/eu-west"]); n != 12 {
		t.Errorf("globex: %d tests in the hour before its removal, want 12", n)
	}
	initech := got["initech-roundtrip/us-east"]
	if len(initech) != 12 || initech[0].ScheduledAt.Before(reloadAt) || initech[0].ScheduledAt.Sub(reloadAt) >= 5*time.Minute {
		t.Errorf("initech: %d tests, first at %v; want 12 from the first slot after the reload at %v", len(initech), initech[0].ScheduledAt, reloadAt)
	}
	for _, key := range []string{"acme-roundtrip/eu-west", "acme-roundtrip/us-east"} {
		evs := got[key]
		if len(evs) != 6 {
			t.Errorf("%s: %d tests in 2h across the reload, want 6", key, len(evs))
		}
		for i := 1; i < len(evs); i++ {
			if gap := evs[i].ScheduledAt.Sub(evs[i-1].ScheduledAt); gap != 20*time.Minute {
				t.Errorf("%s: gap %v between tests across the reload", key, gap)
			}
		}
	}
}

// TestManyPairsInSlotOrder schedules 2,000 checks at three sites (6,000
// pairs, one a minute each) for two minutes on a fake clock: every pair
// gets one test per interval, tests come out in the order of their slots'
// starts, and each is published within the clock step its slot began in
// (the scheduler wakes for the earliest slot, not for a scan of all pairs).
func TestManyPairsInSlotOrder(t *testing.T) {
	var spec strings.Builder
	spec.WriteString("defaults: {interval: 1m, timeout: 30s, slow: 10s}\nsites: [a, b, c]\nchecks:\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&spec, "  - {id: c%d, customer: x, kind: roundtrip, target: p%d@x.example}\n", i, i)
	}
	f, err := checks.Parse("checks.yaml", []byte(spec.String()))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	rec := &clockRecorder{clock: clock}
	s, err := scheduler.New(scheduler.Config{CatchUp: time.Nanosecond}, scheduler.Deps{Checks: f, Publisher: rec, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	advance(t, clock, 2*time.Minute)
	if err := clock.BlockUntilContext(natstest.Context(t), 1); err != nil { // the last step handled
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	perPair := map[string]int{}
	for i, p := range rec.got {
		perPair[p.ev.CheckID+"/"+p.ev.Site]++
		if i > 0 && p.ev.ScheduledAt.Before(rec.got[i-1].ev.ScheduledAt) {
			t.Fatalf("test %d (%v) published after one due later (%v)", i, p.ev.ScheduledAt, rec.got[i-1].ev.ScheduledAt)
		}
		if late := p.at.Sub(p.ev.ScheduledAt); late < 0 || late >= time.Second {
			t.Fatalf("%s/%s due %v published at %v", p.ev.CheckID, p.ev.Site, p.ev.ScheduledAt, p.at)
		}
	}
	if len(perPair) != 6000 {
		t.Fatalf("%d pairs published, want 6000", len(perPair))
	}
	for pair, n := range perPair {
		if n != 2 {
			t.Fatalf("%s: %d tests in two intervals, want 2", pair, n)
		}
	}
}

type published struct {
	ev events.TestScheduled
	at time.Time
}

// clockRecorder records each test with the fake clock's time of publishing.
type clockRecorder struct {
	clock *clockwork.FakeClock
	mu    sync.Mutex
	got   []published
}

func (r *clockRecorder) PublishAll(_ context.Context, evs []events.Event) []platform.Published {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range evs {
		r.got = append(r.got, published{ev.(events.TestScheduled), r.clock.Now()})
	}
	return make([]platform.Published, len(evs))
}
