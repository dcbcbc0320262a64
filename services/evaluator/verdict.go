package evaluator

import (
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
)

// Site verdicts: what one site concludes about one check.
const (
	VerdictUnknown  = "unknown"  // no counted result yet
	VerdictUp       = "up"       // the newest attempt was ok
	VerdictSlow     = "slow"     // the newest attempt returned, but slowly
	VerdictDegraded = "degraded" // a service check passed with a warning
	VerdictSuspect  = "suspect"  // an attempt failed; a confirmation is under way
	VerdictDown     = "down"     // the failure was confirmed (retries failed)
)

// maxFailing caps the attempts kept as evidence of one failing series.
const maxFailing = 8

// SiteState is one site's verdict on one check (KV key site.<check>.<site>).
type SiteState struct {
	CheckID string    `json:"check_id"`
	Site    string    `json:"site"`
	Verdict string    `json:"verdict"`
	Since   time.Time `json:"since"` // start of the first attempt behind the verdict
	// ConfirmFailures counts failed confirmation attempts (attempt >= 2) in
	// the current failing series; the site is down at check.Retries.
	ConfirmFailures int `json:"confirm_failures"`
	// Failing are the attempts of the current failing series, oldest first.
	Failing []events.AttemptRef `json:"failing,omitempty"`
	// Pending is the confirmation attempt asked of this site and not yet
	// answered; no incident resolves while one is pending.
	Pending *Pending `json:"pending,omitempty"`
	// LastStartedAt is the start of the newest attempt that moved the
	// verdict: an older result arriving late does not move it back.
	LastStartedAt time.Time `json:"last_started_at"`
	// LastResultAt is when the newest counted result was made (freshness).
	LastResultAt time.Time `json:"last_result_at"`
	LastStatus   string    `json:"last_status,omitempty"`
	LastTestID   string    `json:"last_test_id,omitempty"`
	// LastRTTMS is the round trip of that attempt: the evidence of a slow
	// verdict, which keeps no Failing attempts.
	LastRTTMS *int64 `json:"last_rtt_ms,omitempty"`
}

// Pending is a confirmation attempt asked of a site.
type Pending struct {
	TestID       string    `json:"test_id"`
	OriginTestID string    `json:"origin_test_id"`
	Attempt      int       `json:"attempt"`
	Reason       string    `json:"reason"`
	DueAt        time.Time `json:"due_at"` // when it is (to be) sent
}

// expired reports whether a pending confirmation should have produced a
// result long ago (its result was lost); it then no longer blocks a
// resolution.
func (p *Pending) expired(c *checks.Check, now time.Time) bool {
	return now.After(p.DueAt.Add(c.SendWindow() + c.Timeout + 5*time.Minute))
}

// matches reports whether r answers the pending confirmation.
func (p *Pending) matches(r *events.CheckResult) bool {
	return p != nil && (r.TestID == p.TestID || r.OriginTestID == p.OriginTestID && r.Attempt == p.Attempt)
}

// plannedTest is a test the evaluator decided to ask for.
type plannedTest struct {
	Site         string
	Attempt      int
	Reason       string
	OriginTestID string
	DueAt        time.Time
}

func newSiteState(check, site string) *SiteState {
	return &SiteState{CheckID: check, Site: site, Verdict: VerdictUnknown}
}

// applyResult moves st by one result of check c at st.Site and returns the
// retest to schedule for this site (nil: none) and whether the other sites
// should be asked for a confirmation now (the first failure of a series).
// A monitor_error never moves the verdict (docs/evaluation.md, section 4: monitor faults are not
// customer outages); a result older than the verdict's newest attempt does
// not move it back (events may arrive in any order).
func applyResult(st *SiteState, r *events.CheckResult, c *checks.Check, now time.Time) (retest *plannedTest, fanOut bool) {
	if st.Pending.matches(r) {
		st.Pending = nil
	}
	if r.Status == events.StatusMonitorError || r.TestID == st.LastTestID {
		return nil, false // never counts, or counted already (redelivery)
	}
	if r.StartedAt.Before(st.LastStartedAt) {
		return nil, false
	}
	st.LastStartedAt = r.StartedAt
	st.LastResultAt = now
	st.LastStatus = r.Status
	st.LastTestID = r.TestID
	st.LastRTTMS = r.RTTMS

	switch r.Status {
	case events.StatusOK, events.StatusSlow, events.StatusDegraded:
		v := map[string]string{events.StatusOK: VerdictUp, events.StatusSlow: VerdictSlow, events.StatusDegraded: VerdictDegraded}[r.Status]
		if st.Verdict != v {
			st.Since = r.StartedAt
		}
		st.Verdict, st.ConfirmFailures, st.Failing = v, 0, nil
		return nil, false
	}

	// timeout or failed
	ref := attemptRef(r)
	if r.Attempt <= 1 {
		confirming := st.Pending != nil && !st.Pending.expired(c, now)
		if st.Verdict == VerdictDown || st.Verdict == VerdictSuspect && confirming {
			// The outage goes on, or a confirmation is already on its way.
			st.Failing = appendCapped(st.Failing, ref)
			return nil, false
		}
		if st.Verdict == VerdictSuspect {
			// Suspect, and its confirmation is gone: it ended in a
			// monitor_error (a retest the evaluator published late, after
			// a restart, is stale at the sender) or never came. Ask again,
			// or the site stays suspect for as long as the outage lasts
			// and no incident opens (found by the soak, docs/soak.md).
			st.Failing = appendCapped(st.Failing, ref)
			return &plannedTest{Site: st.Site, Attempt: st.ConfirmFailures + 2, Reason: events.ReasonRetest, OriginTestID: r.TestID, DueAt: retestAt(r, c, now)}, false
		}
		st.Failing, st.ConfirmFailures, st.Since = []events.AttemptRef{ref}, 0, r.StartedAt
		if c.Retries == 0 {
			st.Verdict = VerdictDown
			return nil, true
		}
		st.Verdict = VerdictSuspect
		if st.Pending != nil && !st.Pending.expired(c, now) {
			// Another site's failure already asked this one to confirm:
			// that confirmation serves as this site's retest.
			return nil, true
		}
		return &plannedTest{Site: st.Site, Attempt: 2, Reason: events.ReasonRetest, OriginTestID: r.TestID, DueAt: retestAt(r, c, now)}, true
	}

	// A confirmation attempt failed.
	if st.Verdict != VerdictSuspect && st.Verdict != VerdictDown {
		// A confirmation asked by another site's failure (fan-out) found the
		// failure here too: it starts this site's series.
		st.Failing, st.ConfirmFailures, st.Since = nil, 0, r.StartedAt
	}
	st.Failing = appendCapped(st.Failing, ref)
	st.ConfirmFailures++
	if st.ConfirmFailures >= c.Retries || st.Verdict == VerdictDown {
		st.Verdict = VerdictDown
		return nil, false
	}
	st.Verdict = VerdictSuspect
	return &plannedTest{Site: st.Site, Attempt: r.Attempt + 1, Reason: events.ReasonRetest, OriginTestID: r.TestID, DueAt: retestAt(r, c, now)}, false
}

// retestAt is when the confirmation of failed attempt r is sent: retry_delay
// after the failure was known on the monitor's clock: the attempt's timeout
// for a timeout (the deadline, not the moment the verdict was processed),
// the verdict time for a refusal.
func retestAt(r *events.CheckResult, c *checks.Check, now time.Time) time.Time {
	at := now
	if r.Status == events.StatusTimeout && !r.StartedAt.IsZero() {
		if deadline := r.StartedAt.Add(c.Timeout); deadline.Before(now) {
			at = deadline
		}
	}
	return at.Add(c.RetryDelay)
}

// fanOutTo reports whether a site should be asked for a confirmation now
// because another site's attempt failed: not when it is failing already or
// has a confirmation pending.
func fanOutTo(st *SiteState, c *checks.Check, now time.Time) bool {
	if st.Verdict == VerdictSuspect || st.Verdict == VerdictDown {
		return false
	}
	return st.Pending == nil || st.Pending.expired(c, now)
}

func attemptRef(r *events.CheckResult) events.AttemptRef {
	return events.AttemptRef{
		TestID: r.TestID, Attempt: r.Attempt, Status: r.Status, StartedAt: r.StartedAt,
		RTTMS: r.RTTMS, Reply: r.Reply, ErrorClass: r.ErrorClass, Phase: r.Phase, Summary: r.Summary,
	}
}

func appendCapped(list []events.AttemptRef, ref events.AttemptRef) []events.AttemptRef {
	for _, a := range list {
		if a.TestID == ref.TestID {
			return list
		}
	}
	list = append(list, ref)
	if len(list) > maxFailing {
		// Keep the first (it dates the outage) and the newest.
		list = append(list[:1], list[len(list)-maxFailing+1:]...)
	}
	return list
}
