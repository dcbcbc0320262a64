package recorder

import (
	"context"
	"embed"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// The analysts' queries, exactly as docs/analytics.md prints them and the
// Grafana dashboard (deploy/grafana/email-scout.json) runs them.
//
//go:embed queries/*.sql
var queryFiles embed.FS

// Names of the documented queries (files queries/<name>.sql).
const (
	QueryHourlyRTT        = "hourly_rtt"
	QueryDailySlowShare   = "daily_slow_share"
	QueryMonthlyIncidents = "monthly_incidents"
	QuerySkewOutliers     = "skew_outliers"
	QueryChecks           = "checks"
	// Service checks (kinds smtp, imap, pop3) and their certificates.
	QueryHourlyService = "hourly_service"
	QueryCertificates  = "certificates"
	// The incidents of a check as Grafana annotations (time, timeEnd, text).
	QueryIncidentAnnotations = "incident_annotations"
	// Failed and timed-out attempts with their evidence (migration 5).
	QueryFailedAttempts = "failed_attempts"
)

// QueryNames lists every documented query.
var QueryNames = []string{QueryHourlyRTT, QueryDailySlowShare, QueryMonthlyIncidents, QuerySkewOutliers, QueryChecks,
	QueryHourlyService, QueryCertificates, QueryIncidentAnnotations, QueryFailedAttempts}

// QueryText returns the text of a documented query, with its placeholders
// (see Expand).
func QueryText(name string) (string, error) {
	b, err := queryFiles.ReadFile("queries/" + name + ".sql")
	if err != nil {
		return "", fmt.Errorf("query %q: %w", name, err)
	}
	return string(b), nil
}

// QueryParams fill a query's placeholders.
type QueryParams struct {
	Check string    // ${check}: a check id (events.ValidToken)
	From  time.Time // $__fromTime: start of the range (inclusive)
	To    time.Time // $__toTime: end of the range (exclusive)
}

var placeholder = regexp.MustCompile(`\$\{[a-z_]+\}|\$__[A-Za-z_]+`)

// Expand replaces the placeholders of a documented query the way the
// Grafana ClickHouse data source (grafana-clickhouse-datasource) does:
// $__fromTime and $__toTime become toDateTime(<unix seconds>) and ${check}
// the check id. The check id must be a valid token ([a-z0-9_-]), which also
// makes it safe inside the query's quotes. Unknown placeholders are an
// error.
func Expand(query string, p QueryParams) (string, error) {
	var errs []string
	out := placeholder.ReplaceAllStringFunc(query, func(ph string) string {
		switch ph {
		case "$__fromTime":
			return "toDateTime(" + strconv.FormatInt(p.From.Unix(), 10) + ")"
		case "$__toTime":
			return "toDateTime(" + strconv.FormatInt(p.To.Unix(), 10) + ")"
		case "${check}":
			if !events.ValidToken(p.Check) {
				errs = append(errs, fmt.Sprintf("check id %q is not [a-z0-9_-]{1,63}", p.Check))
			}
			return p.Check
		}
		errs = append(errs, fmt.Sprintf("unknown placeholder %s", ph))
		return ph
	})
	if len(errs) > 0 {
		return "", fmt.Errorf("expand query: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// collect runs the documented query name with p and scans each row into
// a T through the pointers fields returns.
func collect[T any](ctx context.Context, s *Store, name string, p QueryParams, fields func(*T) []any) ([]T, error) {
	text, err := QueryText(name)
	if err != nil {
		return nil, err
	}
	q, err := Expand(text, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var r T
		if err := rows.Scan(fields(&r)...); err != nil {
			return nil, fmt.Errorf("%s: scan: %w", name, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// HourlyRTT is one row of the hourly round-trip percentiles.
type HourlyRTT struct {
	Hour     time.Time // start of the hour (server time zone)
	Site     string
	Attempts uint64 // attempts started in the hour
	Returned uint64 // attempts whose probe came back (late returns included)
	// P50MS, P90MS and P99MS are quantileExact of rtt_ms over the returned
	// probes (the element at index floor(level * n) of the sorted values);
	// nil when none returned.
	P50MS, P90MS, P99MS *int64
}

// HourlyRTT runs the documented hourly percentiles query (QueryHourlyRTT):
// round-trip time per hour and site of one check, attempts started in
// [from, to).
func (s *Store) HourlyRTT(ctx context.Context, check string, from, to time.Time) ([]HourlyRTT, error) {
	return collect(ctx, s, QueryHourlyRTT, QueryParams{Check: check, From: from, To: to}, func(r *HourlyRTT) []any {
		return []any{&r.Hour, &r.Site, &r.Attempts, &r.Returned, &r.P50MS, &r.P90MS, &r.P99MS}
	})
}

// DailySlowShare is one row of the slow share per day.
type DailySlowShare struct {
	Day       time.Time
	Attempts  uint64  // round-trip attempts, monitor errors excluded
	Slow      uint64  // status slow
	Timeouts  uint64  // status timeout
	SlowShare float64 // Slow / Attempts, rounded to 4 decimals
}

// DailySlowShare runs the documented slow share query (QueryDailySlowShare)
// for one check, attempts started in [from, to).
func (s *Store) DailySlowShare(ctx context.Context, check string, from, to time.Time) ([]DailySlowShare, error) {
	return collect(ctx, s, QueryDailySlowShare, QueryParams{Check: check, From: from, To: to}, func(r *DailySlowShare) []any {
		return []any{&r.Day, &r.Attempts, &r.Slow, &r.Timeouts, &r.SlowShare}
	})
}

// MonthlyIncidents is one row of the incidents per month.
type MonthlyIncidents struct {
	Month     time.Time // first day of the month of opened_at
	CheckID   string
	Severity  string
	Incidents uint64 // opened in the month
	Resolved  uint64 // of which resolved
	// AvgResolveS and MaxResolveS are the time from open to resolved in
	// seconds over the resolved incidents; nil when none is resolved.
	AvgResolveS, MaxResolveS *float64
}

// MonthlyIncidents runs the documented incidents query
// (QueryMonthlyIncidents) for incidents opened in [from, to).
func (s *Store) MonthlyIncidents(ctx context.Context, from, to time.Time) ([]MonthlyIncidents, error) {
	return collect(ctx, s, QueryMonthlyIncidents, QueryParams{From: from, To: to}, func(r *MonthlyIncidents) []any {
		return []any{&r.Month, &r.CheckID, &r.Severity, &r.Incidents, &r.Resolved, &r.AvgResolveS, &r.MaxResolveS}
	})
}

// SkewOutlier is one attempt whose clock skew estimate is 60 s or more
// either way, or that the evaluator marked skew_suspect.
type SkewOutlier struct {
	StartedAt     time.Time
	CheckID       string
	Site          string
	TestID        string
	SkewMS        *int64
	OutgoingLegMS *int64
	IncomingLegMS *int64
	SkewSuspect   uint8
}

// SkewOutliers runs the documented skew outliers query (QuerySkewOutliers)
// for attempts started in [from, to), at most 1000 rows.
func (s *Store) SkewOutliers(ctx context.Context, from, to time.Time) ([]SkewOutlier, error) {
	return collect(ctx, s, QuerySkewOutliers, QueryParams{From: from, To: to}, func(r *SkewOutlier) []any {
		return []any{&r.StartedAt, &r.CheckID, &r.Site, &r.TestID, &r.SkewMS, &r.OutgoingLegMS, &r.IncomingLegMS, &r.SkewSuspect}
	})
}

// HourlyService is one row of the hourly service-check summary.
type HourlyService struct {
	Hour   time.Time
	Site   string
	Checks uint64 // attempts started in the hour, monitor errors excluded
	Failed uint64 // status failed or timeout
	Warned uint64 // status slow or degraded
	// P50TotalMS and P90TotalMS are quantileExact of total_ms (connect to
	// the last answer, milliseconds) over the attempts.
	P50TotalMS, P90TotalMS float64
}

// HourlyService runs the documented service-check query
// (QueryHourlyService) for one check, attempts started in [from, to).
func (s *Store) HourlyService(ctx context.Context, check string, from, to time.Time) ([]HourlyService, error) {
	return collect(ctx, s, QueryHourlyService, QueryParams{Check: check, From: from, To: to}, func(r *HourlyService) []any {
		return []any{&r.Hour, &r.Site, &r.Checks, &r.Failed, &r.Warned, &r.P50TotalMS, &r.P90TotalMS}
	})
}

// Certificate is the newest certificate a service check saw at a site.
type Certificate struct {
	CheckID, Site string
	LastSeen      time.Time  // start of the newest attempt with a certificate
	NotAfter      *time.Time // the peer certificate's expiry
	DaysLeft      *int32     // whole days from that attempt to NotAfter
	Verified      *uint8     // 1: the chain verified against the roots
	HostnameMatch *uint8     // 1: the certificate names the host
	Subject       string
}

// Certificates runs the documented certificates query (QueryCertificates):
// per service check and site, the certificate of the newest attempt in
// [from, to) that had one, soonest expiry first.
func (s *Store) Certificates(ctx context.Context, from, to time.Time) ([]Certificate, error) {
	return collect(ctx, s, QueryCertificates, QueryParams{From: from, To: to}, func(r *Certificate) []any {
		return []any{&r.CheckID, &r.Site, &r.LastSeen, &r.NotAfter, &r.DaysLeft, &r.Verified, &r.HostnameMatch, &r.Subject}
	})
}

// IncidentAnnotation is one incident of a check as a Grafana annotation.
type IncidentAnnotation struct {
	Time       time.Time  // opened_at
	TimeEnd    *time.Time // resolved_at; nil while open
	Text       string     // "<severity>: <open reason>[ (resolved: <reason>)]"
	IncidentID string
}

// IncidentAnnotations runs the documented annotations query
// (QueryIncidentAnnotations): incidents of one check opened in [from, to).
func (s *Store) IncidentAnnotations(ctx context.Context, check string, from, to time.Time) ([]IncidentAnnotation, error) {
	return collect(ctx, s, QueryIncidentAnnotations, QueryParams{Check: check, From: from, To: to}, func(r *IncidentAnnotation) []any {
		return []any{&r.Time, &r.TimeEnd, &r.Text, &r.IncidentID}
	})
}
