package recorder_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/services/recorder"
)

func TestExpand(t *testing.T) {
	from := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	got, err := recorder.Expand("WHERE check_id = '${check}' AND started_at >= $__fromTime AND started_at < $__toTime",
		recorder.QueryParams{Check: "acme-roundtrip", From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	want := "WHERE check_id = 'acme-roundtrip' AND started_at >= toDateTime(1795305600) AND started_at < toDateTime(1795910400)"
	if got != want {
		t.Errorf("Expand:\n got %s\nwant %s", got, want)
	}
	for _, tt := range []struct{ query, check, wantErr string }{
		{"'${check}'", "x' OR 1=1 --", `check id "x' OR 1=1 --" is not`},
		{"'${check}'", "", `check id "" is not`},
		{"$__timeFilter(started_at)", "a", "unknown placeholder $__timeFilter"},
		{"${site}", "a", "unknown placeholder ${site}"},
	} {
		if _, err := recorder.Expand(tt.query, recorder.QueryParams{Check: tt.check}); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Expand(%q, %q) = %v, want %q", tt.query, tt.check, err, tt.wantErr)
		}
	}
	// Queries without ${check} do not need one.
	for _, name := range []string{recorder.QueryMonthlyIncidents, recorder.QuerySkewOutliers, recorder.QueryChecks} {
		text, err := recorder.QueryText(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := recorder.Expand(text, recorder.QueryParams{From: from, To: to}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestQueriesDocumentedAndDashboarded: docs/analytics.md prints every
// query exactly as the code runs it, and the Grafana dashboard runs exactly
// these queries (in its panels, variables and annotations).
func TestQueriesDocumentedAndDashboarded(t *testing.T) {
	doc, err := os.ReadFile("../../docs/analytics.md")
	if err != nil {
		t.Fatal(err)
	}
	dash, err := os.ReadFile("../../deploy/grafana/email-scout.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RawSQL string `json:"rawSql"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
				Query      any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Target struct {
					RawSQL string `json:"rawSql"`
				} `json:"target"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	dashboardSQL := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.RawSQL == "" {
				continue
			}
			dashboardSQL[strings.TrimSpace(tg.RawSQL)] = true
		}
	}
	for _, a := range d.Annotations.List {
		if a.Target.RawSQL != "" {
			dashboardSQL[strings.TrimSpace(a.Target.RawSQL)] = true
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			dashboardSQL[strings.TrimSpace(v.Definition)] = true
		}
	}
	documented := map[string]bool{}
	for _, name := range recorder.QueryNames {
		text, err := recorder.QueryText(name)
		if err != nil {
			t.Fatal(err)
		}
		q := strings.TrimSpace(text)
		documented[q] = true
		if !strings.Contains(string(doc), "```sql\n"+q+"\n```") {
			t.Errorf("docs/analytics.md does not print query %s exactly as queries/%s.sql", name, name)
		}
		if !dashboardSQL[q] {
			t.Errorf("the dashboard does not run query %s", name)
		}
	}
	for q := range dashboardSQL {
		if !documented[q] {
			t.Errorf("the dashboard runs an undocumented query:\n%s", q)
		}
	}
}
