package evaluator

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
)

// CheckState is the incident state of one check (KV bucket scout_incidents,
// key <check>).
type CheckState struct {
	CheckID string               `json:"check_id"`
	Open    *events.IncidentOpen `json:"open,omitempty"`
	// LastResolved is the id of the last resolved incident (never resolved
	// twice).
	LastResolved   string    `json:"last_resolved,omitempty"`
	LastResolvedAt time.Time `json:"last_resolved_at,omitempty"`
}

// decision is what the quorum rule concluded for one check.
type decision struct {
	resolve *events.IncidentResolved
	open    *events.IncidentOpen
}

// freshFor is how long a site verdict counts after its newest result: one
// interval, two timeouts and the retry delay (the worst case between two
// results of a failing site), plus a minute of slack.
func freshFor(c *checks.Check) time.Duration {
	return c.Interval + 2*c.Timeout + c.RetryDelay + time.Minute
}

// decide applies the quorum rule (docs/evaluation.md, section 3) to check c:
//   - eligible sites are those whose monitor is healthy (eligible(site));
//     the quorum is c.Quorum capped at their number;
//   - an incident opens when at least quorum eligible sites have a fresh
//     down verdict (critical), or a fresh slow/degraded one (warning);
//   - it resolves when the quorum no longer holds, no confirmation is
//     pending at any site, and at least one eligible site has fresh
//     positive evidence (a missing result never counts as a recovery).
//
// Canary checks never open customer incidents.
func decide(c *checks.Check, sites map[string]*SiteState, eligible func(string) bool, st *CheckState, now time.Time) decision {
	if c.Canary {
		return decision{}
	}
	var elig, down, warn, up []string
	pending := false
	for _, site := range c.Sites {
		s := sites[site]
		if s == nil {
			s = newSiteState(c.ID, site)
		}
		if s.Pending != nil && !s.Pending.expired(c, now) {
			pending = true
		}
		if !eligible(site) {
			continue
		}
		elig = append(elig, site)
		if s.LastResultAt.IsZero() || now.Sub(s.LastResultAt) > freshFor(c) {
			continue
		}
		switch s.Verdict {
		case VerdictDown:
			down = append(down, site)
		case VerdictSlow, VerdictDegraded:
			warn = append(warn, site)
			up = append(up, site)
		case VerdictUp:
			up = append(up, site)
		}
	}
	need := min(c.Quorum, len(elig))
	var d decision
	open := st.Open
	if open != nil && !pending && len(up) > 0 {
		holds := len(down) >= need
		if open.Severity == events.SeverityWarning {
			holds = len(warn)+len(down) >= need && len(warn) > 0
		}
		if !holds {
			again := "deliver again"
			if c.Kind != events.KindRoundTrip {
				again = "answer again" // a service check
			}
			d.resolve = resolved(open, now, fmt.Sprintf("%d of %d sites %s", len(up), len(elig), again))
			open = nil
		}
	}
	if need < 1 {
		return d
	}
	switch {
	case len(down) >= need && (open == nil || open.Severity == events.SeverityWarning):
		if open != nil {
			d.resolve = resolved(open, now, "escalated to critical")
		}
		d.open = opened(c, sites, down, len(elig), need, events.SeverityCritical, st.LastResolved, now)
	case open == nil && len(warn) >= need:
		d.open = opened(c, sites, warn, len(elig), need, events.SeverityWarning, st.LastResolved, now)
	}
	return d
}

func resolved(open *events.IncidentOpen, now time.Time, reason string) *events.IncidentResolved {
	return &events.IncidentResolved{
		V: events.SchemaVersion, IncidentID: open.IncidentID, CheckID: open.CheckID, CheckName: open.CheckName,
		Customer: open.Customer, Kind: open.Kind, Severity: open.Severity, Since: open.Since,
		OpenedAt: open.OpenedAt, ResolvedAt: now, Reason: reason, Notify: open.Notify,
	}
}

func opened(c *checks.Check, sites map[string]*SiteState, voters []string, eligible, need int, severity, prev string, now time.Time) *events.IncidentOpen {
	sort.Strings(voters)
	var votes []events.SiteVote
	since := now
	first := ""
	for _, site := range voters {
		s := sites[site]
		vote := events.SiteVote{Site: site, Verdict: s.Verdict, Attempts: s.Failing}
		if len(vote.Attempts) == 0 && s.LastTestID != "" {
			vote.Attempts = []events.AttemptRef{{TestID: s.LastTestID, Status: s.LastStatus, StartedAt: s.LastStartedAt, RTTMS: s.LastRTTMS}}
		}
		votes = append(votes, vote)
		if !s.Since.IsZero() && s.Since.Before(since) {
			since = s.Since
		}
		for _, a := range vote.Attempts {
			if first == "" || a.TestID < first {
				first = a.TestID
			}
		}
	}
	inc := &events.IncidentOpen{
		V: events.SchemaVersion, IncidentID: incidentID(c.ID, severity, first, prev),
		CheckID: c.ID, CheckName: c.Name, Customer: c.Customer, Kind: c.Kind, Severity: severity,
		Since: since, OpenedAt: now, Sites: votes, Quorum: need, Eligible: eligible,
		Reason: reasonFor(c, votes, eligible, severity), Notify: true,
	}
	if severity == events.SeverityWarning && !c.NotifyWarnings {
		inc.Notify, inc.Silenced = false, "warnings are recorded, not sent (notify_warnings: false)"
	}
	return inc
}

// incidentID derives the id from the check, the severity, the first failing
// attempt and the previous incident, so that an evaluator handling the same
// events twice (a redelivery, a failover) names the same incident and
// JetStream stores one open, while a later outage gets a new id.
func incidentID(check, severity, firstTest, prev string) string {
	sum := sha256.Sum256([]byte(check + "\x00" + severity + "\x00" + firstTest + "\x00" + prev))
	return "inc-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:])[:12])
}

// reasonFor is the one-line human reason an SMS and a status page show,
// e.g. "no return from 2 of 3 sites; retest failed".
func reasonFor(c *checks.Check, votes []events.SiteVote, eligible int, severity string) string {
	n := len(votes)
	of := fmt.Sprintf("%d of %d sites", n, eligible)
	if n == 1 && eligible == 1 {
		of = "the only site"
	}
	var last *events.AttemptRef
	timeouts, failed, retested := 0, 0, false
	var maxRTT int64
	for _, v := range votes {
		for i := range v.Attempts {
			a := &v.Attempts[i]
			switch a.Status {
			case events.StatusTimeout:
				timeouts++
			case events.StatusFailed:
				failed++
				if last == nil || a.StartedAt.After(last.StartedAt) {
					last = a
				}
			}
			if a.Attempt >= 2 {
				retested = true
			}
			if a.RTTMS != nil && *a.RTTMS > maxRTT {
				maxRTT = *a.RTTMS
			}
		}
	}
	suffix := ""
	if retested {
		suffix = "; retest failed"
	}
	if severity == events.SeverityWarning {
		if c.Kind == events.KindRoundTrip {
			return fmt.Sprintf("slow delivery at %s (up to %s)", of, (time.Duration(maxRTT) * time.Millisecond).Round(time.Second))
		}
		if allVerdicts(votes, VerdictSlow) {
			return fmt.Sprintf("%s slow at %s", strings.ToUpper(c.Kind), of)
		}
		return fmt.Sprintf("%s check degraded at %s", strings.ToUpper(c.Kind), of)
	}
	what := ""
	if last != nil {
		what = last.Reply.String()
		if what == "" && c.Kind != events.KindRoundTrip {
			what = serviceClassWords(last.ErrorClass)
		}
		if what == "" {
			what = last.ErrorClass
		}
	}
	switch {
	case c.Kind == events.KindRoundTrip && failed == 0:
		return "no return from " + of + suffix
	case c.Kind == events.KindRoundTrip && last.Summary != "":
		// The evidence says who refused and how: "mx1.acme.example refused
		// the probe: 550 5.1.1 ... (2 of 3 sites)".
		return fmt.Sprintf("%s (%s%s)", last.Summary, of, suffix)
	case c.Kind == events.KindRoundTrip:
		return fmt.Sprintf("probe refused at %s: %s%s", of, what, suffix)
	case last != nil && last.Phase != "":
		return fmt.Sprintf("%s %s failed at %s: %s%s", strings.ToUpper(c.Kind), last.Phase, of, what, suffix)
	case timeouts > 0 && failed == 0:
		return fmt.Sprintf("%s not answering at %s%s", strings.ToUpper(c.Kind), of, suffix)
	default:
		return fmt.Sprintf("%s failed at %s: %s%s", strings.ToUpper(c.Kind), of, what, suffix)
	}
}

// serviceClassWords says a service check's error class
// (docs/service-checks.md) in a reason line, for failures without an SMTP
// reply (IMAP, POP3, TLS); "" for other classes.
func serviceClassWords(class string) string {
	switch class {
	case "refused":
		return "refused"
	case "protocol":
		return "protocol violation"
	case "tls":
		return "TLS failed"
	case "cert_invalid":
		return "certificate invalid"
	case "auth":
		return "login rejected"
	}
	return ""
}

// allVerdicts reports whether every vote has verdict v.
func allVerdicts(votes []events.SiteVote, v string) bool {
	for _, vote := range votes {
		if vote.Verdict != v {
			return false
		}
	}
	return len(votes) > 0
}
