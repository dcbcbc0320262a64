package deploy

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const (
	grafanaDir = "grafana"
	// clickHouseDatasource is the plugin id of Grafana's ClickHouse data
	// source (grafana-clickhouse-datasource).
	clickHouseDatasource = "grafana-clickhouse-datasource"
	// healthDashboard is the monitor-health dashboard on Prometheus.
	healthDashboard = "email-scout-health.json"
)

// The plugin's own spellings, as its v4 saves a query (grafana/
// clickhouse-datasource, src/types/queryBuilder.ts: enum QueryType {
// Table = 'table', Logs = 'logs', TimeSeries = 'timeseries', Traces =
// 'traces' }; src/types/sql.ts: enum EditorType { SQL = 'sql', Builder =
// 'builder' }); the format is sqlds' FormatQueryOption: 0 time series, 1
// table, 2 logs, 3 traces. A query without pluginVersion >= 4.0.0 is taken
// for a v3 one and migrated (src/data/migration.ts, isV3CHQuery).
var (
	clickHouseQueryTypes  = map[string]int{"timeseries": 0, "table": 1, "logs": 2, "traces": 3}
	clickHouseEditorTypes = []string{"sql", "builder"}
)

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashPanel struct {
	ID         int          `json:"id"`
	Type       string       `json:"type"`
	Title      string       `json:"title"`
	Datasource *dsRef       `json:"datasource"`
	Panels     []dashPanel  `json:"panels"` // a collapsed row's
	Targets    []dashTarget `json:"targets"`
}

type dashTarget struct {
	Datasource *dsRef  `json:"datasource"`
	RefID      string  `json:"refId"`
	QueryType  *string `json:"queryType"`
	EditorType *string `json:"editorType"`
	Format     *int    `json:"format"`
	Version    string  `json:"pluginVersion"`
	RawSQL     string  `json:"rawSql"`
	Expr       string  `json:"expr"`
}

type dashboard struct {
	UID        string      `json:"uid"`
	Title      string      `json:"title"`
	Panels     []dashPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *dsRef          `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string      `json:"name"`
			Datasource *dsRef      `json:"datasource"`
			Target     *dashTarget `json:"target"`
			Filter     *struct {
				Exclude bool  `json:"exclude"`
				IDs     []int `json:"ids"`
			} `json:"filter"`
		} `json:"list"`
	} `json:"annotations"`
}

// allPanels flattens rows.
func (d dashboard) allPanels() []dashPanel {
	var out []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// dashboards reads and parses every deploy/grafana/*.json.
func dashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(grafanaDir, "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("dashboards in %s: %v %v", grafanaDir, files, err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(readFile(t, f)))
		if err := dec.Decode(&d); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		out[filepath.Base(f)] = d
	}
	return out
}

// TestDashboardsShipped: every dashboard JSON in deploy/grafana is, byte
// for byte, the data of a ConfigMap of the prod overlay that Grafana's
// dashboard sidecar loads (label grafana_dashboard "1", fixed name).
func TestDashboardsShipped(t *testing.T) {
	r := render(t, filepath.Join(k8sDir, "overlays", "prod"))
	for file := range dashboards(t) {
		want := readFile(t, filepath.Join(grafanaDir, file))
		var found []string
		for _, o := range r.all("ConfigMap") {
			cm := o.obj.(*corev1.ConfigMap)
			data, ok := cm.Data[file]
			if !ok {
				continue
			}
			found = append(found, o.name)
			if data != want {
				t.Errorf("ConfigMap %s: %s differs from %s", o.name, file, filepath.Join(grafanaDir, file))
			}
			if cm.Labels["grafana_dashboard"] != "1" {
				t.Errorf("ConfigMap %s: label grafana_dashboard=%q, want \"1\" (the sidecar's label)", o.name, cm.Labels["grafana_dashboard"])
			}
			if cm.Annotations["grafana_folder"] == "" {
				t.Errorf("ConfigMap %s: no annotation grafana_folder", o.name)
			}
			if !strings.HasPrefix(o.name, "scout-dashboard-") || strings.Count(o.name, "-") != 2 {
				t.Errorf("ConfigMap %s: want a fixed name scout-dashboard-<name> (disableNameSuffixHash)", o.name)
			}
		}
		if len(found) != 1 {
			t.Errorf("dashboard %s is in %d ConfigMaps of the prod overlay (%v), want 1", file, len(found), found)
		}
	}
}

// TestDashboardsDatasources: each dashboard parses, has a unique uid, a
// data source variable ${datasource}, and every panel and query names a
// data source; ClickHouse queries use the plugin's query and editor types.
func TestDashboardsDatasources(t *testing.T) {
	uids := map[string]string{}
	for file, d := range dashboards(t) {
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid %q, title %q", file, d.UID, d.Title)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s have the same uid %s", file, other, d.UID)
		}
		uids[d.UID] = file
		dsType := ""
		for _, v := range d.Templating.List {
			if v.Name == "datasource" && v.Type == "datasource" {
				_ = json.Unmarshal(v.Query, &dsType)
			}
		}
		if dsType == "" {
			t.Errorf("%s: no variable datasource of type datasource", file)
			continue
		}
		check := func(where string, ds *dsRef) {
			if ds == nil || ds.UID != "${datasource}" || ds.Type != dsType {
				t.Errorf("%s: %s: datasource %+v, want {type: %s, uid: ${datasource}}", file, where, ds, dsType)
			}
		}
		checkTarget := func(where string, tg dashTarget) {
			check(where, tg.Datasource)
			if dsType == clickHouseDatasource {
				checkClickHouseTarget(t, file, where, tg)
			}
		}
		for _, v := range d.Templating.List {
			if v.Type == "query" {
				check("variable "+v.Name, v.Datasource)
			}
		}
		panels := d.allPanels()
		if len(panels) == 0 {
			t.Errorf("%s: no panels", file)
		}
		ids := map[int]bool{}
		for _, p := range panels {
			where := "panel " + p.Title
			if ids[p.ID] {
				t.Errorf("%s: %s: duplicate id %d", file, where, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			check(where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s: %s: no queries", file, where)
			}
			for _, tg := range p.Targets {
				checkTarget(where+" query "+tg.RefID, tg)
			}
		}
		for _, a := range d.Annotations.List {
			if a.Target == nil {
				t.Errorf("%s: annotation %s: no query", file, a.Name)
				continue
			}
			checkTarget("annotation "+a.Name, *a.Target)
			if a.Filter != nil {
				for _, id := range a.Filter.IDs {
					if !ids[id] {
						t.Errorf("%s: annotation %s: filter names panel %d, which does not exist", file, a.Name, id)
					}
				}
			}
		}
	}
}

// TestHistoryDashboardIncidentAnnotations: the check's incidents are
// annotations on the round-trip panel (the first, id 1).
func TestHistoryDashboardIncidentAnnotations(t *testing.T) {
	d := dashboards(t)["email-scout.json"]
	for _, a := range d.Annotations.List {
		if a.Target != nil && strings.Contains(a.Target.RawSQL, "FROM incidents") && a.Filter != nil && !a.Filter.Exclude && slices.Contains(a.Filter.IDs, 1) {
			return
		}
	}
	t.Errorf("no annotation from the incidents table on panel 1 (round-trip time): %+v", d.Annotations.List)
}

// checkClickHouseTarget checks one query of the ClickHouse data source:
// the plugin's v4 spellings, a format that agrees with the query type,
// raw SQL.
func checkClickHouseTarget(t *testing.T, file, where string, tg dashTarget) {
	t.Helper()
	if tg.QueryType == nil || tg.EditorType == nil || tg.Format == nil {
		t.Errorf("%s: %s: queryType, editorType and format are required", file, where)
		return
	}
	if major, _, _ := strings.Cut(tg.Version, "."); major < "4" || len(major) != 1 {
		t.Errorf("%s: %s: pluginVersion %q: the plugin takes a query without 4.x for a v3 one and rewrites it", file, where, tg.Version)
	}
	format, ok := clickHouseQueryTypes[*tg.QueryType]
	if !ok {
		t.Errorf("%s: %s: queryType %q is not one of the plugin's (table, timeseries, logs, traces)", file, where, *tg.QueryType)
	} else if *tg.Format != format {
		t.Errorf("%s: %s: format %d, queryType %s is format %d", file, where, *tg.Format, *tg.QueryType, format)
	}
	if !slices.Contains(clickHouseEditorTypes, *tg.EditorType) {
		t.Errorf("%s: %s: editorType %q is not one of the plugin's %v", file, where, *tg.EditorType, clickHouseEditorTypes)
	}
	if *tg.EditorType == "sql" && strings.TrimSpace(tg.RawSQL) == "" {
		t.Errorf("%s: %s: no rawSql", file, where)
	}
}

var (
	promLabelMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promGrouping      = regexp.MustCompile(`\b(by|without)\s*\([^)]*\)`)
	promMetricName    = regexp.MustCompile(`\b(scout_[a-z0-9_]+|nats_[a-z0-9_]+|up)\b`)
)

// promMetrics returns the metric names a PromQL expression (or a
// label_values() variable query) uses; label names in matchers and
// groupings are not metrics.
func promMetrics(expr string) []string {
	expr = promLabelMatchers.ReplaceAllString(expr, "{}")
	expr = promGrouping.ReplaceAllString(expr, "")
	expr = regexp.MustCompile(`,\s*[a-z_]+\s*\)`).ReplaceAllString(expr, ")") // label_values(metric, label)
	var out []string
	for _, m := range promMetricName.FindAllStringSubmatch(expr, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestHealthDashboardMetrics: the monitor-health dashboard queries only
// metrics that exist (the scout_* literals of the services' Go code, the
// NATS exporter's, Prometheus's up) and covers what it is for.
func TestHealthDashboardMetrics(t *testing.T) {
	d, ok := dashboards(t)[healthDashboard]
	if !ok {
		t.Fatalf("no %s", healthDashboard)
	}
	known := serviceMetrics(t)
	var exprs []string
	siteVar := false
	for _, v := range d.Templating.List {
		if v.Name == "site" && v.Type == "query" {
			siteVar = true
			exprs = append(exprs, v.Definition)
		}
	}
	if !siteVar {
		t.Error("no variable site")
	}
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %s query %s: no expr", p.Title, tg.RefID)
			}
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %s query %s: unbalanced expression %q", p.Title, tg.RefID, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names := promMetrics(e)
		if len(names) == 0 {
			t.Errorf("no metric found in %q", e)
		}
		for _, name := range names {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if !known[name] && !known[base] && !natsExporterMetrics[name] && !prometheusSeries[name] {
				t.Errorf("%s uses %s, which no service registers and the NATS exporter does not export", healthDashboard, name)
			}
			used[base] = true
		}
	}
	for what, metric := range map[string]string{
		"sender up per site":    "scout_sender_submission_up",
		"pods up":               "up",
		"consumer lag":          "nats_consumer_num_pending",
		"redeliveries":          "nats_consumer_num_redelivered",
		"terms":                 "scout_consumer_messages_total",
		"notifier failures":     "scout_notifier_messages_total",
		"receiver returns":      "scout_receiver_returns_total",
		"NATS stream":           "nats_stream_total_messages",
		"a site's monitor":      "scout_evaluator_monitor_healthy",
		"service checks":        "scout_evaluator_results_total",
		"ClickHouse insertions": "scout_recorder_insert_failures_total",
	} {
		if !used[metric] {
			t.Errorf("%s: no panel on %s (%s)", healthDashboard, what, metric)
		}
	}
	// The variables the queries use exist.
	for _, e := range exprs {
		for _, m := range regexp.MustCompile(`\$\{?([a-z_]+)\}?`).FindAllStringSubmatch(e, -1) {
			if m[1] != "site" && m[1] != "__rate_interval" && m[1] != "__interval" {
				t.Errorf("%s: unknown variable %s in %q", healthDashboard, m[0], e)
			}
		}
	}
}
