package evaluator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
)

// healthTracker keeps SiteHealth per site in memory and in KV (key
// health.<site>). Results of every check at a site update the same state
// from several workers, so it is guarded here and written only when
// something that matters changed (status, error count, canary), or every
// healthPersistEvery for LastGood; a write that meets a concurrent one
// reloads and applies the result again.
type healthTracker struct {
	st  *store
	m   *metrics
	log *slog.Logger

	mu    sync.Mutex
	sites map[string]*healthEntry
}

type healthEntry struct {
	h        SiteHealth
	rev      uint64
	loadedAt time.Time // real time, bounds staleness after a failover
	written  time.Time // monitor clock of the last write
}

const (
	healthPersistEvery = 30 * time.Second
	healthReloadAfter  = 5 * time.Second
)

func newHealthTracker(st *store, m *metrics, log *slog.Logger) *healthTracker {
	return &healthTracker{st: st, m: m, log: log, sites: map[string]*healthEntry{}}
}

func healthKey(site string) string { return "health." + site }

// entry returns the site's state, reading KV when it was not read recently
// (another replica may have been active meanwhile). h.mu is held.
func (h *healthTracker) entry(ctx context.Context, site string) (*healthEntry, error) {
	e := h.sites[site]
	if e != nil && time.Since(e.loadedAt) < healthReloadAfter {
		return e, nil
	}
	var sh SiteHealth
	h.st.forget(healthKey(site))
	rev, found, err := h.st.get(ctx, healthKey(site), &sh)
	if err != nil {
		return nil, err
	}
	if !found {
		sh = SiteHealth{Site: site}
	}
	e = &healthEntry{h: sh, rev: rev, loadedAt: time.Now()}
	if old := h.sites[site]; old != nil {
		e.written = old.written
	}
	h.sites[site] = e
	return e, nil
}

// observe records r in its site's health and publishes monitor.health when
// the status changes.
func (h *healthTracker) observe(ctx context.Context, pub platform.Publisher, r *events.CheckResult, canaryVerdict string, now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for try := 0; ; try++ {
		e, err := h.entry(ctx, r.Site)
		if err != nil {
			return err
		}
		sh := e.h
		before := sh
		changed := sh.observe(r, canaryVerdict, now)
		persist := changed || sh.ConsecutiveMonitorErrors != before.ConsecutiveMonitorErrors ||
			sh.CanaryDown != before.CanaryDown || now.Sub(e.written) >= healthPersistEvery
		if changed {
			ev := events.MonitorHealthEvent{V: events.SchemaVersion, Site: r.Site, Status: sh.Status, Reason: sh.Reason, Since: sh.Since, At: now}
			if _, err := pub.Publish(ctx, ev); err != nil {
				return err
			}
		}
		if persist {
			rev, err := h.st.put(ctx, healthKey(r.Site), &sh, e.rev, 0)
			if err != nil {
				delete(h.sites, r.Site)
				if errors.Is(err, errConflict) && try < 5 {
					continue
				}
				return err
			}
			e.rev, e.written = rev, now
		}
		e.h = sh
		healthy := 0.0
		if sh.Status != events.MonitorDown {
			healthy = 1
		}
		h.m.siteHealthy.WithLabelValues(r.Site).Set(healthy)
		if !sh.LastGood.IsZero() {
			h.m.siteLastGood.WithLabelValues(r.Site).Set(float64(sh.LastGood.Unix()))
		}
		if changed {
			level := slog.LevelInfo
			if sh.Status != events.MonitorOK {
				level = slog.LevelError
			}
			h.log.Log(ctx, level, fmt.Sprintf("monitor at site %s is %s", r.Site, sh.Status), "site", r.Site, "reason", sh.Reason)
		}
		return nil
	}
}

// eligible reports whether site may vote (SiteHealth.eligible). A read
// error is returned: the event is handled again later.
func (h *healthTracker) eligible(ctx context.Context, site string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, err := h.entry(ctx, site)
	if err != nil {
		return false, err
	}
	return e.h.eligible(), nil
}
