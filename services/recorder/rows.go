package recorder

import (
	"encoding/json"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// ResultRow is one row of check_results: one attempt (revision 1) or the
// late-return update of a timed-out attempt (revision 2, which replaces
// revision 1 in every query: the table is a ReplacingMergeTree keyed by
// (check_id, site, started_at, test_id) with revision as its version).
//
// Times are stored twice: as DateTime (whole seconds, UTC) for grouping and
// partitioning, and as unix milliseconds (the _ms columns) for precision,
// because ClickHouse 18.16 has no DateTime64. A nil pointer is NULL: the
// event did not have the value (no return, no reflector stamp, no SMTP
// reply, no TLS session).
type ResultRow struct {
	TestID           string     `ch:"test_id"`
	CheckID          string     `ch:"check_id"`
	Customer         string     `ch:"customer"`
	Site             string     `ch:"site"`
	Kind             string     `ch:"kind"`
	Attempt          uint16     `ch:"attempt"`
	Status           string     `ch:"status"`
	Revision         uint8      `ch:"revision"`
	Late             uint8      `ch:"late"`
	StartedAt        time.Time  `ch:"started_at"`
	StartedAtMS      uint64     `ch:"started_at_ms"`
	SentAt           *time.Time `ch:"sent_at"`
	SentAtMS         *uint64    `ch:"sent_at_ms"`
	ReflectedAt      *time.Time `ch:"reflected_at"`
	ReflectedAtMS    *uint64    `ch:"reflected_at_ms"`
	ReceivedAt       *time.Time `ch:"received_at"`
	ReceivedAtMS     *uint64    `ch:"received_at_ms"`
	FinishedAt       time.Time  `ch:"finished_at"`
	FinishedAtMS     uint64     `ch:"finished_at_ms"`
	RTTMS            *int64     `ch:"rtt_ms"`
	OutgoingLegMS    *int64     `ch:"outgoing_leg_ms"`
	IncomingLegMS    *int64     `ch:"incoming_leg_ms"`
	SkewMS           *int64     `ch:"skew_ms"`
	SkewSuspect      uint8      `ch:"skew_suspect"`
	SMTPCode         *uint16    `ch:"smtp_code"`
	SMTPEnhanced     string     `ch:"smtp_enhanced"`
	SMTPText         string     `ch:"smtp_text"`
	ErrorClass       string     `ch:"error_class"`
	Error            string     `ch:"error"`
	Phase            string     `ch:"phase"`
	Target           string     `ch:"target"`
	DNSMS            float64    `ch:"dns_ms"`
	ConnectMS        float64    `ch:"connect_ms"`
	GreetingMS       float64    `ch:"greeting_ms"`
	TLSMS            float64    `ch:"tls_ms"`
	CapabilitiesMS   float64    `ch:"capabilities_ms"`
	AuthMS           float64    `ch:"auth_ms"`
	TransferMS       float64    `ch:"transfer_ms"`
	MailboxMS        float64    `ch:"mailbox_ms"`
	TotalMS          float64    `ch:"total_ms"`
	PeerAddress      string     `ch:"peer_address"`
	TLSVersion       string     `ch:"tls_version"`
	TLSCipherSuite   string     `ch:"tls_cipher_suite"`
	TLSPeerNotAfter  *time.Time `ch:"tls_peer_not_after"`
	TLSDaysLeft      *int32     `ch:"tls_days_left"`
	TLSHostnameMatch *uint8     `ch:"tls_hostname_match"`
	TLSVerified      *uint8     `ch:"tls_verified"`
	TLSPeerSubject   string     `ch:"tls_peer_subject"`
	TLSVerifyError   string     `ch:"tls_verify_error"`
	// Evidence (migration 5): the summary line, warnings, the
	// submission's first hop, queue id and dialogue, a deferral's reply, a
	// bounce's fields, and the return's hops as JSON (events.Hop).
	Summary            string   `ch:"summary"`
	Warnings           []string `ch:"warnings"`
	FirstHop           string   `ch:"first_hop"`
	QueueID            string   `ch:"queue_id"`
	Transcript         []string `ch:"transcript"`
	DeferredReply      string   `ch:"deferred_reply"`
	BounceAction       string   `ch:"bounce_action"`
	BounceStatus       string   `ch:"bounce_status"`
	BounceDiagnostic   string   `ch:"bounce_diagnostic"`
	BounceRemoteMTA    string   `ch:"bounce_remote_mta"`
	BounceReportingMTA string   `ch:"bounce_reporting_mta"`
	Hops               string   `ch:"hops"`
	DKIM               string   `ch:"dkim"`        // the return's DKIM result (probemail.VerifyDKIM)
	ReturnPath         string   `ch:"return_path"` // reflector, forward, forward_attachment
}

// IncidentRow is one row of incidents: one transition ("open" or
// "resolved") of one incident. The table is a ReplacingMergeTree keyed by
// (check_id, opened_at, incident_id, transition), so a redelivered event
// leaves one row. Sites and SiteVerdicts are parallel arrays of the sites
// that voted and their verdicts (open only).
type IncidentRow struct {
	IncidentID   string     `ch:"incident_id"`
	Transition   string     `ch:"transition"`
	CheckID      string     `ch:"check_id"`
	CheckName    string     `ch:"check_name"`
	Customer     string     `ch:"customer"`
	Kind         string     `ch:"kind"`
	Severity     string     `ch:"severity"`
	Since        time.Time  `ch:"since"`
	SinceMS      uint64     `ch:"since_ms"`
	OpenedAt     time.Time  `ch:"opened_at"`
	OpenedAtMS   uint64     `ch:"opened_at_ms"`
	ResolvedAt   *time.Time `ch:"resolved_at"`
	ResolvedAtMS *uint64    `ch:"resolved_at_ms"`
	Reason       string     `ch:"reason"`
	Sites        []string   `ch:"sites"`
	SiteVerdicts []string   `ch:"site_verdicts"`
	Quorum       uint16     `ch:"quorum"`
	Eligible     uint16     `ch:"eligible"`
	Notify       uint8      `ch:"notify"`
	// SiteSummaries is parallel to Sites: the newest attempt's evidence
	// line of each site that voted (migration 5).
	SiteSummaries []string `ch:"site_summaries"`
	Silenced      string   `ch:"silenced"`
}

// NotificationRow is one row of notifications: one message to one contact
// for one incident transition. The table is a ReplacingMergeTree keyed by
// (check_id, incident_id, transition, contact, address) with at_ms as its
// version: the latest report of a notification wins.
type NotificationRow struct {
	IncidentID string    `ch:"incident_id"`
	CheckID    string    `ch:"check_id"`
	Customer   string    `ch:"customer"`
	Transition string    `ch:"transition"`
	Contact    string    `ch:"contact"`
	Address    string    `ch:"address"`
	Provider   string    `ch:"provider"`
	Outcome    string    `ch:"outcome"` // sent, failed, suppressed
	Reason     string    `ch:"reason"`  // why a message was suppressed
	ProviderID string    `ch:"provider_id"`
	Attempts   uint16    `ch:"attempts"`
	Error      string    `ch:"error"`
	Text       string    `ch:"text"`
	Segments   uint16    `ch:"segments"`
	At         time.Time `ch:"at"`
	AtMS       uint64    `ch:"at_ms"`
}

// Rows are the rows of one batch, per table.
type Rows struct {
	Results       []ResultRow
	Incidents     []IncidentRow
	Notifications []NotificationRow
}

// Len is the number of rows in all tables.
func (r *Rows) Len() int { return len(r.Results) + len(r.Incidents) + len(r.Notifications) }

// ResultRowFrom maps a check.result event to its row. Revision 0 (an event
// from before revisions existed) is stored as 1.
func ResultRowFrom(e events.CheckResult) ResultRow {
	r := ResultRow{
		TestID: e.TestID, CheckID: e.CheckID, Customer: e.Customer, Site: e.Site,
		Kind: e.Kind, Attempt: clampU16(e.Attempt), Status: e.Status,
		Revision: uint8(min(max(e.Revision, 1), 255)), Late: flag(e.Late),
		StartedAt: seconds(e.StartedAt), StartedAtMS: unixMS(e.StartedAt),
		FinishedAt: seconds(e.FinishedAt), FinishedAtMS: unixMS(e.FinishedAt),
		RTTMS: e.RTTMS, OutgoingLegMS: e.OutgoingLegMS, IncomingLegMS: e.IncomingLegMS,
		SkewMS: e.SkewMS, SkewSuspect: flag(e.SkewSuspect),
		ErrorClass: e.ErrorClass, Error: e.Error, Phase: e.Phase, Target: e.Target,
		DNSMS: e.Timings.DNSMS, ConnectMS: e.Timings.ConnectMS, GreetingMS: e.Timings.GreetingMS,
		TLSMS: e.Timings.TLSMS, CapabilitiesMS: e.Timings.CapsMS, AuthMS: e.Timings.AuthMS,
		TransferMS: e.Timings.TransferMS, MailboxMS: e.Timings.MailboxMS, TotalMS: e.Timings.TotalMS,
		PeerAddress: e.Timings.PeerAddress, TLSVersion: e.Timings.TLSVersion,
	}
	r.SentAt, r.SentAtMS = optionalTime(e.SentAt)
	r.ReflectedAt, r.ReflectedAtMS = optionalTime(e.ReflectedAt)
	r.ReceivedAt, r.ReceivedAtMS = optionalTime(e.ReceivedAt)
	if e.Reply != nil {
		code := clampU16(e.Reply.Code)
		r.SMTPCode = &code
		r.SMTPEnhanced, r.SMTPText = e.Reply.Enhanced, e.Reply.Text
	}
	if t := e.TLS; t != nil {
		if t.Version != "" {
			r.TLSVersion = t.Version
		}
		r.TLSCipherSuite = t.CipherSuite
		if !t.PeerNotAfter.IsZero() {
			na := seconds(t.PeerNotAfter)
			r.TLSPeerNotAfter = &na
		}
		days := int32(t.DaysLeft)
		match, verified := flag(t.HostnameMatch), flag(t.Verified)
		r.TLSDaysLeft, r.TLSHostnameMatch, r.TLSVerified = &days, &match, &verified
		r.TLSPeerSubject, r.TLSVerifyError = t.PeerSubject, t.VerifyError
	}
	withEvidence(&r, e)
	return r
}

// withEvidence fills the evidence columns of r from e (empty arrays, not
// NULL, when there is none: the columns are not Nullable).
func withEvidence(r *ResultRow, e events.CheckResult) {
	r.Summary, r.Warnings, r.Transcript, r.DKIM, r.ReturnPath = e.Summary, nonNil(e.Warnings), []string{}, e.DKIM, e.ReturnPath
	ev := e.Evidence
	if ev == nil {
		return
	}
	if s := ev.Submission; s != nil {
		r.FirstHop, r.QueueID, r.Transcript = s.Server, s.QueueID, nonNil(s.Transcript)
		if r.FirstHop == "" {
			r.FirstHop = s.Hop
		}
	}
	if ev.Deferred != nil {
		r.DeferredReply = ev.Deferred.String()
	}
	if b := ev.Bounce; b != nil {
		r.BounceAction, r.BounceStatus, r.BounceDiagnostic = b.Action, b.Status, b.Diagnostic
		r.BounceRemoteMTA, r.BounceReportingMTA = b.RemoteMTA, b.ReportingMTA
	}
	if len(ev.Dialogue) > 0 { // a service check's: no submission
		r.Transcript = ev.Dialogue
	}
	if len(ev.Hops) > 0 {
		if data, err := json.Marshal(ev.Hops); err == nil {
			r.Hops = string(data)
		}
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// IncidentOpenRow maps an incident.open event to its "open" row.
func IncidentOpenRow(e events.IncidentOpen) IncidentRow {
	r := IncidentRow{
		IncidentID: e.IncidentID, Transition: "open", CheckID: e.CheckID, CheckName: e.CheckName,
		Customer: e.Customer, Kind: e.Kind, Severity: e.Severity,
		Since: seconds(e.Since), SinceMS: unixMS(e.Since),
		OpenedAt: seconds(e.OpenedAt), OpenedAtMS: unixMS(e.OpenedAt),
		Reason: e.Reason, Quorum: clampU16(e.Quorum), Eligible: clampU16(e.Eligible),
		Notify: flag(e.Notify), Silenced: e.Silenced,
		Sites: []string{}, SiteVerdicts: []string{}, SiteSummaries: []string{},
	}
	for _, v := range e.Sites {
		r.Sites = append(r.Sites, v.Site)
		r.SiteVerdicts = append(r.SiteVerdicts, v.Verdict)
		summary := ""
		for _, a := range v.Attempts { // oldest first: the newest with a summary wins
			if a.Summary != "" {
				summary = a.Summary
			}
		}
		r.SiteSummaries = append(r.SiteSummaries, summary)
	}
	return r
}

// IncidentResolvedRow maps an incident.resolved event to its "resolved"
// row. It carries the incident's opened_at, so both rows of an incident
// share a partition and the time to resolve is resolved_at_ms -
// opened_at_ms.
func IncidentResolvedRow(e events.IncidentResolved) IncidentRow {
	resolved := seconds(e.ResolvedAt)
	resolvedMS := unixMS(e.ResolvedAt)
	return IncidentRow{
		IncidentID: e.IncidentID, Transition: "resolved", CheckID: e.CheckID, CheckName: e.CheckName,
		Customer: e.Customer, Kind: e.Kind, Severity: e.Severity,
		Since: seconds(e.Since), SinceMS: unixMS(e.Since),
		OpenedAt: seconds(e.OpenedAt), OpenedAtMS: unixMS(e.OpenedAt),
		ResolvedAt: &resolved, ResolvedAtMS: &resolvedMS,
		Reason: e.Reason, Notify: flag(e.Notify),
		Sites: []string{}, SiteVerdicts: []string{},
	}
}

// NotificationRowFrom maps a notification.sent / notification.failed event
// to its row.
func NotificationRowFrom(e events.Notification) NotificationRow {
	return NotificationRow{
		IncidentID: e.IncidentID, CheckID: e.CheckID, Customer: e.Customer, Transition: e.Transition,
		Contact: e.Contact, Address: e.Address, Provider: e.Provider, Outcome: e.Outcome, Reason: e.Reason,
		ProviderID: e.ProviderID, Attempts: clampU16(e.Attempts), Error: e.Error, Text: e.Text,
		Segments: clampU16(e.Segments), At: seconds(e.At), AtMS: unixMS(e.At),
	}
}

// seconds truncates t to whole seconds in UTC (a DateTime column, which
// holds unix seconds from 1970 to 2106); earlier times, such as a zero
// time.Time, are stored as 1970-01-01 00:00:00.
func seconds(t time.Time) time.Time { return time.Unix(max(t.Unix(), 0), 0).UTC() }

// unixMS is t in unix milliseconds; times before 1970 are stored as 0.
func unixMS(t time.Time) uint64 { return uint64(max(t.UnixMilli(), 0)) }

func optionalTime(t *time.Time) (*time.Time, *uint64) {
	if t == nil || t.IsZero() {
		return nil, nil
	}
	s, ms := seconds(*t), unixMS(*t)
	return &s, &ms
}

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func clampU16(n int) uint16 { return uint16(min(max(n, 0), 65535)) }
