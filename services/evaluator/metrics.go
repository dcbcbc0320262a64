package evaluator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	results          *prometheus.CounterVec
	opened           *prometheus.CounterVec
	resolved         *prometheus.CounterVec
	retests          *prometheus.CounterVec
	timersFired      *prometheus.CounterVec
	lateReturns      prometheus.Counter
	duplicateReturns prometheus.Counter
	unknownCheck     prometheus.Counter
	monitorLatency   prometheus.Histogram
	siteHealthy      *prometheus.GaugeVec
	siteLastGood     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_evaluator_results_total", Help: "Attempt verdicts published, by status."}, []string{"status"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_evaluator_incidents_opened_total", Help: "Incidents opened, by severity."}, []string{"severity"}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_evaluator_incidents_resolved_total", Help: "Incidents resolved, by severity."}, []string{"severity"}),
		retests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_evaluator_confirmations_total", Help: "Confirmation attempts asked for, by reason (retest, confirm)."}, []string{"reason"}),
		timersFired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_evaluator_timers_fired_total", Help: "Timers fired, by kind (deadline, retest)."}, []string{"kind"}),
		lateReturns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_evaluator_late_returns_total", Help: "Probes that came back after their timeout (recorded, verdict kept)."}),
		duplicateReturns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_evaluator_duplicate_returns_total", Help: "Returns of attempts already finished (ignored)."}),
		unknownCheck: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_evaluator_unknown_check_events_total", Help: "Events of checks no longer in the check file (ignored)."}),
		monitorLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scout_evaluator_verdict_latency_seconds", Help: "From the receiver's end of DATA to the verdict (monitor-added latency).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		siteHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scout_evaluator_monitor_healthy", Help: "1 when the monitor at a site is healthy enough to vote, 0 when not."}, []string{"site"}),
		siteLastGood: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scout_evaluator_site_last_result_timestamp_seconds", Help: "Unix time of the last result from a site that was not a monitor_error."}, []string{"site"}),
	}
	if reg != nil {
		reg.MustRegister(m.results, m.opened, m.resolved, m.retests, m.timersFired, m.lateReturns,
			m.duplicateReturns, m.unknownCheck, m.monitorLatency, m.siteHealthy, m.siteLastGood)
	}
	return m
}

// healthTracker keeps SiteHealth per site in KV (key health.<site>).
// Results of every check at a site update the same key, from several
// workers, so writes retry on conflict instead of redelivering the event.
type healthTracker struct {
	st  *store
	m   *metrics
	log *slog.Logger
}

func newHealthTracker(st *store, m *metrics, log *slog.Logger) *healthTracker {
	return &healthTracker{st: st, m: m, log: log}
}

func healthKey(site string) string { return "health." + site }

// observe records r in its site's health and publishes monitor.health when
// the status changes.
func (h *healthTracker) observe(ctx context.Context, pub platform.Publisher, r *events.CheckResult, canaryVerdict string, now time.Time) error {
	for try := 0; ; try++ {
		var sh SiteHealth
		rev, found, err := h.st.get(ctx, healthKey(r.Site), &sh)
		if err != nil {
			return err
		}
		if !found {
			sh = SiteHealth{Site: r.Site}
		}
		changed := sh.observe(r, canaryVerdict, now)
		if changed {
			ev := events.MonitorHealthEvent{V: events.SchemaVersion, Site: r.Site, Status: sh.Status, Reason: sh.Reason, Since: sh.Since, At: now}
			if _, err := pub.Publish(ctx, ev); err != nil {
				return err
			}
		}
		if _, err := h.st.put(ctx, healthKey(r.Site), &sh, rev, 0); err != nil {
			if errors.Is(err, errConflict) && try < 5 {
				continue
			}
			return err
		}
		healthy := 0.0
		if sh.Status != events.MonitorDown {
			healthy = 1
		}
		h.m.siteHealthy.WithLabelValues(r.Site).Set(healthy)
		if !sh.LastGood.IsZero() {
			h.m.siteLastGood.WithLabelValues(r.Site).Set(float64(sh.LastGood.Unix()))
		}
		if changed {
			level := slog.LevelInfo
			if sh.Status != events.MonitorOK {
				level = slog.LevelError
			}
			h.log.Log(ctx, level, fmt.Sprintf("monitor at site %s is %s", r.Site, sh.Status), "site", r.Site, "reason", sh.Reason)
		}
		return nil
	}
}

// eligible reports whether site may vote (SiteHealth.eligible). A read
// error is returned: the event is handled again later.
func (h *healthTracker) eligible(ctx context.Context, site string) (bool, error) {
	var sh SiteHealth
	_, found, err := h.st.get(ctx, healthKey(site), &sh)
	if err != nil {
		return false, err
	}
	if !found {
		return true, nil
	}
	return sh.eligible(), nil
}
