// Package evaluator owns every verdict of Email Scout: per-attempt deadlines
// (ok / slow / timeout from monitor clocks), the retest after retry_delay,
// the confirmation fan-out to other sites, each site's verdict, the quorum
// across sites, incidents, and the monitor's own health per site.
//
// All state lives in JetStream KV (bucket scout_evaluator for attempts,
// site verdicts, retests and health; scout_incidents for incidents), written
// with compare-and-set, and every timer is a record in that bucket, so a
// restarted or replacement evaluator re-arms every deadline and neither
// loses nor duplicates an incident. The events are divided by check into
// events.Partitions partitions, one durable consumer each; the replicas
// share them (platform.Members: each pulls its own partitions first and
// the others when their replica does not), so that replicas add
// throughput and a replica's loss moves its partitions; each replica arms
// the timers of its own partitions only (timers.go). Every event handler
// is idempotent and order-independent.
//
// The state machine and the worst-case arithmetic are in
// docs/evaluation.md.
package evaluator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Config configures the evaluator.
type Config struct {
	// SubmitGrace: a test whose sender reported nothing this long after its
	// send window closed (TestScheduled.NotAfter) is a monitor_error.
	SubmitGrace time.Duration `env:"SCOUT_EVALUATOR_SUBMIT_GRACE" envDefault:"2m" zero:"setting"`
	// Settle: a return deadline fires this long after the timeout, so that
	// a probe received just in time but still on its way into the stream is
	// counted as returned.
	Settle time.Duration `env:"SCOUT_EVALUATOR_SETTLE" envDefault:"1s" zero:"setting"`
	// Workers handle events in parallel, one check per worker at a time.
	// A worker spends most of an event waiting for NATS (KV reads and
	// writes, the result's publish), so there are many: at 2,500 tests/s
	// 32 decided 50 % more than 8 for the same CPU (docs/capacity.md).
	Workers int `env:"SCOUT_EVALUATOR_WORKERS" envDefault:"32"`
	// Failover is how long a replica that stopped writing its heartbeat
	// keeps its partitions; meanwhile the others take its partitions'
	// events whenever it has no pull waiting (at once when its connection
	// is gone).
	Failover time.Duration `env:"SCOUT_EVALUATOR_FAILOVER" envDefault:"15s"`
	// AttemptTTL: attempt records expire this long after creation; a probe
	// returning later is recorded as a late orphan.
	AttemptTTL time.Duration `env:"SCOUT_EVALUATOR_ATTEMPT_TTL" envDefault:"48h"`
}

// Defaults is the configuration of an empty environment (the envDefault
// tags above: the one place the defaults are written).
func Defaults() Config { return platform.Defaults[Config]() }

// Validate reports settings that can never work, naming their variables.
func (c Config) Validate() error {
	var errs []error
	if c.Settle < 0 {
		errs = append(errs, fmt.Errorf("SCOUT_EVALUATOR_SETTLE=%v must not be negative", c.Settle))
	}
	if c.SubmitGrace < 0 {
		errs = append(errs, fmt.Errorf("SCOUT_EVALUATOR_SUBMIT_GRACE=%v must not be negative", c.SubmitGrace))
	}
	if c.Failover <= 0 {
		errs = append(errs, fmt.Errorf("SCOUT_EVALUATOR_FAILOVER=%v must be positive", c.Failover))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("SCOUT_EVALUATOR_WORKERS=%d must be at least 1", c.Workers))
	}
	if c.AttemptTTL <= 0 {
		errs = append(errs, fmt.Errorf("SCOUT_EVALUATOR_ATTEMPT_TTL=%v must be positive", c.AttemptTTL))
	}
	return errors.Join(errs...)
}

// Deps are the evaluator's collaborators.
type Deps struct {
	Checks     checks.Source // read per event; see watchRemoved for removals
	JS         jetstream.JetStream
	Publisher  platform.Publisher    // nil: JetStreamPublisher on JS
	Clock      clockwork.Clock       // nil: the real clock
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics
	Health     *platform.Health      // nil: none
}

// Evaluator is the verdict service.
type Evaluator struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	m       *metrics
	pub     platform.Publisher
	state   *store // scout_evaluator
	inc     *store // scout_incidents
	healthy *healthTracker

	mu     sync.Mutex // guards timers, which Run creates
	timers *timers
}

// New fills cfg's zero fields with the defaults, validates cfg and deps.
// It does not touch NATS; Run does.
func New(cfg Config, deps Deps) (*Evaluator, error) {
	if deps.Checks == nil || deps.JS == nil {
		return nil, errors.New("evaluator: Checks and JS are required")
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Publisher == nil {
		deps.Publisher = platform.JetStreamPublisher{JS: deps.JS}
	}
	platform.FillDefaults(&cfg)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("evaluator: %w", err)
	}
	e := &Evaluator{cfg: cfg, deps: deps, pub: deps.Publisher, log: deps.Logger.With("component", "evaluator")}
	m, err := newMetrics(deps.Registerer, e.timerGauge((*timers).pending), e.timerGauge((*timers).ownedCount))
	if err != nil {
		return nil, err
	}
	e.m = m
	return e, nil
}

// Run binds the consumer, loads and watches the timers, and handles events
// until ctx ends.
func (e *Evaluator) Run(ctx context.Context) error {
	def := events.EvaluatorConsumer()
	cons, err := platform.NewConsumer(platform.ConsumerConfig{
		Def: def, Router: e.router(), Workers: e.cfg.Workers, Key: platform.KeyByCheck,
	}, platform.ConsumerDeps{JS: e.deps.JS, Logger: e.log, Registerer: e.deps.Registerer, Health: e.deps.Health})
	if err != nil {
		return err
	}
	kv, err := e.deps.JS.KeyValue(ctx, events.BucketEvaluator)
	if err != nil {
		return fmt.Errorf("evaluator: kv %s: %w", events.BucketEvaluator, err)
	}
	host, _ := os.Hostname()
	members, err := platform.NewMembers(platform.MembersConfig{
		Prefix: prefixReplica, ID: platform.NewMemberID(host), Partitions: def.Partitions,
		Heartbeat: e.cfg.Failover / 5, Expiry: e.cfg.Failover,
	}, kv, e.log)
	if err != nil {
		return fmt.Errorf("evaluator: %w", err)
	}
	ikv, err := e.deps.JS.KeyValue(ctx, events.BucketIncidents)
	if err != nil {
		return fmt.Errorf("evaluator: kv %s: %w", events.BucketIncidents, err)
	}
	e.state, e.inc = newStore(kv), newStore(ikv)
	e.mu.Lock()
	e.timers = newTimers(e.deps.Clock, e.pub, kv, e.log, func(kind string) { e.m.timersFired.WithLabelValues(kind).Inc() })
	e.mu.Unlock()
	e.healthy = newHealthTracker(e.state, e.m, e.log)
	if e.deps.Health != nil {
		e.deps.Health.Add("evaluator", func() error {
			select {
			case <-e.timers.ready:
				return nil
			default:
				return errors.New("loading timers")
			}
		})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.timers.watch(gctx, members) })
	// The rest waits until every timer is armed.
	afterTimers := func(run func(context.Context) error) func() error {
		return func() error {
			select {
			case <-e.timers.ready:
			case <-gctx.Done():
				return nil
			}
			return run(gctx)
		}
	}
	g.Go(afterTimers(func(ctx context.Context) error {
		e.log.Info("timers loaded", "armed", e.timers.pending())
		return e.timers.run(ctx)
	}))
	g.Go(afterTimers(e.watchRemoved))
	g.Go(func() error { return members.Run(gctx) })
	g.Go(afterTimers(func(ctx context.Context) error { return cons.RunPartitions(ctx, members) }))
	return g.Wait()
}

// router routes every event that moves an attempt or a verdict to its
// handler.
func (e *Evaluator) router() *platform.Router {
	r := platform.NewRouter()
	platform.On(r, e.onScheduled)
	platform.On(r, e.onSent)
	platform.On(r, e.onReturned)
	platform.On(r, e.onBounced)
	platform.On(r, e.onTimeout)
	platform.On(r, e.onServiceChecked)
	return r
}

// Consumes returns the subject names the evaluator consumes (its router's),
// for the contract tests of test/contract.
func Consumes() []string { return (&Evaluator{}).router().Names() }

// NextTimer reports the earliest armed deadline or retest of this replica
// (false when none is armed or Run has not loaded the timers yet).
func (e *Evaluator) NextTimer() (time.Time, bool) {
	t := e.timersLoaded()
	if t == nil {
		return time.Time{}, false
	}
	return t.next()
}

// timerGauge reads read of the timers once Run has made them, 0 before.
func (e *Evaluator) timerGauge(read func(*timers) int) func() float64 {
	return func() float64 {
		if t := e.timersLoaded(); t != nil {
			return float64(read(t))
		}
		return 0
	}
}

func (e *Evaluator) timersLoaded() *timers {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.timers
}

// check returns the check of an event, or nil (logged) when the check is
// no longer in the check file: its events are acknowledged and dropped.
func (e *Evaluator) check(id, subject string) *checks.Check {
	c := e.deps.Checks.Current().Lookup(id)
	if c == nil {
		e.m.unknownCheck.Inc()
		e.log.Info("event for a check that is not in the check file: ignored", "check", id, "event", subject)
	}
	return c
}
