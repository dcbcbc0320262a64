package sender

import (
	"fmt"
	"sync"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/prometheus/client_golang/prometheus"
)

// Submission outcomes (label "outcome" of scout_sender_submissions_total).
const (
	outcomeSent         = "sent"          // 250 to the DATA
	outcomeTemporary    = "temporary"     // a temporary failure that will be retried
	outcomeFailed       = "failed"        // the customer's side refused (mx delivery)
	outcomeMonitorError = "monitor_error" // our relay refused or was unreachable
)

type metrics struct {
	up            *prometheus.GaugeVec
	submissions   *prometheus.CounterVec
	submitSeconds prometheus.Histogram
	reported      *prometheus.CounterVec
	// Service checks.
	serviceChecks  *prometheus.CounterVec
	serviceSeconds *prometheus.HistogramVec
	results        *prometheus.CounterVec
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
			Help: "Probe submission attempts by outcome (sent, temporary, failed, monitor_error).",
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
		serviceChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_sender_service_checks_total", ConstLabels: siteLabel,
			Help: "Service checks decided, by kind (smtp, imap, pop3) and status (ok, slow, degraded, timeout, failed, monitor_error).",
		}, []string{"kind", "status"}),
		serviceSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "scout_sender_service_check_seconds", ConstLabels: siteLabel,
			Help:    "Duration of one service-check dialogue (the result's total_ms), by kind.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"kind"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_sender_check_results_total", ConstLabels: siteLabel,
			Help: "check.result events of service checks stored, by kind, status and error class.",
		}, []string{"kind", "status", "error_class"}),
	}
	m.stale = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scout_sender_stale_tests_total", ConstLabels: siteLabel,
		Help: "Tests dropped because the check file in force no longer matches them (unknown_check, site_removed, kind_changed).",
	}, []string{"reason"})
	for _, r := range []string{staleUnknownCheck, staleSiteRemoved, staleKindChanged} {
		m.stale.WithLabelValues(r)
	}
	for _, o := range []string{outcomeSent, outcomeTemporary, outcomeFailed, outcomeMonitorError} {
		m.submissions.WithLabelValues(o)
	}
	for _, k := range []string{events.KindSMTP, events.KindIMAP, events.KindPOP3} {
		for _, st := range []string{events.StatusOK, events.StatusSlow, events.StatusDegraded, events.StatusTimeout, events.StatusFailed, events.StatusMonitorError} {
			m.serviceChecks.WithLabelValues(k, st)
		}
	}
	if err := platform.Register(reg, m.up, m.submissions, m.submitSeconds, m.reported, m.serviceChecks, m.serviceSeconds, m.results, m.stale); err != nil {
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

// memo remembers, per test id, the outcome of an earlier delivery: for a
// round trip a temporary failure (reported if the retry comes too late) or
// a final mail.sent that was not yet published; for a service check its
// check.result. Entries expire so that the map stays small; JetStream
// redelivers within minutes.
type memo[T any] struct {
	mu sync.Mutex
	m  map[string]memoEntry[T]
}

type memoEntry[T any] struct {
	ev      T
	final   bool
	expires time.Time
}

func newMemo[T any]() *memo[T] { return &memo[T]{m: map[string]memoEntry[T]{}} }

func (m *memo[T]) get(testID string) (memoEntry[T], bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[testID]
	return e, ok
}

// put records ev for testID until expires, and forgets entries that
// expired before now.
func (m *memo[T]) put(testID string, ev T, final bool, now, expires time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, e := range m.m {
		if e.expires.Before(now) {
			delete(m.m, id)
		}
	}
	m.m[testID] = memoEntry[T]{ev: ev, final: final, expires: expires}
}

func (m *memo[T]) drop(testID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, testID)
}
