// Package web is Email Scout's read-only now-view for people: a status
// page of every check and site, a page per check (round-trip plots drawn
// as SVG on the server, the attempts with their evidence, past
// incidents), live updates by server-sent events, a JSON API under
// /api/v1/ (openapi.yaml), and optional public status pages per customer.
//
// Its state is in memory: at start it reads the evaluator's KV buckets
// (site verdicts, open incidents) and replays recent check.result and
// incident.* events from the stream with an ordered (ephemeral) consumer,
// then follows new ones. It keeps a bounded number of results per check
// and site. With ClickHouse's HTTP interface configured, the plots and
// past incidents of a check page come from ClickHouse.
//
// Pages and API are for the platform team: a bearer token
// (SCOUT_WEB_TOKEN) or a user name set by a trusted auth proxy.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Deps are the web service's collaborators.
type Deps struct {
	Checks     checks.Source // names, customers, kinds and sites of the checks
	JS         jetstream.JetStream
	Clock      clockwork.Clock       // nil: the real clock
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics
	Health     *platform.Health      // nil: none
	// HTTPClient queries ClickHouse; nil: a client with a 15 s timeout.
	HTTPClient *http.Client
	// Open admits every request without credentials: for `scout dev` on
	// loopback only.
	Open bool
}

// Web is the web service.
type Web struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	clock   clockwork.Clock
	store   *store
	auth    *auth
	hub     *hub
	history history // ClickHouse, or nil
	pages   *template.Template
	public  map[string]bool
	m       *metrics
	ready   atomic.Bool // the replay has caught up
}

// New fills cfg's zero fields with the defaults and validates cfg and
// deps. It does not touch NATS; Run does.
func New(cfg Config, deps Deps) (*Web, error) {
	if deps.Checks == nil || deps.JS == nil {
		return nil, errors.New("web: Checks and JS are required")
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	platform.FillDefaults(&cfg)
	if err := cfg.Validate(deps.Open); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	a, err := newAuth(cfg, deps.Open)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	w := &Web{cfg: cfg, deps: deps, log: deps.Logger.With("component", "web"), clock: deps.Clock,
		store: newStore(cfg.Recent), auth: a, public: map[string]bool{}, m: m}
	for _, c := range cfg.PublicCustomers {
		w.public[strings.TrimSpace(c)] = true
	}
	if cfg.ClickHouseURL != "" {
		if w.history, err = newClickHouse(cfg.ClickHouseURL, cfg.ClickHousePassword, deps.HTTPClient); err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
	}
	if w.pages, err = parsePages(w.funcs()); err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	w.hub = newHub(w)
	if deps.Health != nil {
		deps.Health.Set("web", errors.New("reading state"))
	}
	return w, nil
}

// Consumes returns the subject names the web service reads, as its router
// registers them (docs/architecture.md's subject table is checked against
// it).
func Consumes() []string { return (&Web{}).router().Names() }

// router decodes the events the pages show.
func (w *Web) router() *platform.Router {
	r := platform.NewRouter()
	platform.On(r, w.onResult)
	platform.On(r, w.onOpen)
	platform.On(r, w.onResolved)
	return r
}

func (w *Web) onResult(_ context.Context, r *events.CheckResult) error {
	w.store.addResult(r)
	return nil
}

func (w *Web) onOpen(_ context.Context, o *events.IncidentOpen) error {
	w.store.open(o)
	return nil
}

func (w *Web) onResolved(_ context.Context, r *events.IncidentResolved) error {
	w.store.resolve(r)
	return nil
}

// Run reads the KV buckets, replays the stream and follows it, pushes
// changes to open pages and, when Listen is set, serves the pages until
// ctx ends.
func (w *Web) Run(ctx context.Context) error {
	if err := w.load(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.follow(gctx) })
	g.Go(func() error { return w.hub.run(gctx) })
	if w.cfg.Listen != "" {
		g.Go(func() error { return platform.ServeHTTP(gctx, w.cfg.Listen, w.Handler(), 10*time.Second, w.log) })
	}
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// siteState and checkState are the parts of the evaluator's KV records
// (services/evaluator: SiteState at site.<check>.<site> in
// scout_evaluator, CheckState at <check> in scout_incidents) that the
// pages show. The web module reads their JSON; it does not import the
// evaluator.
type siteState struct {
	CheckID       string    `json:"check_id"`
	Site          string    `json:"site"`
	Verdict       string    `json:"verdict"`
	Since         time.Time `json:"since"`
	LastStartedAt time.Time `json:"last_started_at"`
}

type checkState struct {
	CheckID string               `json:"check_id"`
	Open    *events.IncidentOpen `json:"open,omitempty"`
}

// load reads every site verdict and open incident from KV.
func (w *Web) load(ctx context.Context) error {
	verdicts, err := w.readBucket(ctx, events.BucketEvaluator, "site.>", func(data []byte) error {
		var st siteState
		if err := json.Unmarshal(data, &st); err != nil {
			return err
		}
		w.store.setVerdict(st.CheckID, st.Site, st.Verdict, st.Since, st.LastStartedAt)
		return nil
	})
	if err != nil {
		return err
	}
	open, err := w.readBucket(ctx, events.BucketIncidents, ">", func(data []byte) error {
		var cs checkState
		if err := json.Unmarshal(data, &cs); err != nil {
			return err
		}
		if cs.Open != nil {
			w.store.open(cs.Open)
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.log.Info("state read", "site_verdicts", verdicts, "incident_records", open)
	return nil
}

// readBucket hands the value of every key of bucket matching filter to
// use and returns how many it read; a value use refuses is logged and
// skipped.
func (w *Web) readBucket(ctx context.Context, bucket, filter string, use func([]byte) error) (int, error) {
	kv, err := w.deps.JS.KeyValue(ctx, bucket)
	if err != nil {
		return 0, fmt.Errorf("web: kv %s: %w", bucket, err)
	}
	watch, err := kv.WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("web: kv %s: watch %s: %w", bucket, filter, err)
	}
	defer watch.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case e := <-watch.Updates():
			if e == nil { // every current value has been delivered
				return n, nil
			}
			if err := use(e.Value()); err != nil {
				w.log.Warn("kv value skipped", "bucket", bucket, "key", e.Key(), "error", err)
				continue
			}
			n++
		}
	}
}

// follow replays the last Replay of the events the router handles with an
// ordered consumer and goes on with new ones until ctx ends. The service
// is ready once the replay has caught up.
func (w *Web) follow(ctx context.Context) error {
	r := w.router()
	filters, err := r.FilterSubjects("")
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverNewPolicy}
	if w.cfg.Replay > 0 {
		start := w.clock.Now().Add(-w.cfg.Replay)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := w.deps.JS.OrderedConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return fmt.Errorf("web: ordered consumer on %s: %w", events.StreamName, err)
	}
	if info, err := cons.Info(ctx); err == nil && info.NumPending == 0 {
		w.caughtUp()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := r.Dispatch(ctx, m.Subject(), m.Data()); err != nil {
			w.m.skipped.Inc()
			w.log.Warn("event skipped", "subject", m.Subject(), "error", err)
		} else {
			w.m.events.Inc()
		}
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			w.caughtUp()
		}
	})
	if err != nil {
		return fmt.Errorf("web: consume %s: %w", events.StreamName, err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

func (w *Web) caughtUp() {
	if w.ready.CompareAndSwap(false, true) {
		w.log.Info("replay caught up", "replay", w.cfg.Replay)
		if w.deps.Health != nil {
			w.deps.Health.Set("web", nil)
		}
	}
}

type metrics struct {
	events, skipped prometheus.Counter
	clients         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "scout_web_events_total",
			Help: "Events applied to the web service's state (replayed and live)."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "scout_web_events_skipped_total",
			Help: "Events the web service could not decode, skipped."}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scout_web_live_clients",
			Help: "Pages connected to /events (server-sent events)."}),
	}
	if err := platform.Register(reg, m.events, m.skipped, m.clients); err != nil {
		return nil, fmt.Errorf("web: metrics: %w", err)
	}
	return m, nil
}
