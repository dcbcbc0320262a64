package sender

import (
	"fmt"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/prometheus/client_golang/prometheus"
)

// Submission outcomes (label "outcome" of scout_sender_submissions_total).
const (
	outcomeSent         = "sent"          // 250 to the DATA
	outcomeTemporary    = "temporary"     // a temporary failure that will be retried
	outcomeDeferred     = "deferred"      // the customer's MX answered 4xx: retried until the attempt's timeout
	outcomeFailed       = "failed"        // the customer's side refused (mx delivery)
	outcomeMonitorError = "monitor_error" // our relay refused or was unreachable
)

type metrics struct {
	up            *prometheus.GaugeVec
	submissions   *prometheus.CounterVec
	submitSeconds prometheus.Histogram
	reported      *prometheus.CounterVec
	// Service checks.
	serviceSeconds *prometheus.HistogramVec
	serviceChecked *prometheus.CounterVec
	// Tests the check file in force does not (or no longer) run here.
	stale *prometheus.CounterVec
}

// Reasons of scout_sender_stale_tests_total: the check file in force
// disagrees with the test, which was scheduled from another version (a
// reload reaches the scheduler's and the senders' pods at different
// times, or the check changed while the test was in flight).
const (
	staleUnknownCheck = "unknown_check" // the check is not in the file
	staleSiteRemoved  = "site_removed"  // the check no longer runs at this site
	staleKindChanged  = "kind_changed"  // the check's kind is not the test's
)

func newMetrics(reg prometheus.Registerer, site string) (*metrics, error) {
	// The site label keeps the metrics of several sites apart in one
	// process (`scout dev`) and one Prometheus job.
	siteLabel := prometheus.Labels{"site": site}
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scout_sender_submission_up", ConstLabels: siteLabel,
			Help: "1 when the last probe submission to our relay succeeded, 0 when it failed; absent until the first submission.",
		}, []string{"delivery"}),
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_sender_submissions_total", ConstLabels: siteLabel,
			Help: "Probe submission attempts by outcome (sent, temporary, deferred, failed, monitor_error).",
		}, []string{"outcome"}),
		submitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scout_sender_submit_seconds", ConstLabels: siteLabel,
			Help:    "Duration of one probe submission attempt, DNS included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}),
		reported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_sender_mail_sent_total", ConstLabels: siteLabel,
			Help: "mail.sent events stored, by status and error class.",
		}, []string{"status", "error_class"}),
		serviceSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "scout_sender_service_check_seconds", ConstLabels: siteLabel,
			Help:    "Duration of one service-check dialogue (the result's total_ms), by kind.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"kind"}),
		serviceChecked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_sender_service_checked_total", ConstLabels: siteLabel,
			Help: "service.checked events stored, by kind (smtp, imap, pop3) and error class (empty: every phase answered as expected). The verdicts are the evaluator's (scout_evaluator_results_total).",
		}, []string{"kind", "error_class"}),
	}
	m.stale = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scout_sender_stale_tests_total", ConstLabels: siteLabel,
		Help: "Tests dropped because the check file in force no longer matches them (unknown_check, site_removed, kind_changed).",
	}, []string{"reason"})
	for _, r := range []string{staleUnknownCheck, staleSiteRemoved, staleKindChanged} {
		m.stale.WithLabelValues(r)
	}
	for _, o := range []string{outcomeSent, outcomeTemporary, outcomeDeferred, outcomeFailed, outcomeMonitorError} {
		m.submissions.WithLabelValues(o)
	}
	for _, k := range []string{events.KindSMTP, events.KindIMAP, events.KindPOP3} {
		m.serviceChecked.WithLabelValues(k, "")
	}
	if err := platform.Register(reg, m.up, m.submissions, m.submitSeconds, m.reported, m.serviceSeconds, m.serviceChecked, m.stale); err != nil {
		return nil, fmt.Errorf("sender metrics: %w", err)
	}
	return m, nil
}

// submitted counts one submission attempt and, in relay delivery, sets
// the submission_up gauge from it: the current state is always the last
// attempt's, never an older success.
func (m *metrics) submitted(delivery, outcome string) {
	m.submissions.WithLabelValues(outcome).Inc()
	if delivery != DeliveryRelay {
		return
	}
	if outcome == outcomeSent {
		m.up.WithLabelValues(delivery).Set(1)
	} else {
		m.up.WithLabelValues(delivery).Set(0)
	}
}
