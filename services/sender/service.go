package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/sender/internal/probe"
	"github.com/emailscout/emailscout/services/sender/internal/probe/imapprobe"
	"github.com/emailscout/emailscout/services/sender/internal/probe/pop3probe"
	"github.com/emailscout/emailscout/services/sender/internal/probe/smtpprobe"
)

// HostResolver looks up the addresses of a service check's host;
// *net.Resolver implements it.
type HostResolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// prober runs one service-check dialogue; its only timeout is ctx's.
type prober func(ctx context.Context, t probe.Target) probe.Result

// proberFor returns the prober of a service kind, or nil.
func proberFor(kind string) prober {
	switch kind {
	case events.KindSMTP:
		return smtpprobe.Probe
	case events.KindIMAP:
		return imapprobe.Probe
	case events.KindPOP3:
		return pop3probe.Probe
	}
	return nil
}

// handleService runs a service check (kind smtp, imap or pop3) and
// publishes its check.result: exactly one per test (message id
// result:<test>:1). A redelivered test republishes the result decided
// before instead of probing again; a test picked up after its NotAfter,
// or whose password variable is missing, is a monitor_error.
func (s *Sender) handleService(ctx context.Context, log *slog.Logger, ev events.TestScheduled, check *checks.Check) error {
	if prev, ok := s.results.get(ev.TestID); ok {
		return s.reportResult(ctx, log, prev.ev)
	}
	now := s.deps.Clock.Now()
	base := events.CheckResult{
		V: events.SchemaVersion, TestID: ev.TestID, CheckID: check.ID, Customer: check.Customer, Site: ev.Site,
		Kind: check.Kind, Attempt: ev.Attempt, Reason: ev.Reason, OriginTestID: ev.OriginTestID, Revision: 1,
		StartedAt: now.UTC(), FinishedAt: now.UTC(), Target: check.Service.Addr(),
	}
	notAfter := ev.NotAfter
	if notAfter.IsZero() {
		notAfter = ev.ScheduledAt.Add(check.SendWindow())
	}
	if now.After(notAfter) {
		late := now.Sub(notAfter).Truncate(time.Millisecond)
		log.Error("service check picked up after its send window: not run", "not_after", notAfter, "late", late.String())
		return s.decided(ctx, log, monitorError(base, ClassStale,
			fmt.Errorf("test picked up %s after its send window closed at %s; the check was not run", late, notAfter.UTC().Format(time.RFC3339))))
	}
	target, err := probe.FromCheck(check, s.deps.LookupEnv)
	if err != nil {
		class := ClassProbeBuild
		var missing *probe.MissingPasswordError
		if errors.As(err, &missing) {
			class = ClassNoPassword
		}
		log.Error("service check cannot run", "error_class", class, "error", err)
		return s.decided(ctx, log, monitorError(base, class, err))
	}
	target.RootCAs = s.deps.ServiceRootCAs
	target.HelloName = s.cfg.helo()
	target.Resolver = s.deps.ServiceResolver

	pctx, cancel := context.WithTimeout(ctx, check.Timeout)
	res := proberFor(check.Kind)(pctx, target)
	cancel()
	s.metrics.serviceSeconds.WithLabelValues(check.Kind).Observe(res.Timings.TotalMS / 1000)

	r := res.CheckResult(base)
	r.FinishedAt = s.deps.Clock.Now().UTC()
	applySlow(&r, check.Slow)
	attrs := []any{"target", target, "status", r.Status, "total_ms", r.Timings.TotalMS}
	if r.ErrorClass != "" {
		attrs = append(attrs, "error_class", r.ErrorClass, "phase", r.Phase, "error", r.Error)
	}
	if r.Reply != nil {
		attrs = append(attrs, "reply", r.Reply.String())
	}
	switch r.Status {
	case events.StatusOK:
		log.Info("service check passed", attrs...)
	case events.StatusMonitorError:
		log.Error("service check could not run", attrs...)
	default:
		log.Warn("service check did not pass", attrs...)
	}
	return s.decided(ctx, log, r)
}

// applySlow makes an ok result whose whole dialogue took slow or longer
// "slow" (a warning, as a slow round trip is). Other statuses are kept: a
// failure is worse and degraded already warns.
func applySlow(r *events.CheckResult, slow time.Duration) {
	if r.Status == events.StatusOK && slow > 0 && r.Timings.TotalMS >= float64(slow)/float64(time.Millisecond) {
		r.Status = events.StatusSlow
	}
}

// monitorError is base as a monitor_error of class with err.
func monitorError(base events.CheckResult, class string, err error) events.CheckResult {
	base.Status, base.ErrorClass, base.Error = events.StatusMonitorError, class, err.Error()
	return base
}

// decided records the result of a test, so that a redelivery publishes it
// again instead of probing again, and publishes it.
func (s *Sender) decided(ctx context.Context, log *slog.Logger, r events.CheckResult) error {
	now := s.deps.Clock.Now()
	s.results.put(r.TestID, r, true, now, now.Add(events.DuplicateWindow))
	s.metrics.serviceChecks.WithLabelValues(r.Kind, r.Status).Inc()
	return s.reportResult(ctx, log, r)
}

// reportResult publishes check.result. A failure is temporary (the test is
// redelivered and the recorded result published again); JetStream stores
// one copy whatever the number of publications.
func (s *Sender) reportResult(ctx context.Context, log *slog.Logger, r events.CheckResult) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dup, err := s.deps.Publisher.Publish(pctx, r)
	if err != nil {
		log.Warn("check.result not published; will retry", "status", r.Status, "error", err)
		return fmt.Errorf("report test %s: %w", r.TestID, err)
	}
	if !dup {
		s.metrics.results.WithLabelValues(r.Kind, r.Status, r.ErrorClass).Inc()
	}
	return nil
}
