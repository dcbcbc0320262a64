package evaluator

import (
	"fmt"

	"github.com/emailscout/emailscout/internal/platform"
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
	droppedBounces   prometheus.Counter
	unknownCheck     prometheus.Counter
	monitorLatency   prometheus.Histogram
	siteHealthy      *prometheus.GaugeVec
	siteLastGood     *prometheus.GaugeVec
}

// newMetrics registers the evaluator's metrics on reg; armed and owned
// read, when scraped, the armed timers and the partitions whose timers
// this replica follows.
func newMetrics(reg prometheus.Registerer, armed, owned func() float64) (*metrics, error) {
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_evaluator_results_total", Help: "Attempt verdicts published (check.result revision 1), by site, kind and status."},
			[]string{"site", "kind", "status"}),
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
		droppedBounces: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_evaluator_dropped_bounces_total", Help: "Bounces of attempts unknown (expired, replayed, forged) or already finished (ignored)."}),
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
	armedGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "scout_evaluator_timers_armed", Help: "Deadlines and retests armed in this replica (those of its own partitions)."}, armed)
	ownedGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "scout_evaluator_partitions_owned", Help: "Partitions this replica owns and follows the timers of; the replicas' sum is the number of partitions, 16, once their views agree."}, owned)
	if err := platform.Register(reg, m.results, m.opened, m.resolved, m.retests, m.timersFired, m.lateReturns,
		m.duplicateReturns, m.droppedBounces, m.unknownCheck, m.monitorLatency, m.siteHealthy, m.siteLastGood,
		armedGauge, ownedGauge); err != nil {
		return nil, fmt.Errorf("evaluator: metrics: %w", err)
	}
	return m, nil
}
