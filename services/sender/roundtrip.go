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
// the probe (once per test: a retry resends the same probe, with its
// first start time), submits it (deliver) and publishes what happened as
// mail.sent, with the submission's evidence. A temporary failure of our
// relay is retried by redelivery inside the send window; a 4xx of the
// customer's MX (mx delivery: greylisting, throttling) is retried until
// the attempt's timeout, after a mail.sent "deferred" that tells the
// evaluator so (RFC 5321 section 4.5.4.1: a 4xx is not a failure). An
// outcome decided by an earlier delivery is published again, never a
// second probe sent.
func (s *Sender) roundTrip(ctx context.Context, log *slog.Logger, ev events.TestScheduled, check *checks.Check, delivered uint64) error {
	// An outcome decided by an earlier delivery whose mail.sent could not be
	// published: publish it, never send a second probe.
	now := s.deps.Clock.Now()
	prev, remembered := s.memo.get(ev.TestID, now)
	if remembered && prev.final {
		return s.report(ctx, log, prev.ev)
	}
	notAfter := sendWindow(ev, check)
	if remembered && now.After(notAfter) {
		// A retry of a temporary failure came too late: report that
		// failure, the real reason nothing was sent.
		return s.final(ctx, log, prev.ev)
	}
	built, ok := s.probes.get(ev.TestID, now)
	if ok && built.ev.deferred != nil && now.After(built.ev.probe.StartedAt.Add(check.Timeout)) {
		log.Warn("a deferred probe's retry came after the attempt's timeout: not sent again")
		return nil
	}
	if !ok && now.After(notAfter) {
		late := now.Sub(notAfter).Truncate(time.Millisecond)
		log.Error("test picked up after its send window: no probe sent", "not_after", notAfter, "late", late.String())
		return s.final(ctx, log, s.mailSent(ev, events.SentMonitorError, ClassStale,
			fmt.Errorf("test picked up %s after its send window closed at %s; no probe was sent", late, notAfter.UTC().Format(time.RFC3339))))
	}
	if !ok {
		b, sent := s.build(log, ev, check, now)
		if sent != nil {
			return s.final(ctx, log, *sent)
		}
		built.ev = b
		s.probes.put(ev.TestID, b, false, now, now.Add(check.Timeout+events.DuplicateWindow))
	}
	b := built.ev

	sctx, cancel := context.WithTimeout(ctx, s.cfg.SubmitTimeout)
	t0 := time.Now()
	out := s.deliver(sctx, b.raw, b.from, check.Target)
	cancel()
	s.metrics.submitSeconds.Observe(time.Since(t0).Seconds())
	end := s.deps.Clock.Now()

	sent := s.mailSent(ev, events.SentOK, "", nil)
	sent.StartedAt = b.probe.StartedAt
	sent.MessageID = probemail.ProbeMessageID(b.probe.TestID, b.probe.ReturnTo)
	sent.Hop = out.hop
	sent.Reply = out.res.Reply
	sent.Timings = out.res.Timings
	sent.Evidence = &events.Evidence{Submission: submission(out, end)}
	if out.err == nil {
		sent.SentAt = end.UTC()
		if b.deferred != nil {
			sent.Evidence.Deferred = b.deferred
		}
		s.metrics.submitted(s.cfg.Delivery, outcomeSent)
		log.Info("probe sent", "hop", out.hop, "reply", sent.Reply.String(), "queue_id", out.res.QueueID, "total_ms", sent.Timings.TotalMS)
		return s.final(ctx, log, sent)
	}
	sent.Evidence.Submission.AcceptedAt = time.Time{}
	sent.Status, sent.ErrorClass, sent.Error = out.status, out.class, out.err.Error()
	relay := s.cfg.Delivery == DeliveryRelay
	retryAt := end.Add(platform.NakDelay(delivered, time.Minute))
	canRetry := delivered < uint64(s.maxDeliver)

	// The customer's MX said "later": retry the same probe until the
	// attempt's timeout; the evaluator waits for its return meanwhile.
	if !relay && out.temporary && out.res.Reply != nil {
		deadline := b.probe.StartedAt.Add(check.Timeout)
		if b.deferred == nil {
			deferred := sent
			deferred.Status, deferred.ErrorClass, deferred.Error = events.SentDeferred, ClassMXDeferred, sent.Error
			deferred.Evidence = &events.Evidence{Submission: sent.Evidence.Submission, Deferred: out.res.Reply}
			if err := s.report(ctx, log, deferred); err != nil {
				return err
			}
		}
		b.deferred = out.res.Reply
		s.probes.put(ev.TestID, b, false, end, deadline.Add(events.DuplicateWindow))
		if canRetry && retryAt.Before(deadline) {
			s.metrics.submitted(s.cfg.Delivery, outcomeDeferred)
			log.Warn("the customer's MX deferred the probe; retrying until the attempt's timeout", "hop", out.hop,
				"reply", sent.Reply.String(), "delivered", delivered, "until", deadline)
			return fmt.Errorf("probe deferred by %s: %s", out.hop, sent.Reply.String())
		}
		// No more retries: the evaluator's deadline makes the attempt a
		// timeout, with this deferral as its evidence.
		s.metrics.submitted(s.cfg.Delivery, outcomeDeferred)
		log.Warn("the customer's MX deferred the probe until the attempt's timeout; giving up", "hop", out.hop,
			"reply", sent.Reply.String(), "delivered", delivered)
		return nil
	}

	// Retry a temporary failure while the retry can still start inside
	// the send window and JetStream will deliver again.
	if out.temporary && canRetry && retryAt.Before(notAfter) {
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

// builtProbe is a test's probe as first built: every delivery of the test
// sends these bytes, so the round trip is timed from the first attempt.
type builtProbe struct {
	probe probemail.Probe
	raw   []byte
	from  string // the envelope sender: the VERP address, or the return address
	// deferred is the customer's MX's last 4xx, once it deferred the probe.
	deferred *events.SMTPReply
}

// build signs the probe of ev (started at now) and picks its envelope
// sender: the VERP address that names the test (so that a bounce finds it,
// probemail.VERPAddress), or the plain return address when VERP is off or
// the address would be too long. A probe that cannot be built is a
// monitor_error mail.sent to publish.
func (s *Sender) build(log *slog.Logger, ev events.TestScheduled, check *checks.Check, now time.Time) (builtProbe, *events.MailSent) {
	key, err := s.deps.Keyring.SigningKey(check.Customer)
	if err != nil {
		log.Error("no probe signing key: no probe sent", "customer", check.Customer)
		sent := s.mailSent(ev, events.SentMonitorError, ClassNoKey, err)
		return builtProbe{}, &sent
	}
	p := probemail.Probe{
		KeyID: key.ID, TestID: ev.TestID, CheckID: ev.CheckID, Site: ev.Site, Attempt: ev.Attempt,
		StartedAt: now.UTC().Truncate(time.Millisecond), ReturnTo: s.cfg.ReturnAddress,
	}
	raw, err := probemail.Build(p, check.Target, key, probemail.BuildOptions{CheckName: check.Name})
	if err == nil && s.dkim != nil {
		raw, err = s.dkim.Sign(raw)
	}
	if err != nil {
		log.Error("probe cannot be built: no probe sent", "error", err)
		sent := s.mailSent(ev, events.SentMonitorError, ClassProbeBuild, err)
		return builtProbe{}, &sent
	}
	from := s.cfg.ReturnAddress
	if s.cfg.VERP {
		if v, err := probemail.VERPAddress(s.cfg.ReturnAddress, ev.TestID, ev.Site, ev.CheckID, key); err == nil {
			from = v
		} else {
			log.Warn("no VERP envelope sender for this probe: a bounce that quotes none of it cannot be matched", "error", err)
		}
	}
	return builtProbe{probe: p, raw: raw, from: from}, nil
}

// submission is the evidence of one delivery attempt: who took (or
// refused) the probe, how, and the dialogue.
func submission(out delivery, at time.Time) *events.Submission {
	return &events.Submission{
		Hop: out.hop, Server: out.res.Server, TLSVersion: out.res.Timings.TLSVersion, QueueID: out.res.QueueID,
		AcceptedAt: at.UTC(), Transcript: out.res.Transcript, Reused: out.res.Reused,
	}
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
