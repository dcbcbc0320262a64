package receiver

import (
	"fmt"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	returns       prometheus.Counter
	duplicates    prometheus.Counter
	bounces       *prometheus.CounterVec
	postmaster    prometheus.Counter
	storeFailures prometheus.Counter
	rejected      *prometheus.CounterVec
	imapDeleted   *prometheus.CounterVec
	storeSeconds  prometheus.Histogram
	connOpen      prometheus.Gauge
	connRefused   *prometheus.CounterVec
	connTimeouts  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, site string) (*metrics, error) {
	// The site label keeps the metrics of several sites apart in one
	// process (`scout dev`) and one Prometheus job.
	siteLabel := prometheus.Labels{"site": site}
	m := &metrics{
		returns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_receiver_returns_total", ConstLabels: siteLabel, Help: "Verified returns stored as mail.returned."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_receiver_duplicates_total", ConstLabels: siteLabel, Help: "Verified returns JetStream already held (accepted and ignored)."}),
		bounces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_receiver_bounces_total", ConstLabels: siteLabel,
			Help: "Messages from the null sender (bounces, DSNs) accepted, by outcome: failed and delayed (stored as mail.bounced), unmatched, not_a_bounce, other (dropped)."},
			[]string{"outcome"}),
		postmaster: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_receiver_postmaster_total", ConstLabels: siteLabel, Help: "Messages to postmaster accepted and logged (RFC 5321 section 4.5.1)."}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_receiver_store_failures_total", ConstLabels: siteLabel, Help: "Verified returns answered 451 because JetStream did not acknowledge them."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_receiver_rejected_total", ConstLabels: siteLabel, Help: "Recipients and messages refused, by reason."}, []string{"reason"}),
		imapDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_receiver_imap_deleted_total", ConstLabels: siteLabel, Help: "Messages deleted from the return mailbox (IMAP mode), by reason: taken (stored as mail.returned) or cleanup (a probe of this site too old to be taken)."}, []string{"reason"}),
		storeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scout_receiver_store_seconds", ConstLabels: siteLabel, Help: "Time from publishing mail.returned to JetStream's acknowledgement (the 250 waits for it).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10)}),
		connOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scout_receiver_connections_open", ConstLabels: siteLabel, Help: "SMTP connections open now (at most SCOUT_RECEIVER_MAX_CONNECTIONS)."}),
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scout_receiver_connections_refused_total", ConstLabels: siteLabel,
			Help: "SMTP connections answered 421 4.7.0 and closed at once, by reason: max_connections, max_per_ip."}, []string{"reason"}),
		connTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scout_receiver_connection_timeouts_total", ConstLabels: siteLabel,
			Help: "SMTP connections closed because a command (SCOUT_RECEIVER_COMMAND_TIMEOUT) or a message (SCOUT_RECEIVER_TIMEOUT) did not come in time."}),
	}
	m.connRefused.WithLabelValues(RefusedMaxConnections)
	m.connRefused.WithLabelValues(RefusedMaxPerIP)
	for _, r := range []string{ReasonRecipient, ReasonMalformed, ReasonUnsigned, ReasonUnknownCheck, ReasonUnknownKey,
		ReasonBadSignature, ReasonWrongCustomer, ReasonReplay, ReasonFuture, ReasonTooLarge, ReasonVERPSender, ReasonVERPForged} {
		m.rejected.WithLabelValues(r)
	}
	for _, o := range []string{BounceFailed, BounceDelayed, BounceUnmatched, BounceNotBounce, BounceOther} {
		m.bounces.WithLabelValues(o)
	}
	m.imapDeleted.WithLabelValues(DeletedTaken)
	m.imapDeleted.WithLabelValues(DeletedCleanup)
	if err := platform.Register(reg, m.returns, m.duplicates, m.bounces, m.postmaster, m.storeFailures, m.rejected, m.imapDeleted, m.storeSeconds,
		m.connOpen, m.connRefused, m.connTimeouts); err != nil {
		return nil, fmt.Errorf("receiver metrics: %w", err)
	}
	return m, nil
}
