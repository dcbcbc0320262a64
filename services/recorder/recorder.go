package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Writer stores batches of rows: *Store in production. Insert must return
// nil only when every row is stored; inserting the same rows twice must be
// harmless.
type Writer interface {
	Insert(ctx context.Context, rows *Rows) error
	Ping(ctx context.Context) error
}

// expirer is a Writer that can drop old data (*Store).
type expirer interface {
	DropExpired(ctx context.Context, cutoff time.Time) ([]string, error)
}

// Timeouts of single ClickHouse operations and the readiness probe period.
const (
	insertTimeout     = 30 * time.Second
	pingTimeout       = 5 * time.Second
	healthInterval    = 10 * time.Second
	retentionInterval = time.Hour
	finalFlushTimeout = 10 * time.Second
	initialBackoff    = 250 * time.Millisecond
)

// Readiness check names (platform.Health).
const (
	HealthClickHouse = "clickhouse"
	HealthConsumer   = "consumer:recorder"
)

// Recorder consumes check results, incidents and notifications and writes
// them to ClickHouse in batches.
type Recorder struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	clock clockwork.Clock
	m     metrics
	// router decodes events into rows; collecting is the batch its
	// handlers append to, set by add.
	router     *platform.Router
	collecting *Rows
}

type metrics struct {
	rows      *prometheus.CounterVec
	batches   prometheus.Counter
	failures  prometheus.Counter
	malformed prometheus.Counter
	pending   prometheus.Gauge
	dropped   prometheus.Counter
	insert    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_recorder_rows_inserted_total", Help: "Rows ClickHouse accepted, by table."}, []string{"table"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_recorder_batches_inserted_total", Help: "Batches ClickHouse accepted (their messages were then acked)."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_recorder_insert_failures_total", Help: "Failed batch inserts (retried with backoff; the messages stay in JetStream)."}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_recorder_events_malformed_total", Help: "Events that could not be decoded and were terminated."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scout_recorder_pending_rows", Help: "Rows of the batch being collected or retried, not yet in ClickHouse."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_recorder_partitions_dropped_total", Help: "Monthly partitions dropped by retention (SCOUT_CLICKHOUSE_TTL_DAYS)."}),
		insert: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scout_recorder_insert_seconds", Help: "Time of one successful batch insert.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 12)}),
	}
	for _, t := range partitionedTables {
		m.rows.WithLabelValues(t)
	}
	if err := platform.Register(reg, m.rows, m.batches, m.failures, m.malformed, m.pending, m.dropped, m.insert); err != nil {
		return m, fmt.Errorf("recorder: metrics: %w", err)
	}
	return m, nil
}

// New validates cfg (after filling zero values with the defaults) and deps
// and returns a Recorder. It does not connect to anything: Run does.
func New(cfg Config, deps Deps) (*Recorder, error) {
	platform.FillDefaults(&cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.JS == nil {
		return nil, errors.New("recorder: Deps.JS is required")
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Recorder{
		cfg: cfg, deps: deps, clock: deps.Clock,
		log: deps.Logger.With("component", "recorder"),
		m:   m,
	}
	r.router = r.newRouter()
	return r, nil
}

func (r *Recorder) setHealth(name string, err error) {
	if r.deps.Health != nil {
		r.deps.Health.Set(name, err)
	}
}

// retryDelays returns the waits between retries: exponential from 250 ms
// with jitter (cenkalti/backoff), never above Config.MaxBackoff.
func (r *Recorder) retryDelays() func() time.Duration {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = min(initialBackoff, r.cfg.MaxBackoff)
	b.MaxInterval = r.cfg.MaxBackoff
	b.Reset()
	return func() time.Duration { return min(b.NextBackOff(), r.cfg.MaxBackoff) }
}

// sleep waits d on the recorder's clock; false when ctx ended first.
func (r *Recorder) sleep(ctx context.Context, d time.Duration) bool {
	t := r.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.Chan():
		return true
	}
}

// Run connects to ClickHouse (creating the database and applying the
// migrations; retried with backoff until it works), binds the durable
// consumer events.RecorderConsumer and records until ctx ends. It returns
// nil after ctx ends; an error when the consumer cannot be bound or is
// deleted while the recorder runs (the service should then restart).
//
// A batch is inserted when it holds Config.BatchSize rows or
// Config.BatchWait after its first row; its messages are acked only after
// ClickHouse accepted it. While inserts fail, the batch is retried with
// exponential backoff (up to Config.MaxBackoff) and no new message is
// taken, so the backlog stays in JetStream; readiness reports ClickHouse
// as down. Malformed events are terminated and counted.
func (r *Recorder) Run(ctx context.Context) error {
	r.setHealth(HealthClickHouse, errors.New("not connected yet"))
	w := r.deps.Writer
	if w == nil {
		st, err := r.openStore(ctx)
		if err != nil {
			return nil // ctx ended
		}
		defer st.Close()
		w = st
	}
	r.setHealth(HealthClickHouse, nil)

	binder, err := platform.NewConsumer(platform.ConsumerConfig{Def: events.RecorderConsumer(), Router: r.router},
		platform.ConsumerDeps{JS: r.deps.JS, Logger: r.log, Health: r.deps.Health})
	if err != nil {
		return err
	}
	cons, err := binder.Bind(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(r.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("recorder: pull: %w", err)
	}
	stopDrain := context.AfterFunc(ctx, iter.Drain)
	defer stopDrain()

	// The helpers stop with ctx, or when the loop gives up.
	hctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	in := make(chan jetstream.Msg)
	wg.Go(func() { r.pull(hctx, cons, iter, in) })
	wg.Go(func() { r.watchHealth(hctx, w) })
	if ex, ok := w.(expirer); ok && r.cfg.TTLDays > 0 {
		wg.Go(func() { r.retain(hctx, ex) })
	}
	err = r.loop(ctx, w, in)
	stop()
	iter.Stop()
	wg.Wait()
	r.log.Info("stopped")
	return err
}

// openStore creates the database, connects and migrates, retrying with
// backoff until it works or ctx ends.
func (r *Recorder) openStore(ctx context.Context) (*Store, error) {
	next := r.retryDelays()
	for {
		st, err := r.tryOpenStore(ctx)
		if err == nil {
			return st, nil
		}
		r.setHealth(HealthClickHouse, err)
		d := next()
		r.log.Warn("clickhouse not ready, retrying", "dsn", RedactDSN(r.cfg.DSN), "retry_in", d.String(), "error", err)
		if !r.sleep(ctx, d) {
			return nil, ctx.Err()
		}
	}
}

func (r *Recorder) tryOpenStore(ctx context.Context) (*Store, error) {
	if err := CreateDatabase(ctx, r.cfg.DSN); err != nil {
		return nil, err
	}
	st, err := OpenStore(ctx, r.cfg.DSN)
	if err != nil {
		return nil, err
	}
	applied, err := st.Migrate(ctx, Migrations())
	if err != nil {
		st.Close()
		return nil, err
	}
	r.log.Info("clickhouse ready", "dsn", RedactDSN(r.cfg.DSN), "migrations_applied", applied)
	return st, nil
}

// pull hands the consumer's messages to in until the iterator is drained
// (after ctx ends) or the consumer is gone; messages that arrive after ctx
// ended are nak'ed so that the next recorder gets them at once.
func (r *Recorder) pull(ctx context.Context, cons jetstream.Consumer, iter jetstream.MessagesContext, in chan<- jetstream.Msg) {
	defer close(in)
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			if ctx.Err() == nil {
				r.log.Warn("pull failed, retrying", "error", err)
				// A consumer deleted while we were disconnected shows only
				// as missing heartbeats: stop, so that Run reports it.
				ictx, cancel := context.WithTimeout(ctx, pingTimeout)
				_, ierr := cons.Info(ictx)
				cancel()
				if errors.Is(ierr, jetstream.ErrConsumerNotFound) {
					r.log.Error("the recorder's consumer was deleted", "error", ierr)
					iter.Stop()
					return
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		select {
		case in <- msg:
		case <-ctx.Done():
			_ = msg.Nak()
		}
	}
}

// batch is the rows being collected and the messages they came from.
type batch struct {
	rows Rows
	msgs []jetstream.Msg
}

// loop collects rows into batches and inserts them until ctx ends, then
// inserts or nak's what it holds. It returns an error when the consumer's
// messages end before ctx (the consumer was deleted): the service must
// restart rather than run without recording.
func (r *Recorder) loop(ctx context.Context, w Writer, in <-chan jetstream.Msg) error {
	var (
		b      batch
		timer  clockwork.Timer
		timerC <-chan time.Time
	)
	stopTimer := func() {
		if timer != nil {
			timer.Stop()
			timer, timerC = nil, nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			stopTimer()
			r.awaitPullEnd(in)
			r.shutdown(ctx, w, &b)
			return nil
		case msg, ok := <-in:
			if !ok {
				stopTimer()
				r.shutdown(ctx, w, &b)
				if ctx.Err() != nil {
					return nil
				}
				r.setHealth(HealthConsumer, errors.New("message stream ended"))
				return errors.New("recorder: the consumer's message stream ended")
			}
			if !r.add(&b, msg) {
				continue
			}
			if len(b.msgs) == 1 {
				timer = r.clock.NewTimer(r.cfg.BatchWait)
				timerC = timer.Chan()
			}
			if b.rows.Len() >= r.cfg.BatchSize {
				stopTimer()
				r.flush(ctx, w, &b)
			}
		case <-timerC:
			timer, timerC = nil, nil
			r.flush(ctx, w, &b)
		}
	}
}

// add decodes msg into a row of b (the router's handlers append to
// r.collecting). A malformed event is terminated and counted, and add
// returns false.
func (r *Recorder) add(b *batch, msg jetstream.Msg) bool {
	r.collecting = &b.rows
	err := r.router.Handle(context.Background(), msg)
	r.collecting = nil
	if err != nil {
		r.m.malformed.Inc()
		r.log.Error("event terminated: it cannot be recorded", "subject", msg.Subject(), "error", err)
		reason := err.Error()
		if len(reason) > 200 {
			reason = reason[:200]
		}
		_ = msg.TermWithReason(reason)
		return false
	}
	b.msgs = append(b.msgs, msg)
	r.m.pending.Set(float64(b.rows.Len()))
	return true
}

// Consumes returns the subject names the recorder consumes (its router's),
// for the contract tests of test/contract.
func Consumes() []string { return (&Recorder{}).newRouter().Names() }

// newRouter returns the recorder's router: one handler per recorded event
// type, each appending its row to r.collecting (set by add, on the loop's
// goroutine). Notification has three subject names (sent, failed,
// suppressed): one handler records them all.
func (r *Recorder) newRouter() *platform.Router {
	rt := platform.NewRouter()
	platform.On(rt, func(_ context.Context, ev *events.CheckResult) error {
		r.collecting.Results = append(r.collecting.Results, ResultRowFrom(*ev))
		return nil
	})
	platform.On(rt, func(_ context.Context, ev *events.IncidentOpen) error {
		r.collecting.Incidents = append(r.collecting.Incidents, IncidentOpenRow(*ev))
		return nil
	})
	platform.On(rt, func(_ context.Context, ev *events.IncidentResolved) error {
		r.collecting.Incidents = append(r.collecting.Incidents, IncidentResolvedRow(*ev))
		return nil
	})
	platform.On(rt, func(_ context.Context, ev *events.Notification) error {
		r.collecting.Notifications = append(r.collecting.Notifications, NotificationRowFrom(*ev))
		return nil
	})
	return rt
}

// flush inserts b, retrying with backoff until ClickHouse accepts it or ctx
// ends, then acks its messages and empties it. While it retries, the
// messages are kept from redelivery with InProgress. It reports whether b
// was inserted; if not, b is unchanged.
func (r *Recorder) flush(ctx context.Context, w Writer, b *batch) bool {
	if len(b.msgs) == 0 {
		return true
	}
	next := r.retryDelays()
	for {
		err := r.insert(ctx, w, b)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d := next()
		r.log.Warn("insert failed; the batch stays in JetStream, retrying", "rows", b.rows.Len(), "retry_in", d.String(), "error", err)
		for _, m := range b.msgs {
			_ = m.InProgress()
		}
		if !r.sleep(ctx, d) {
			return false
		}
	}
}

// insert makes one attempt at storing b.
func (r *Recorder) insert(ctx context.Context, w Writer, b *batch) error {
	ictx, cancel := context.WithTimeout(ctx, insertTimeout)
	defer cancel()
	start := time.Now()
	if err := w.Insert(ictx, &b.rows); err != nil {
		r.m.failures.Inc()
		r.setHealth(HealthClickHouse, err)
		return err
	}
	r.m.insert.Observe(time.Since(start).Seconds())
	r.setHealth(HealthClickHouse, nil)
	r.m.batches.Inc()
	r.m.rows.WithLabelValues("check_results").Add(float64(len(b.rows.Results)))
	r.m.rows.WithLabelValues("incidents").Add(float64(len(b.rows.Incidents)))
	r.m.rows.WithLabelValues("notifications").Add(float64(len(b.rows.Notifications)))
	for _, m := range b.msgs {
		if err := m.Ack(); err != nil {
			// Redelivered later and inserted again: the tables de-duplicate.
			r.log.Warn("ack failed; the event will be recorded again", "subject", m.Subject(), "error", err)
		}
	}
	r.log.Debug("batch inserted", "rows", b.rows.Len(), "seconds", time.Since(start).Seconds())
	*b = batch{}
	r.m.pending.Set(0)
	return nil
}

// awaitPullEnd waits, after ctx ended, until pull has closed in: the
// subscription is drained (Run drains it when ctx ends), so the server
// no longer delivers to it. Only then may shutdown nak the batch; a nak
// sent while the pull request is still open would come straight back to
// this stopping recorder and wait out the ack wait. Messages still
// arriving on in are nak'ed. It gives up after finalFlushTimeout (a
// connection that never answers the drain).
func (r *Recorder) awaitPullEnd(in <-chan jetstream.Msg) {
	deadline := time.NewTimer(finalFlushTimeout)
	defer deadline.Stop()
	for {
		select {
		case msg, ok := <-in:
			if !ok {
				return
			}
			_ = msg.Nak()
		case <-deadline.C:
			r.log.Warn("pull subscription not drained; unsaved events come back after the ack wait")
			return
		}
	}
}

// shutdown makes one last attempt to insert b after ctx ended; if that
// fails, b's messages are nak'ed for immediate redelivery.
func (r *Recorder) shutdown(ctx context.Context, w Writer, b *batch) {
	if len(b.msgs) == 0 {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
	defer cancel()
	if err := r.insert(fctx, w, b); err != nil {
		r.log.Warn("final insert failed; events left in JetStream", "rows", b.rows.Len(), "error", err)
		for _, m := range b.msgs {
			_ = m.Nak()
		}
		// A nak is a publish: make sure it left before the connection
		// closes, or the events wait out the ack wait instead.
		if err := r.deps.JS.Conn().FlushTimeout(2 * time.Second); err != nil {
			r.log.Warn("naks not flushed; the events come back after the ack wait", "error", err)
		}
		*b = batch{}
		r.m.pending.Set(0)
	}
}

// watchHealth pings ClickHouse every healthInterval, so that readiness
// follows ClickHouse also while no batch is inserted.
func (r *Recorder) watchHealth(ctx context.Context, w Writer) {
	t := r.clock.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := w.Ping(pctx)
			cancel()
			if ctx.Err() == nil {
				r.setHealth(HealthClickHouse, err)
			}
		}
	}
}

// retain drops expired partitions at start and every retentionInterval.
func (r *Recorder) retain(ctx context.Context, ex expirer) {
	t := r.clock.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		cutoff := r.clock.Now().Add(-time.Duration(r.cfg.TTLDays) * 24 * time.Hour)
		dropped, err := ex.DropExpired(ctx, cutoff)
		r.m.dropped.Add(float64(len(dropped)))
		if len(dropped) > 0 {
			r.log.Info("retention: partitions dropped", "partitions", dropped, "cutoff", cutoff)
		}
		if err != nil && ctx.Err() == nil {
			r.log.Warn("retention failed; retrying later", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
	}
}
