package sender

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probers"
)

// HostResolver looks up the addresses of a service check's host;
// *net.Resolver implements it.
type HostResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// serviceCheck runs one delivery of a service-check test (kind smtp, imap
// or pop3): it runs the kind's prober within the check's timeout and
// publishes what it observed as service.checked, exactly one per test
// (message id checked:<test>); the evaluator makes the verdict. A
// redelivered test publishes the observation made before instead of
// probing again; a test picked up after its send window, or whose password
// or OAuth variable is missing, is observed as not run (probe.ClassStale,
// ClassNoPassword, ClassCredentials, ClassBadTarget: the monitor's fault).
// A check with an oauth block logs in with the login s.logins keeps for
// it (one token cache per check, renewed before expiry).
func (s *Sender) serviceCheck(ctx context.Context, log *slog.Logger, ev events.TestScheduled, check *checks.Check) error {
	now := s.deps.Clock.Now().UTC()
	if prev, ok := s.observations.get(ev.TestID, now); ok {
		return s.reportChecked(ctx, log, prev.ev)
	}
	obs := events.ServiceChecked{
		V: events.SchemaVersion, TestID: ev.TestID, CheckID: check.ID, Site: ev.Site, Kind: check.Kind,
		Attempt: ev.Attempt, Reason: ev.Reason, OriginTestID: ev.OriginTestID,
		StartedAt: now, FinishedAt: now, Target: check.Service.Addr(),
	}
	notAfter := sendWindow(ev, check)
	if now.After(notAfter) {
		late := now.Sub(notAfter).Truncate(time.Millisecond)
		log.Error("service check picked up after its send window: not run", "not_after", notAfter, "late", late.String())
		return s.observed(ctx, log, notRun(obs, probe.ClassStale,
			fmt.Errorf("test picked up %s after its send window closed at %s; the check was not run", late, notAfter.UTC().Format(time.RFC3339))))
	}
	target, err := s.logins.Target(check, s.deps.LookupEnv)
	if err != nil {
		class := probe.ClassOf(err) // no_password, credentials or probe_build
		log.Error("service check cannot run", "error_class", class, "error", err)
		return s.observed(ctx, log, notRun(obs, class, err))
	}
	target.RootCAs = s.deps.ServiceRootCAs
	target.HelloName = s.cfg.helo()
	target.Resolver = s.deps.ServiceResolver

	pctx, cancel := context.WithTimeout(ctx, check.Timeout)
	res := probers.For(check.Kind)(pctx, target)
	cancel()
	s.metrics.serviceSeconds.WithLabelValues(check.Kind).Observe(res.Timings.TotalMS / 1000)

	obs = withResult(obs, res, check.Slow)
	obs.FinishedAt = s.deps.Clock.Now().UTC()
	attrs := []any{"target", target, "total_ms", obs.Timings.TotalMS}
	if obs.ErrorClass != "" {
		attrs = append(attrs, "error_class", obs.ErrorClass, "phase", obs.Phase, "error", obs.Error)
	}
	if obs.Reply != nil {
		attrs = append(attrs, "reply", obs.Reply.String())
	}
	switch obs.ErrorClass {
	case "":
		log.Info("service check answered every phase", attrs...)
	case probe.ClassMonitor:
		log.Error("service check could not run", attrs...)
	default:
		log.Warn("service check did not pass a phase", attrs...)
	}
	return s.observed(ctx, log, obs)
}

// withResult copies what a prober observed into obs. A dialogue that did
// not pass, or took slow or longer, keeps its transcript as the evidence
// (events.Evidence.Dialogue); a good one does not, to keep the stream and
// ClickHouse small.
func withResult(obs events.ServiceChecked, r probe.Result, slow time.Duration) events.ServiceChecked {
	obs.Target = r.Addr
	obs.ErrorClass, obs.Phase, obs.Error = r.Class, r.Phase, ""
	if r.Err != nil {
		obs.Error = r.Err.Error()
	}
	obs.Reply, obs.Timings, obs.TLS = r.Reply, r.Timings, r.TLS
	if probe.ServiceStatus(r.Class, r.Timings.TotalMS, slow) != events.StatusOK && len(r.Transcript) > 0 {
		obs.Evidence = &events.Evidence{Dialogue: r.Transcript}
	}
	return obs
}

// notRun is obs for a check the monitor could not run (class is one of the
// probe package's monitor classes).
func notRun(obs events.ServiceChecked, class string, err error) events.ServiceChecked {
	obs.ErrorClass, obs.Error = class, err.Error()
	return obs
}

// observed records the observation of a test until the stream's
// de-duplication window ends, so that a redelivery (a failed publish, a
// lost ack) publishes it again instead of probing again, and publishes it.
func (s *Sender) observed(ctx context.Context, log *slog.Logger, obs events.ServiceChecked) error {
	now := s.deps.Clock.Now()
	s.observations.put(obs.TestID, obs, true, now, now.Add(events.DuplicateWindow))
	return s.reportChecked(ctx, log, obs)
}

// reportChecked publishes service.checked. A failure is temporary (the
// test is redelivered and the recorded observation published again);
// JetStream stores one copy whatever the number of publications.
func (s *Sender) reportChecked(ctx context.Context, log *slog.Logger, obs events.ServiceChecked) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dup, err := s.deps.Publisher.Publish(pctx, obs)
	if err != nil {
		log.Warn("service.checked not published; will retry", "error_class", obs.ErrorClass, "error", err)
		return fmt.Errorf("report test %s: %w", obs.TestID, err)
	}
	if !dup {
		s.metrics.serviceChecked.WithLabelValues(obs.Kind, obs.ErrorClass).Inc()
	}
	return nil
}
