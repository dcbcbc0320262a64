package web

import (
	"slices"
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// Site verdicts, as the evaluator writes them in KV (SiteState.Verdict),
// and "failing": a failed result seen by this service whose confirmation
// it does not know about (the evaluator's "suspect" or "down").
const (
	verdictUnknown  = "unknown"
	verdictUp       = "up"
	verdictSlow     = "slow"
	verdictDegraded = "degraded"
	verdictSuspect  = "suspect"
	verdictDown     = "down"
	verdictFailing  = "failing"
)

// Check states: the colour and label of a row.
const (
	StateUp      = "up"      // every site's newest attempt passed
	StateWarning = "warning" // a warning incident, or a site slow, degraded or failing
	StateDown    = "down"    // a critical incident is open
	StateUnknown = "unknown" // no result yet
)

// maxPastIncidents bounds the resolved incidents kept per check.
const maxPastIncidents = 20

// attempt is one result as this service keeps it: a compact copy of an
// events.CheckResult (about 250 bytes with its strings).
type attempt struct {
	TestID     string
	Attempt    int
	Reason     string
	Status     string
	Late       bool
	StartedAt  time.Time
	FinishedAt time.Time
	RTTMS      int64 // -1: none
	TotalMS    float64
	ErrorClass string
	Phase      string
	Error      string
	Reply      string // "554 5.7.1 text", "" when none
	Summary    string
	Warnings   []string
	// Evidence is kept for the newest keptEvidence attempts of a site
	// only (a dialogue is up to 12 KB); older ones keep their summary.
	Evidence *events.Evidence
}

// keptEvidence is how many of a site's newest attempts keep their whole
// evidence in memory.
const keptEvidence = 5

func newAttempt(r *events.CheckResult) attempt {
	a := attempt{
		TestID: r.TestID, Attempt: r.Attempt, Reason: r.Reason, Status: r.Status, Late: r.Late,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, RTTMS: -1, TotalMS: r.Timings.TotalMS,
		ErrorClass: r.ErrorClass, Phase: r.Phase, Error: r.Error, Reply: r.Reply.String(),
		Summary: r.Summary, Warnings: r.Warnings, Evidence: r.Evidence,
	}
	if r.RTTMS != nil {
		a.RTTMS = *r.RTTMS
	}
	return a
}

// value is the attempt's plotted time in milliseconds: the round trip, or
// a service check's total; false when the attempt has none (a timeout).
func (a attempt) value(kind string) (float64, bool) {
	if kind == events.KindRoundTrip {
		return float64(a.RTTMS), a.RTTMS >= 0
	}
	return a.TotalMS, a.TotalMS > 0 && a.Status != events.StatusMonitorError
}

// siteView is what is known of one check at one site.
type siteView struct {
	verdict string
	since   time.Time // start of the first attempt behind the verdict
	// verdictAt is the start of the newest attempt behind the verdict: an
	// older result does not move it back.
	verdictAt time.Time
	last      *events.CheckResult // newest result by StartedAt (phases, TLS)
	recent    []attempt           // oldest first, at most cap
}

// checkView is what is known of one check.
type checkView struct {
	sites map[string]*siteView
	open  *events.IncidentOpen
	past  []incident // newest first, at most maxPastIncidents
}

// incident is an incident as the pages show it: open or resolved.
type incident struct {
	ID         string
	CheckID    string
	Customer   string
	Severity   string
	Reason     string
	Since      time.Time
	OpenedAt   time.Time
	ResolvedAt time.Time // zero: open
	Resolution string
}

func openIncident(o *events.IncidentOpen) incident {
	return incident{ID: o.IncidentID, CheckID: o.CheckID, Customer: o.Customer, Severity: o.Severity, Reason: o.Reason,
		Since: o.Since, OpenedAt: o.OpenedAt}
}

// store is the in-memory state: per check and site the verdict and the
// recent results, per check the open incident and the past ones. It is
// safe for concurrent use; every change marks its check, and take returns
// the marked checks.
type store struct {
	recent int

	mu      sync.RWMutex
	checks  map[string]*checkView
	changed map[string]bool
}

func newStore(recent int) *store {
	return &store{recent: recent, checks: map[string]*checkView{}, changed: map[string]bool{}}
}

func (s *store) check(id string) *checkView {
	c := s.checks[id]
	if c == nil {
		c = &checkView{sites: map[string]*siteView{}}
		s.checks[id] = c
	}
	return c
}

func (c *checkView) site(name string) *siteView {
	v := c.sites[name]
	if v == nil {
		v = &siteView{verdict: verdictUnknown}
		c.sites[name] = v
	}
	return v
}

// mark records that check id changed; the caller holds s.mu.
func (s *store) mark(id string) {
	s.changed[id] = true
}

// take returns the checks changed since the last call, sorted.
func (s *store) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.changed))
	for id := range s.changed {
		ids = append(ids, id)
	}
	clear(s.changed)
	slices.Sort(ids)
	return ids
}

// setVerdict applies a site verdict read from the evaluator's KV bucket.
func (s *store) setVerdict(check, site, verdict string, since, lastStartedAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.check(check).site(site)
	if lastStartedAt.Before(v.verdictAt) {
		return
	}
	v.verdict, v.since, v.verdictAt = verdict, since, lastStartedAt
	s.mark(check)
}

// addResult keeps r among the recent results of its check and site (a
// second revision of a test replaces the first) and moves the site's
// verdict when r is its newest attempt.
func (s *store) addResult(r *events.CheckResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.check(r.CheckID).site(r.Site)
	a := newAttempt(r)
	if i := slices.IndexFunc(v.recent, func(x attempt) bool { return x.TestID == r.TestID }); i >= 0 {
		v.recent[i] = a
	} else {
		i, _ := slices.BinarySearchFunc(v.recent, a.StartedAt, func(x attempt, t time.Time) int { return x.StartedAt.Compare(t) })
		v.recent = slices.Insert(v.recent, i, a)
		if len(v.recent) > s.recent {
			v.recent = slices.Delete(v.recent, 0, len(v.recent)-s.recent)
		}
	}
	for i := range len(v.recent) - keptEvidence {
		v.recent[i].Evidence = nil
	}
	if v.last == nil || !r.StartedAt.Before(v.last.StartedAt) {
		cp := *r
		v.last = &cp
	}
	if !r.StartedAt.Before(v.verdictAt) {
		if next := verdictAfter(v.verdict, r.Status); next != v.verdict {
			v.verdict, v.since = next, r.StartedAt
		}
		v.verdictAt = r.StartedAt
	}
	s.mark(r.CheckID)
}

// verdictAfter is a site's verdict after a result with status, from the
// verdict before: what the evaluator would conclude, short of the
// confirmations this service does not follow.
func verdictAfter(prev, status string) string {
	switch status {
	case events.StatusOK:
		return verdictUp
	case events.StatusSlow:
		return verdictSlow
	case events.StatusDegraded:
		return verdictDegraded
	case events.StatusTimeout, events.StatusFailed:
		if prev == verdictDown || prev == verdictSuspect {
			return prev
		}
		return verdictFailing
	}
	return prev // monitor_error says nothing about the customer
}

// open records an open incident (from KV or incident.open).
func (s *store) open(o *events.IncidentOpen) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.check(o.CheckID)
	for _, p := range c.past {
		if p.ID == o.IncidentID {
			return // resolved already (a replay)
		}
	}
	cp := *o
	c.open = &cp
	s.mark(o.CheckID)
}

// resolve records the end of an incident.
func (s *store) resolve(r *events.IncidentResolved) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.check(r.CheckID)
	in := incident{ID: r.IncidentID, CheckID: r.CheckID, Customer: r.Customer, Severity: r.Severity,
		Since: r.Since, OpenedAt: r.OpenedAt, ResolvedAt: r.ResolvedAt, Resolution: r.Reason}
	if c.open != nil && c.open.IncidentID == r.IncidentID {
		in.Reason = c.open.Reason
		c.open = nil
	}
	if slices.ContainsFunc(c.past, func(p incident) bool { return p.ID == r.IncidentID }) {
		return
	}
	c.past = slices.Insert(c.past, 0, in)
	slices.SortStableFunc(c.past, func(a, b incident) int { return b.OpenedAt.Compare(a.OpenedAt) })
	if len(c.past) > maxPastIncidents {
		c.past = c.past[:maxPastIncidents]
	}
	s.mark(r.CheckID)
}

// snapshot is a copy of one check's state that the pages read without
// the lock.
type snapshot struct {
	sites map[string]siteSnap
	open  *events.IncidentOpen
	past  []incident
}

type siteSnap struct {
	verdict string
	since   time.Time
	last    *events.CheckResult
}

// get returns a copy of check id's state (its recent results and past
// incidents only when withRecent), and whether anything is known of it.
func (s *store) get(id string, withRecent bool) (snapshot, map[string][]attempt, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.checks[id]
	if c == nil {
		return snapshot{}, nil, false
	}
	snap := snapshot{sites: make(map[string]siteSnap, len(c.sites)), open: c.open}
	if withRecent {
		snap.past = slices.Clone(c.past)
	}
	var recent map[string][]attempt
	if withRecent {
		recent = make(map[string][]attempt, len(c.sites))
	}
	for name, v := range c.sites {
		snap.sites[name] = siteSnap{verdict: v.verdict, since: v.since, last: v.last}
		if withRecent {
			recent[name] = slices.Clone(v.recent)
		}
	}
	return snap, recent, true
}
