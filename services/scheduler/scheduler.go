// Package scheduler emits test.scheduled for every check at every site once
// per interval. Slots are aligned to the unix epoch plus a stable per-check
// phase (checks.Check.Phase), and each slot's message id is derived from
// (check, site, slot), so that several scheduler replicas can run side by
// side and JetStream stores one copy of each test.
package scheduler

import (
	"container/heap"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the scheduler.
type Config struct {
	// CatchUp: on start, a slot that began at most this long ago is still
	// published (a restart inside a slot does not skip it), if its send
	// window (checks.Check.SendWindow) is still open. Capped at half of
	// events.DuplicateWindow so that a replica's copy is de-duplicated.
	// Zero means 2 minutes.
	CatchUp time.Duration `env:"SCOUT_SCHEDULER_CATCH_UP" envDefault:"2m"`
}

// Deps are the scheduler's collaborators.
type Deps struct {
	Checks     checks.Source // read again when it changes (a reload)
	Publisher  Publisher
	Clock      clockwork.Clock       // nil: the real clock
	Rand       io.Reader             // test id randomness; nil: crypto/rand
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics
}

// Publisher publishes the tests due at one wake together: in order,
// without waiting for each one's acknowledgement before sending the next,
// and returns one outcome per event (platform.JetStreamPublisher).
// Publishing them one at a time bounded the scheduler by the round trip to
// NATS: about 1,250 tests/s on 2 cores shared with NATS (docs/capacity.md).
type Publisher interface {
	PublishAll(ctx context.Context, evs []events.Event) []platform.Published
}

// Scheduler publishes the tests of every check and site.
type Scheduler struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics metrics
}

type metrics struct {
	published  prometheus.Counter
	duplicates prometheus.Counter
	failures   prometheus.Counter
}

// Defaults is the configuration of an empty environment (the envDefault
// tags above: the one place the defaults are written).
func Defaults() Config { return platform.Defaults[Config]() }

// New validates cfg and deps and returns a Scheduler.
func New(cfg Config, deps Deps) (*Scheduler, error) {
	if deps.Checks == nil || deps.Publisher == nil {
		return nil, fmt.Errorf("scheduler: Checks and Publisher are required")
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Rand == nil {
		deps.Rand = rand.Reader
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	platform.FillDefaults(&cfg)
	cfg.CatchUp = min(cfg.CatchUp, events.DuplicateWindow/2)
	m := metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_scheduler_tests_published_total", Help: "Tests published (stored by JetStream)."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_scheduler_tests_duplicate_total", Help: "Tests another replica had published already."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_scheduler_publish_failures_total", Help: "Tests that could not be published (retried until the slot ends)."}),
	}
	if err := platform.Register(deps.Registerer, m.published, m.duplicates, m.failures); err != nil {
		return nil, fmt.Errorf("scheduler: metrics: %w", err)
	}
	return &Scheduler{cfg: cfg, deps: deps, log: deps.Logger.With("component", "scheduler"), metrics: m}, nil
}

// entry is one (check, site) pair and its next slot, which starts at
// dueAt(). There are three per check of a three-site file: 48 bytes each
// (docs/capacity.md, "Memory").
type entry struct {
	check *checks.Check
	site  string
	slot  int64
	due   int64 // SlotStart(check, slot) in Unix nanoseconds, kept with slot by setSlot
	index int   // in the queue
}

func (e *entry) setSlot(n int64) {
	e.slot = n
	e.due = SlotStart(e.check, n).UnixNano()
}

// dueAt is when the entry's slot starts.
func (e *entry) dueAt() time.Time { return time.Unix(0, e.due).UTC() }

// queue orders the pairs by their next slot's start, so that a wake costs
// O(log pairs) per test due instead of a scan of every pair.
type queue []*entry

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].due != q[j].due {
		return q[i].due < q[j].due
	}
	if q[i].check.ID != q[j].check.ID {
		return q[i].check.ID < q[j].check.ID
	}
	return q[i].site < q[j].site
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i]; q[i].index = i; q[j].index = j }
func (q *queue) Push(x any)   { e := x.(*entry); e.index = len(*q); *q = append(*q, e) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}

// SlotStart is when slot n of c begins: epoch + n*interval + phase.
func SlotStart(c *checks.Check, n int64) time.Time {
	return time.Unix(0, 0).UTC().Add(time.Duration(n)*c.Interval + c.Phase())
}

// SlotAt returns the slot of c that contains t.
func SlotAt(c *checks.Check, t time.Time) int64 {
	d := t.Sub(time.Unix(0, 0)) - c.Phase()
	n := int64(d / c.Interval)
	if d < 0 && d%c.Interval != 0 {
		n--
	}
	return n
}

// Run publishes tests until ctx ends. A publish that fails is retried every
// second until the slot's send window closes; then the slot is given up
// (the evaluator sees no test, which is not a success). When the check file
// changes (Deps.Checks), the pairs are rebuilt at once: a pair whose check
// keeps its schedule keeps its next slot, a new or rescheduled one starts
// as at start (catch-up rule), a removed one is no longer published.
func (s *Scheduler) Run(ctx context.Context) error {
	changed := s.deps.Checks.Changed()
	q := s.plan(nil, s.deps.Checks.Current(), s.deps.Clock.Now())
	var due []*entry // the pairs of one wake, reused
	for {
		var wake <-chan time.Time // nil (never) with no pairs
		var timer clockwork.Timer
		if len(q) > 0 {
			timer = s.deps.Clock.NewTimer(max(q[0].dueAt().Sub(s.deps.Clock.Now()), 0))
			wake = timer.Chan()
		}
		woken := false
		select {
		case <-ctx.Done():
		case <-changed:
			changed = s.deps.Checks.Changed()
			q = s.plan(q, s.deps.Checks.Current(), s.deps.Clock.Now())
		case <-wake:
			woken = true
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
		if !woken {
			continue
		}
		now := s.deps.Clock.Now()
		// Every pair whose slot has started, in order of their start.
		due = due[:0]
		for len(q) > 0 && q[0].due <= now.UnixNano() {
			due = append(due, heap.Pop(&q).(*entry))
		}
		retry := false
		for i, err := range s.publish(ctx, due) {
			e := due[i]
			if err != nil {
				s.metrics.failures.Inc()
				if now.Sub(e.dueAt()) < e.check.SendWindow() && ctx.Err() == nil {
					s.log.Warn("publish failed, retrying", "check", e.check.ID, "site", e.site, "slot", e.slot, "error", err)
					retry = true
					continue
				}
				s.log.Error("slot given up: test not published", "check", e.check.ID, "site", e.site, "slot", e.slot, "error", err)
			}
			// The next slot after now (slots missed while the process was
			// stalled are skipped, not sent late).
			e.setSlot(max(e.slot+1, SlotAt(e.check, now)+1))
		}
		for _, e := range due {
			heap.Push(&q, e)
		}
		clear(due)
		if ctx.Err() != nil {
			return nil
		}
		if retry {
			// A failed publish waits a second before its retry.
			select {
			case <-ctx.Done():
				return nil
			case <-s.deps.Clock.After(time.Second):
			}
		}
	}
}

// plan returns the (check, site) pairs of f with their next slots. A pair
// of prev whose check has the same interval and phase keeps its slot (it
// is not published twice); any other starts with the current slot while at
// least half of its send window is left (CatchUp), else the next one.
func (s *Scheduler) plan(prev queue, f *checks.File, now time.Time) queue {
	type pair struct{ check, site string }
	kept := map[pair]*entry{}
	for _, e := range prev {
		kept[pair{e.check.ID, e.site}] = e
	}
	entries := make(queue, 0, len(prev))
	for _, c := range f.Checks {
		for _, site := range c.Sites {
			e := &entry{check: c, site: site}
			if old := kept[pair{c.ID, site}]; old != nil && old.check.Interval == c.Interval && old.check.Phase() == c.Phase() {
				e.setSlot(old.slot)
			} else if e.setSlot(SlotAt(c, now)); now.Sub(e.dueAt()) > min(s.cfg.CatchUp, c.SendWindow()/2) {
				e.setSlot(e.slot + 1)
			}
			e.index = len(entries)
			entries = append(entries, e)
		}
	}
	heap.Init(&entries)
	if prev == nil {
		s.log.Info("scheduling", "checks", len(f.Checks), "pairs", len(entries))
	} else {
		s.log.Info("check file changed: rescheduled", "checks", len(f.Checks), "pairs", len(entries))
	}
	return entries
}

// publish publishes the tests of due, one per pair at the start of its
// slot, all at once and in order (Publisher), and returns each one's
// error.
func (s *Scheduler) publish(ctx context.Context, due []*entry) []error {
	errs := make([]error, len(due))
	evs := make([]events.Event, 0, len(due))
	sent := make([]int, 0, len(due)) // index in due of evs[j]
	for i, e := range due {
		id, err := events.NewTestID(s.deps.Rand)
		if err != nil {
			errs[i] = err
			continue
		}
		start := e.dueAt()
		evs = append(evs, events.TestScheduled{
			V: events.SchemaVersion, TestID: id, CheckID: e.check.ID, Site: e.site, Kind: e.check.Kind,
			Attempt: 1, Reason: events.ReasonInterval, Slot: e.slot,
			ScheduledAt: start, NotAfter: start.Add(e.check.SendWindow()),
		})
		sent = append(sent, i)
	}
	for j, p := range s.deps.Publisher.PublishAll(ctx, evs) {
		e, ev := due[sent[j]], evs[j].(events.TestScheduled)
		switch {
		case p.Err != nil:
			errs[sent[j]] = p.Err
		case p.Duplicate:
			s.metrics.duplicates.Inc()
			s.log.Debug("slot already published by another replica", "check", e.check.ID, "site", e.site, "slot", e.slot)
		default:
			s.metrics.published.Inc()
			s.log.Debug("test scheduled", "check", e.check.ID, "site", e.site, "slot", e.slot, "test_id", ev.TestID)
		}
	}
	return errs
}
