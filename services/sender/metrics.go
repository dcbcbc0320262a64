package sender

import (
	"fmt"
	"sync"
	"time"

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
}

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
	}
	for _, o := range []string{outcomeSent, outcomeTemporary, outcomeFailed, outcomeMonitorError} {
		m.submissions.WithLabelValues(o)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.up, m.submissions, m.submitSeconds, m.reported} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("sender metrics: %w", err)
			}
		}
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

// memo remembers, per test id, the outcome of an earlier delivery: a
// temporary failure (reported if the retry comes too late) or a final
// outcome whose mail.sent was not yet published. Entries expire so that
// the map stays small; JetStream redelivers within minutes.
type memo struct {
	mu sync.Mutex
	m  map[string]memoEntry
}

type memoEntry struct {
	ev      events.MailSent
	final   bool
	expires time.Time
}

func newMemo() *memo { return &memo{m: map[string]memoEntry{}} }

func (m *memo) get(testID string) (memoEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[testID]
	return e, ok
}

// put records ev for testID until expires, and forgets entries that
// expired before now.
func (m *memo) put(testID string, ev events.MailSent, final bool, now, expires time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, e := range m.m {
		if e.expires.Before(now) {
			delete(m.m, id)
		}
	}
	m.m[testID] = memoEntry{ev: ev, final: final, expires: expires}
}

func (m *memo) drop(testID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, testID)
}
