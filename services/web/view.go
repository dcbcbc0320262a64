package web

import (
	"cmp"
	"slices"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
)

// The JSON API's types (services/web/openapi.yaml documents them); the
// pages render the same values.

// Overview is GET /api/v1/overview: every check with its state, open
// incidents first.
type Overview struct {
	GeneratedAt time.Time      `json:"generated_at"`
	Counts      Counts         `json:"counts"`
	Checks      []CheckSummary `json:"checks"`
}

// Counts are the checks per state.
type Counts struct {
	Up      int `json:"up"`
	Warning int `json:"warning"`
	Down    int `json:"down"`
	Unknown int `json:"unknown"`
}

// CheckSummary is one check's current state: its open incident and each
// site's newest attempt.
type CheckSummary struct {
	ID       string        `json:"id"`
	Name     string        `json:"name"`
	Customer string        `json:"customer"`
	Kind     string        `json:"kind"`
	Target   string        `json:"target"` // probe mailbox, or host:port of a service check
	State    string        `json:"state"`  // StateUp, StateWarning, StateDown, StateUnknown
	Incident *Incident     `json:"incident,omitempty"`
	Sites    []SiteSummary `json:"sites"`
}

// SiteSummary is one site's verdict on a check and its newest attempt.
type SiteSummary struct {
	Site          string          `json:"site"`
	Verdict       string          `json:"verdict"` // unknown, up, slow, degraded, suspect, down, failing
	Since         *time.Time      `json:"since,omitempty"`
	LastAttemptAt *time.Time      `json:"last_attempt_at,omitempty"` // start of the newest attempt
	LastStatus    string          `json:"last_status,omitempty"`     // ok, slow, degraded, timeout, failed, monitor_error
	RTTMS         *int64          `json:"rtt_ms,omitempty"`          // round trip of the newest attempt, milliseconds
	Timings       *events.Timings `json:"timings,omitempty"`         // service checks: per-phase milliseconds
	CertDaysLeft  *int            `json:"cert_days_left,omitempty"`  // service checks with TLS
	ErrorClass    string          `json:"error_class,omitempty"`
	Phase         string          `json:"phase,omitempty"`
}

// Incident is an open or resolved incident.
type Incident struct {
	ID         string     `json:"id"`
	CheckID    string     `json:"check_id"`
	Customer   string     `json:"customer"`
	Severity   string     `json:"severity"` // critical, warning
	Reason     string     `json:"reason"`
	Since      time.Time  `json:"since"`
	OpenedAt   time.Time  `json:"opened_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	Resolution string     `json:"resolution,omitempty"`
}

// CheckInfo is a check as the check file defines it (GET /api/v1/checks).
type CheckInfo struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	Customer        string   `json:"customer"`
	Kind            string   `json:"kind"`
	Target          string   `json:"target"`
	Sites           []string `json:"sites"`
	IntervalSeconds float64  `json:"interval_seconds"`
	TimeoutSeconds  float64  `json:"timeout_seconds"`
	SlowSeconds     float64  `json:"slow_seconds"`
	Quorum          int      `json:"quorum"`
}

// CheckList is GET /api/v1/checks.
type CheckList struct {
	Checks []CheckInfo `json:"checks"`
}

// CheckDetail is GET /api/v1/checks/{id}: the check's state, its recent
// attempts (newest first) and its past incidents (newest first).
type CheckDetail struct {
	Check     CheckSummary `json:"check"`
	Settings  CheckInfo    `json:"settings"`
	Results   []Result     `json:"results"`
	Incidents []Incident   `json:"incidents"`
}

// Result is one attempt with its evidence.
type Result struct {
	Site       string    `json:"site"`
	TestID     string    `json:"test_id"`
	Attempt    int       `json:"attempt"`
	Reason     string    `json:"reason,omitempty"`
	Status     string    `json:"status"`
	Late       bool      `json:"late,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	RTTMS      *int64    `json:"rtt_ms,omitempty"`
	TotalMS    *float64  `json:"total_ms,omitempty"`
	ErrorClass string    `json:"error_class,omitempty"`
	Phase      string    `json:"phase,omitempty"`
	Error      string    `json:"error,omitempty"`
	SMTPReply  string    `json:"smtp_reply,omitempty"`
	// Summary is the attempt's line as incidents and SMS show it;
	// Warnings what did not fail it; Evidence the submission, bounce,
	// hops or a service check's dialogue (kept for a site's newest 5
	// attempts).
	Summary  string           `json:"summary,omitempty"`
	Warnings []string         `json:"warnings,omitempty"`
	Evidence *events.Evidence `json:"evidence,omitempty"`
}

// IncidentList is GET /api/v1/incidents: open incidents (newest first)
// and the recently resolved ones kept in memory.
type IncidentList struct {
	Open   []Incident `json:"open"`
	Recent []Incident `json:"recent"`
}

// filter selects checks by customer and state; empty fields select all.
type filter struct {
	Customer string
	State    string
}

func (f filter) keeps(s *CheckSummary) bool {
	return (f.Customer == "" || f.Customer == s.Customer) && (f.State == "" || f.State == s.State)
}

// summarize is check c's state from snap.
func summarize(c *checks.Check, snap snapshot) CheckSummary {
	s := CheckSummary{ID: c.ID, Name: c.Name, Customer: c.Customer, Kind: c.Kind, Target: c.Where(), Sites: make([]SiteSummary, 0, len(c.Sites))}
	if s.Name == "" {
		s.Name = c.ID
	}
	failing, up := false, 0
	for _, site := range c.Sites {
		v, ok := snap.sites[site]
		if !ok {
			v = siteSnap{verdict: verdictUnknown}
		}
		ss := SiteSummary{Site: site, Verdict: v.verdict}
		if !v.since.IsZero() {
			ss.Since = ptr(v.since)
		}
		if r := v.last; r != nil {
			ss.LastAttemptAt, ss.LastStatus, ss.RTTMS = ptr(r.StartedAt), r.Status, r.RTTMS
			ss.ErrorClass, ss.Phase = r.ErrorClass, r.Phase
			if r.Kind != events.KindRoundTrip {
				ss.Timings = ptr(r.Timings)
				if r.TLS != nil && !r.TLS.PeerNotAfter.IsZero() {
					ss.CertDaysLeft = ptr(r.TLS.DaysLeft)
				}
			}
		}
		switch v.verdict {
		case verdictUp:
			up++
		case verdictSlow, verdictDegraded, verdictSuspect, verdictDown, verdictFailing:
			failing = true
		}
		s.Sites = append(s.Sites, ss)
	}
	switch {
	case snap.open != nil && snap.open.Severity == events.SeverityCritical:
		s.State = StateDown
	case snap.open != nil || failing:
		s.State = StateWarning
	case up > 0:
		s.State = StateUp
	default:
		s.State = StateUnknown
	}
	if snap.open != nil {
		in := apiIncident(openIncident(snap.open))
		s.Incident = &in
	}
	return s
}

func apiIncident(in incident) Incident {
	out := Incident{ID: in.ID, CheckID: in.CheckID, Customer: in.Customer, Severity: in.Severity, Reason: in.Reason,
		Since: in.Since, OpenedAt: in.OpenedAt, Resolution: in.Resolution}
	if !in.ResolvedAt.IsZero() {
		out.ResolvedAt = ptr(in.ResolvedAt)
	}
	return out
}

func apiResult(site, kind string, a attempt) Result {
	r := Result{Site: site, TestID: a.TestID, Attempt: a.Attempt, Reason: a.Reason, Status: a.Status, Late: a.Late,
		StartedAt: a.StartedAt, FinishedAt: a.FinishedAt, ErrorClass: a.ErrorClass, Phase: a.Phase, Error: a.Error, SMTPReply: a.Reply,
		Summary: a.Summary, Warnings: a.Warnings, Evidence: a.Evidence}
	if a.RTTMS >= 0 {
		r.RTTMS = ptr(a.RTTMS)
	}
	if kind != events.KindRoundTrip && a.TotalMS > 0 {
		r.TotalMS = ptr(a.TotalMS)
	}
	return r
}

func checkInfo(c *checks.Check) CheckInfo {
	name := c.Name
	if name == "" {
		name = c.ID
	}
	return CheckInfo{ID: c.ID, Name: name, Customer: c.Customer, Kind: c.Kind, Target: c.Where(), Sites: slices.Clone(c.Sites),
		IntervalSeconds: c.Interval.Seconds(), TimeoutSeconds: c.Timeout.Seconds(), SlowSeconds: c.Slow.Seconds(), Quorum: c.EffectiveQuorum()}
}

// stateRank orders the overview: down first, then warning, unknown, up.
func stateRank(s string) int {
	switch s {
	case StateDown:
		return 0
	case StateWarning:
		return 1
	case StateUnknown:
		return 2
	}
	return 3
}

// overview summarizes every check of f that f keeps: checks with an open
// incident first (critical, then warning, newest first), then by state,
// then in file order.
func (w *Web) overview(f *checks.File, keep filter) Overview {
	out := Overview{GeneratedAt: w.clock.Now().UTC(), Checks: make([]CheckSummary, 0, len(f.Checks))}
	for _, c := range f.Checks {
		if keep.Customer != "" && c.Customer != keep.Customer {
			continue
		}
		snap, _, _ := w.store.get(c.ID, false)
		s := summarize(c, snap)
		if !keep.keeps(&s) {
			continue
		}
		switch s.State {
		case StateUp:
			out.Counts.Up++
		case StateWarning:
			out.Counts.Warning++
		case StateDown:
			out.Counts.Down++
		default:
			out.Counts.Unknown++
		}
		out.Checks = append(out.Checks, s)
	}
	slices.SortStableFunc(out.Checks, func(a, b CheckSummary) int {
		if a.Incident != nil && b.Incident != nil {
			return cmp.Or(cmp.Compare(stateRank(a.State), stateRank(b.State)), b.Incident.OpenedAt.Compare(a.Incident.OpenedAt))
		}
		if (a.Incident != nil) != (b.Incident != nil) {
			if a.Incident != nil {
				return -1
			}
			return 1
		}
		return cmp.Compare(stateRank(a.State), stateRank(b.State))
	})
	return out
}

// detail is check c's state, recent results (newest first, every site)
// and past incidents from memory.
func (w *Web) detail(c *checks.Check) CheckDetail {
	snap, recent, _ := w.store.get(c.ID, true)
	d := CheckDetail{Check: summarize(c, snap), Settings: checkInfo(c), Results: []Result{}, Incidents: []Incident{}}
	for site, as := range recent {
		for _, a := range as {
			d.Results = append(d.Results, apiResult(site, c.Kind, a))
		}
	}
	slices.SortFunc(d.Results, func(a, b Result) int {
		return cmp.Or(b.StartedAt.Compare(a.StartedAt), cmp.Compare(a.Site, b.Site), cmp.Compare(b.Attempt, a.Attempt))
	})
	for _, in := range snap.past {
		d.Incidents = append(d.Incidents, apiIncident(in))
	}
	return d
}

// incidents lists the open incidents of f's checks and the resolved ones
// in memory, newest first.
func (w *Web) incidents(f *checks.File) IncidentList {
	out := IncidentList{Open: []Incident{}, Recent: []Incident{}}
	for _, c := range f.Checks {
		snap, _, _ := w.store.get(c.ID, true)
		if snap.open != nil {
			out.Open = append(out.Open, apiIncident(openIncident(snap.open)))
		}
		for _, in := range snap.past {
			out.Recent = append(out.Recent, apiIncident(in))
		}
	}
	newest := func(a, b Incident) int { return b.OpenedAt.Compare(a.OpenedAt) }
	slices.SortFunc(out.Open, newest)
	slices.SortFunc(out.Recent, newest)
	return out
}

func ptr[T any](v T) *T { return &v }
