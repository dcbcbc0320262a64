package evaluator

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
)

func siteKey(check, site string) string { return "site." + check + "." + site }

// retestKey is the key of a confirmation of check:
// retest.<partition>.<origin>.<site>.<attempt>, the check's partition as
// in attemptKey.
func retestKey(check string, p *plannedTest) string {
	return prefixRetest + strconv.Itoa(events.PartitionOf(check)) + "." + p.OriginTestID + "." + p.Site + "." + strconv.Itoa(p.Attempt)
}

// retestID derives a confirmation's test id from what asked for it, so that
// handling the same result twice plans the same test. The origin id is
// random, so the derived id is not guessable either.
func retestID(origin, site string, attempt int) string {
	sum := sha256.Sum256([]byte(origin + "\x00" + site + "\x00" + strconv.Itoa(attempt)))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:15]))
}

// applyVerdict moves the site verdict by one result, plans retests and
// confirmations, updates the monitor's health at the site, and applies the
// quorum rule. Applying the same result twice changes nothing.
func (e *Evaluator) applyVerdict(ctx context.Context, c *checks.Check, r *events.CheckResult) error {
	now := e.deps.Clock.Now()

	var st SiteState
	rev, found, err := e.state.get(ctx, siteKey(c.ID, r.Site), &st)
	if err != nil {
		return err
	}
	if !found {
		st = *newSiteState(c.ID, r.Site)
	}
	before := st.Verdict
	retest, fanOut := applyResult(&st, r, c, now)
	if retest != nil {
		if err := e.planRetest(ctx, c, &st, retest); err != nil {
			return err
		}
	}
	if fanOut {
		if err := e.fanOut(ctx, c, r, now); err != nil {
			return err
		}
	}
	if _, err := e.state.put(ctx, siteKey(c.ID, r.Site), &st, rev, 0); err != nil {
		return err
	}
	if st.Verdict != before {
		e.log.Info("site verdict", "check", c.ID, "site", r.Site, "from", before, "to", st.Verdict, "test_id", r.TestID, "attempt", r.Attempt, "status", r.Status)
	}

	canary := ""
	if c.Canary {
		canary = st.Verdict
	}
	if err := e.healthy.observe(ctx, e.pub, r, canary, now); err != nil {
		return err
	}
	return e.applyQuorum(ctx, c, now)
}

// planRetest records a confirmation for st's site, published at DueAt by
// the timers (restart-safe: the record is in KV).
func (e *Evaluator) planRetest(ctx context.Context, c *checks.Check, st *SiteState, p *plannedTest) error {
	ts := e.plannedEvent(c, p)
	rec := RetestRecord{DueAt: p.DueAt, Test: ts}
	key := retestKey(c.ID, p)
	if _, err := e.state.put(ctx, key, rec, 0, 0); err != nil {
		// Created before (this result is being handled again): keep it.
		var existing RetestRecord
		if _, found, gerr := e.state.get(ctx, key, &existing); gerr != nil || !found {
			return err
		}
	}
	e.timers.arm(key, events.PartitionOf(c.ID), p.DueAt, ts)
	st.Pending = &Pending{TestID: ts.TestID, OriginTestID: p.OriginTestID, Attempt: p.Attempt, Reason: p.Reason, DueAt: p.DueAt}
	e.m.retests.WithLabelValues(p.Reason).Inc()
	return nil
}

// fanOut asks every other site of c that is not failing already for a
// confirmation now (docs/evaluation.md, section 5), so that the quorum
// forms within one timeout instead of waiting for each site's next slot.
func (e *Evaluator) fanOut(ctx context.Context, c *checks.Check, r *events.CheckResult, now time.Time) error {
	for _, site := range c.Sites {
		if site == r.Site {
			continue
		}
		var st SiteState
		rev, found, err := e.state.get(ctx, siteKey(c.ID, site), &st)
		if err != nil {
			return err
		}
		if !found {
			st = *newSiteState(c.ID, site)
		}
		if !fanOutTo(&st, c, now) {
			continue
		}
		p := &plannedTest{Site: site, Attempt: 2, Reason: events.ReasonConfirm, OriginTestID: r.TestID, DueAt: now}
		ts := e.plannedEvent(c, p)
		if _, err := e.pub.Publish(ctx, ts); err != nil {
			return err
		}
		e.m.retests.WithLabelValues(p.Reason).Inc()
		st.Pending = &Pending{TestID: ts.TestID, OriginTestID: p.OriginTestID, Attempt: p.Attempt, Reason: p.Reason, DueAt: now}
		if _, err := e.state.put(ctx, siteKey(c.ID, site), &st, rev, 0); err != nil {
			return err
		}
	}
	return nil
}

func (e *Evaluator) plannedEvent(c *checks.Check, p *plannedTest) events.TestScheduled {
	return events.TestScheduled{
		V: events.SchemaVersion, TestID: retestID(p.OriginTestID, p.Site, p.Attempt),
		CheckID: c.ID, Site: p.Site, Kind: c.Kind, Attempt: p.Attempt, Reason: p.Reason,
		OriginTestID: p.OriginTestID, ScheduledAt: p.DueAt, NotAfter: p.DueAt.Add(c.SendWindow()),
	}
}

// publishResolved publishes r, the resolution of cs's open incident, and
// records it in cs (the caller writes cs back).
func (e *Evaluator) publishResolved(ctx context.Context, cs *CheckState, r *events.IncidentResolved) error {
	if _, err := e.pub.Publish(ctx, r); err != nil {
		return err
	}
	e.m.resolved.WithLabelValues(r.Severity).Inc()
	e.log.Info("incident resolved", "check", r.CheckID, "incident_id", r.IncidentID, "severity", r.Severity,
		"duration", r.ResolvedAt.Sub(r.OpenedAt).String(), "reason", r.Reason)
	cs.Open, cs.LastResolved, cs.LastResolvedAt = nil, r.IncidentID, r.ResolvedAt
	return nil
}

// applyQuorum loads every site verdict of c and the open incident, applies
// decide, publishes what changed and then records it.
func (e *Evaluator) applyQuorum(ctx context.Context, c *checks.Check, now time.Time) error {
	sites := map[string]*SiteState{}
	for _, site := range c.Sites {
		var st SiteState
		_, found, err := e.state.get(ctx, siteKey(c.ID, site), &st)
		if err != nil {
			return err
		}
		if found {
			sites[site] = &st
		}
	}
	var cs CheckState
	rev, _, err := e.inc.get(ctx, c.ID, &cs)
	if err != nil {
		return err
	}
	cs.CheckID = c.ID
	healthy := map[string]bool{}
	for _, site := range c.Sites {
		ok, err := e.healthy.eligible(ctx, site)
		if err != nil {
			return err
		}
		healthy[site] = ok
	}
	d := decide(c, sites, func(site string) bool { return healthy[site] }, &cs, now)
	if d.resolve == nil && d.open == nil {
		return nil
	}
	if d.resolve != nil {
		if err := e.publishResolved(ctx, &cs, d.resolve); err != nil {
			return err
		}
	}
	if d.open != nil {
		if _, err := e.pub.Publish(ctx, d.open); err != nil {
			return err
		}
		e.m.opened.WithLabelValues(d.open.Severity).Inc()
		e.log.Warn("incident opened", "check", c.ID, "incident_id", d.open.IncidentID, "severity", d.open.Severity,
			"reason", d.open.Reason, "since", d.open.Since, "notify", d.open.Notify)
		cs.Open = d.open
	}
	_, err = e.inc.put(ctx, c.ID, &cs, rev, 0)
	return err
}
