package evaluator

import (
	"context"
	"errors"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// ReasonCheckRemoved is the resolution of an incident whose check left the
// check file: nobody will test it again, so nothing else would close it.
const ReasonCheckRemoved = events.ResolvedCheckRemoved

// removedRetry is how long a failed pass of closeRemoved waits before the
// next.
const removedRetry = 30 * time.Second

// watchRemoved closes the open incidents of checks that are not in the
// check file: once the timers are loaded (a restart with a shorter file)
// and after every change of the file (a reload), until ctx ends. The
// resolved event goes to the notifier like any other, which tells only the
// contacts that were sent the open (docs/notifications.md).
func (e *Evaluator) watchRemoved(ctx context.Context) error {
	for {
		changed := e.deps.Checks.Changed()
		var retry <-chan time.Time
		if err := e.closeRemoved(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("closing the incidents of removed checks failed; retrying", "error", err, "retry_in", removedRetry.String())
			retry = e.deps.Clock.After(removedRetry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-retry:
		}
	}
}

// closeRemoved resolves, with ReasonCheckRemoved, every open incident in
// scout_incidents whose check is not in the file in force. Replicas may
// race: the resolved event's message id is the incident's (one copy) and
// the state is written with compare-and-set (the loser re-reads a closed
// incident and does nothing).
func (e *Evaluator) closeRemoved(ctx context.Context) error {
	lister, err := e.inc.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var ids []string
	for id := range lister.Keys() {
		ids = append(ids, id)
	}
	f := e.deps.Checks.Current()
	var errs []error
	for _, id := range ids {
		if f.Lookup(id) != nil {
			continue
		}
		var cs CheckState
		rev, found, err := e.inc.get(ctx, id, &cs)
		if err != nil || !found || cs.Open == nil {
			errs = append(errs, err)
			continue
		}
		now := e.deps.Clock.Now()
		r := resolved(cs.Open, now, ReasonCheckRemoved)
		if _, err := e.pub.Publish(ctx, r); err != nil {
			errs = append(errs, err)
			continue
		}
		e.m.resolved.WithLabelValues(r.Severity).Inc()
		e.log.Info("incident resolved", "check", id, "incident_id", r.IncidentID, "severity", r.Severity,
			"duration", now.Sub(r.OpenedAt).String(), "reason", r.Reason)
		cs.Open, cs.LastResolved, cs.LastResolvedAt = nil, r.IncidentID, now
		if _, err := e.inc.put(ctx, id, &cs, rev, 0); err != nil {
			errs = append(errs, err) // a conflict too: the next pass re-reads
		}
	}
	return errors.Join(errs...)
}
