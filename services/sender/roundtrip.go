package sender

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
)

// roundTrip runs one delivery of a round-trip test: it builds and signs
// the probe, submits it (deliver) and publishes what happened as mail.sent.
// A temporary failure inside the send window is retried by redelivery; an
// outcome decided by an earlier delivery is published again, never a second
// probe sent.
func (s *Sender) roundTrip(ctx context.Context, log *slog.Logger, ev events.TestScheduled, check *checks.Check, delivered uint64) error {
	// An outcome decided by an earlier delivery whose mail.sent could not be
	// published: publish it, never send a second probe.
	if prev, ok := s.memo.get(ev.TestID); ok && prev.final {
		return s.report(ctx, log, prev.ev)
	}
	notAfter := sendWindow(ev, check)
	now := s.deps.Clock.Now()
	if now.After(notAfter) {
		if prev, ok := s.memo.get(ev.TestID); ok {
			// A retry of a temporary failure came too late: report that
			// failure, the real reason nothing was sent.
			return s.final(ctx, log, prev.ev)
		}
		late := now.Sub(notAfter).Truncate(time.Millisecond)
		log.Error("test picked up after its send window: no probe sent", "not_after", notAfter, "late", late.String())
		return s.final(ctx, log, s.mailSent(ev, events.SentMonitorError, ClassStale,
			fmt.Errorf("test picked up %s after its send window closed at %s; no probe was sent", late, notAfter.UTC().Format(time.RFC3339))))
	}

	key, err := s.deps.Keyring.SigningKey(check.Customer)
	if err != nil {
		log.Error("no probe signing key: no probe sent", "customer", check.Customer)
		return s.final(ctx, log, s.mailSent(ev, events.SentMonitorError, ClassNoKey, err))
	}
	p := probemail.Probe{
		KeyID: key.ID, TestID: ev.TestID, CheckID: ev.CheckID, Site: ev.Site, Attempt: ev.Attempt,
		StartedAt: now.UTC().Truncate(time.Millisecond), ReturnTo: s.cfg.ReturnAddress,
	}
	raw, err := probemail.Build(p, check.Target, key, probemail.BuildOptions{CheckName: check.Name})
	if err != nil {
		log.Error("probe cannot be built: no probe sent", "error", err)
		return s.final(ctx, log, s.mailSent(ev, events.SentMonitorError, ClassProbeBuild, err))
	}

	sctx, cancel := context.WithTimeout(ctx, s.cfg.SubmitTimeout)
	t0 := time.Now()
	out := s.deliver(sctx, raw, check.Target)
	cancel()
	s.metrics.submitSeconds.Observe(time.Since(t0).Seconds())
	end := s.deps.Clock.Now()

	sent := s.mailSent(ev, events.SentOK, "", nil)
	sent.StartedAt = p.StartedAt
	sent.MessageID = probemail.ProbeMessageID(p.TestID, p.ReturnTo)
	sent.Hop = out.hop
	sent.Reply = out.res.Reply
	sent.Timings = out.res.Timings
	if out.err == nil {
		sent.SentAt = end.UTC()
		s.metrics.submitted(s.cfg.Delivery, outcomeSent)
		log.Info("probe sent", "hop", out.hop, "reply", sent.Reply.String(), "total_ms", sent.Timings.TotalMS)
		return s.final(ctx, log, sent)
	}
	sent.Status, sent.ErrorClass, sent.Error = out.status, out.class, out.err.Error()
	relay := s.cfg.Delivery == DeliveryRelay

	// Retry a temporary failure while the retry can still start inside
	// the send window and JetStream will deliver again.
	retryAt := end.Add(platform.NakDelay(delivered, time.Minute))
	if out.temporary && delivered < uint64(s.maxDeliver) && retryAt.Before(notAfter) {
		s.metrics.submitted(s.cfg.Delivery, outcomeTemporary)
		s.memo.put(ev.TestID, sent, false, end, notAfter.Add(events.DuplicateWindow))
		if relay {
			log.Error("probes cannot be submitted: temporary relay failure, retrying", "relay", out.hop,
				"error_class", out.class, "reply", sent.Reply.String(), "error", sent.Error, "delivered", delivered)
		} else {
			log.Warn("temporary delivery failure, retrying", "hop", out.hop, "error_class", out.class,
				"reply", sent.Reply.String(), "error", sent.Error, "delivered", delivered)
		}
		return fmt.Errorf("temporary submission failure (%s): %s", out.class, sent.Error)
	}
	if relay {
		s.metrics.submitted(s.cfg.Delivery, outcomeMonitorError)
		log.Error("probes cannot be submitted: relay failure", "relay", out.hop, "error_class", out.class,
			"reply", sent.Reply.String(), "error", sent.Error)
	} else {
		s.metrics.submitted(s.cfg.Delivery, outcomeFailed)
		log.Warn("probe delivery failed at the customer's side", "hop", out.hop, "error_class", out.class,
			"reply", sent.Reply.String(), "error", sent.Error)
	}
	return s.final(ctx, log, sent)
}

// mailSent starts the mail.sent of ev with a status and, for failures, the
// class and error.
func (s *Sender) mailSent(ev events.TestScheduled, status, class string, err error) events.MailSent {
	m := events.MailSent{
		V: events.SchemaVersion, TestID: ev.TestID, CheckID: ev.CheckID, Site: ev.Site,
		Attempt: ev.Attempt, Status: status, ErrorClass: class,
	}
	if err != nil {
		m.Error = err.Error()
	}
	return m
}

// final records the decided outcome of a test (so that a redelivery after
// a failed publish republishes it instead of sending again) and reports it.
func (s *Sender) final(ctx context.Context, log *slog.Logger, m events.MailSent) error {
	now := s.deps.Clock.Now()
	s.memo.put(m.TestID, m, true, now, now.Add(events.DuplicateWindow))
	return s.report(ctx, log, m)
}

// report publishes mail.sent. A failure is temporary (the test is
// redelivered and the recorded outcome published again).
func (s *Sender) report(ctx context.Context, log *slog.Logger, m events.MailSent) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dup, err := s.deps.Publisher.Publish(pctx, m)
	if err != nil {
		log.Warn("mail.sent not published; will retry", "status", m.Status, "error", err)
		return fmt.Errorf("report test %s: %w", m.TestID, err)
	}
	s.memo.drop(m.TestID)
	if !dup {
		s.metrics.reported.WithLabelValues(m.Status, m.ErrorClass).Inc()
	}
	return nil
}
