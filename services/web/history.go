package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// history is where a check page's plots and past incidents come from when
// ClickHouse is configured (otherwise: the results and incidents in
// memory).
type history interface {
	// series returns check's times per site between from and to: the median
	// of each bucket, in milliseconds (round trips: rtt_ms; service checks:
	// total_ms), oldest first.
	series(ctx context.Context, check, kind string, from, to time.Time, bucket time.Duration) ([]series, error)
	// incidents returns up to limit incidents of check, newest first.
	incidents(ctx context.Context, check string, limit int) ([]Incident, error)
}

// series is one site's line of a plot.
type series struct {
	Site   string
	Points []point
}

// point is one plotted value: a time and milliseconds.
type point struct {
	T  time.Time
	MS float64
}

// memorySeries is the plot from the recent results in memory: every
// attempt with a time, between from and to, per site in the order of
// sites.
func memorySeries(sites []string, kind string, recent map[string][]attempt, from, to time.Time) []series {
	out := make([]series, 0, len(sites))
	for _, site := range sites {
		s := series{Site: site}
		for _, a := range recent[site] {
			if a.StartedAt.Before(from) || !a.StartedAt.Before(to) {
				continue
			}
			if v, ok := a.value(kind); ok {
				s.Points = append(s.Points, point{T: a.StartedAt, MS: v})
			}
		}
		out = append(out, s)
	}
	return out
}

// clickHouse queries ClickHouse's HTTP interface (GET, so read-only;
// FORMAT JSON) with plain net/http: the web module does not link
// clickhouse-go.
type clickHouse struct {
	base     *url.URL // with ?database=...; user in its userinfo
	password Secret
	client   *http.Client
}

func newClickHouse(raw string, password Secret, client *http.Client) (*clickHouse, error) {
	u, err := url.Parse(raw)
	if err != nil { // not err itself: it quotes the URL
		return nil, errors.New("SCOUT_CLICKHOUSE_HTTP_URL is not a URL")
	}
	return &clickHouse{base: u, password: password, client: client}, nil
}

// query runs sql (without FORMAT) and decodes the rows of its JSON answer
// into rows (a pointer to a slice of structs with json tags). ClickHouse's
// error text is returned as the error.
func (c *clickHouse) query(ctx context.Context, sql string, rows any) error {
	u := *c.base
	u.User = nil
	q := u.Query()
	q.Set("query", sql+" FORMAT JSON")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if c.base.User != nil {
		req.SetBasicAuth(c.base.User.Username(), c.password.Reveal())
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("clickhouse: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return fmt.Errorf("clickhouse: HTTP %d: %s", resp.StatusCode, msg)
	}
	var answer struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("clickhouse: answer is not JSON: %w", err)
	}
	if len(answer.Data) == 0 {
		return errors.New("clickhouse: answer has no data")
	}
	return json.Unmarshal(answer.Data, rows)
}

func (c *clickHouse) series(ctx context.Context, check, kind string, from, to time.Time, bucket time.Duration) ([]series, error) {
	if !events.ValidToken(check) { // also what makes it safe in the quotes below
		return nil, fmt.Errorf("check id %q is not a valid token", check)
	}
	col, cond := "rtt_ms", "rtt_ms IS NOT NULL"
	if kind != events.KindRoundTrip {
		col, cond = "total_ms", "total_ms > 0 AND status != 'monitor_error'"
	}
	b := max(int64(bucket/time.Second), 1)
	sql := fmt.Sprintf(`SELECT site, toUInt32(intDiv(toUInt32(started_at), %d) * %d) AS t, toFloat64(quantile(0.5)(%s)) AS median_ms
FROM (SELECT site, started_at, status, rtt_ms, total_ms FROM check_results FINAL
      WHERE check_id = '%s' AND started_at >= toDateTime(%d) AND started_at < toDateTime(%d))
WHERE %s
GROUP BY site, t ORDER BY site, t`, b, b, col, check, from.Unix(), to.Unix(), cond)
	var rows []struct {
		Site string  `json:"site"`
		T    int64   `json:"t"`
		MS   float64 `json:"median_ms"`
	}
	if err := c.query(ctx, sql, &rows); err != nil {
		return nil, err
	}
	var out []series
	for _, r := range rows {
		if len(out) == 0 || out[len(out)-1].Site != r.Site {
			out = append(out, series{Site: r.Site})
		}
		s := &out[len(out)-1]
		s.Points = append(s.Points, point{T: time.Unix(r.T, 0).UTC(), MS: r.MS})
	}
	return out, nil
}

func (c *clickHouse) incidents(ctx context.Context, check string, limit int) ([]Incident, error) {
	if !events.ValidToken(check) {
		return nil, fmt.Errorf("check id %q is not a valid token", check)
	}
	// The aliases differ from the column names: ClickHouse 18.16 would
	// read a column name in a later expression as the alias.
	sql := fmt.Sprintf(`SELECT incident_id, toString(any(severity)) AS sev, any(customer) AS cust,
    anyIf(reason, transition = 'open') AS open_reason, anyIf(reason, transition = 'resolved') AS close_reason,
    toFloat64(any(since_ms)) AS since_t, toFloat64(any(opened_at_ms)) AS opened_t,
    toFloat64(maxIf(resolved_at_ms, transition = 'resolved')) AS resolved_t,
    toUInt8(countIf(transition = 'resolved') > 0) AS is_resolved
FROM incidents FINAL WHERE check_id = '%s'
GROUP BY incident_id ORDER BY opened_t DESC LIMIT %d`, check, max(limit, 1))
	var rows []struct {
		ID         string   `json:"incident_id"`
		Severity   string   `json:"sev"`
		Customer   string   `json:"cust"`
		Reason     string   `json:"open_reason"`
		Resolution string   `json:"close_reason"`
		SinceMS    float64  `json:"since_t"`
		OpenedMS   float64  `json:"opened_t"`
		ResolvedMS *float64 `json:"resolved_t"`
		Resolved   int      `json:"is_resolved"`
	}
	if err := c.query(ctx, sql, &rows); err != nil {
		return nil, err
	}
	out := make([]Incident, 0, len(rows))
	for _, r := range rows {
		in := Incident{ID: r.ID, CheckID: check, Customer: r.Customer, Severity: r.Severity, Reason: r.Reason,
			Since: msTime(r.SinceMS), OpenedAt: msTime(r.OpenedMS), Resolution: r.Resolution}
		if r.Resolved > 0 && r.ResolvedMS != nil {
			in.ResolvedAt = ptr(msTime(*r.ResolvedMS))
		}
		out = append(out, in)
	}
	return out, nil
}

func msTime(ms float64) time.Time { return time.UnixMilli(int64(ms)).UTC() }
