package evaluator

import (
	"context"
	"errors"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

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

// closeRemoved resolves, with events.ResolvedCheckRemoved (nobody will test
// the check again, so nothing else would close it), every open incident in
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
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !found || cs.Open == nil {
			continue
		}
		if err := e.publishResolved(ctx, &cs, resolved(cs.Open, e.deps.Clock.Now(), events.ResolvedCheckRemoved)); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := e.inc.put(ctx, id, &cs, rev, 0); err != nil {
			errs = append(errs, err) // a conflict too: the next pass re-reads
		}
	}
	return errors.Join(errs...)
}
