package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// natsExporterMetrics are the metrics of the NATS chart's exporter sidecar
// (prometheus-nats-exporter with -jsz=all and -prefix=nats,
// dependencies/nats/values.yaml) that alerts may use, with their labels
// stream_name and consumer_name.
var natsExporterMetrics = map[string]bool{
	"nats_consumer_num_pending":     true,
	"nats_consumer_num_ack_pending": true,
	"nats_consumer_num_redelivered": true,
	"nats_consumer_num_waiting":     true,
	"nats_stream_total_messages":    true,
	"nats_stream_total_bytes":       true,
}

// prometheusSeries are series Prometheus itself makes.
var prometheusSeries = map[string]bool{"up": true}

// serviceMetrics returns every metric name registered by the Go code of
// the services and the platform (the "scout_..." literals).
func serviceMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	lit := regexp.MustCompile(`"(scout_[a-z0-9_]+)"`)
	for _, root := range []string{"../services", "../internal"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range lit.FindAllStringSubmatch(string(data), -1) {
				names[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d scout_ metrics in the Go code", len(names))
	}
	return names
}

// TestAlertsUseExistingMetrics: the production alerts cover the monitor's
// own failure modes (issue 8) and name only metrics that exist: the
// services' (found in their code), the NATS exporter's, Prometheus's.
func TestAlertsUseExistingMetrics(t *testing.T) {
	r := render(t, filepath.Join(k8sDir, "overlays", "prod"))
	rules := r.all("PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules in prod, want 1", len(rules))
	}
	known := serviceMetrics(t)
	series := regexp.MustCompile(`\b(scout_[a-z0-9_]+|nats_[a-z0-9_]+|up)\b\s*[{\[)]`)
	var exprs []string
	seen := map[string]bool{}
	for _, g := range rules[0].obj.(*monitoringv1.PrometheusRule).Spec.Groups {
		for _, rule := range g.Rules {
			expr := rule.Expr.String()
			exprs = append(exprs, expr)
			if rule.Alert == "" || seen[rule.Alert] {
				t.Errorf("rule %q: every rule is an alert with a unique name", rule.Alert)
			}
			seen[rule.Alert] = true
			if sev := rule.Labels["severity"]; sev != "critical" && sev != "warning" {
				t.Errorf("alert %s: severity %q, want critical or warning", rule.Alert, sev)
			}
			if rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
				t.Errorf("alert %s: summary and description annotations are required", rule.Alert)
			}
			if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
				t.Errorf("alert %s: unbalanced expression %q", rule.Alert, expr)
			}
			used := 0
			for _, m := range series.FindAllStringSubmatch(expr, -1) {
				name := m[1]
				used++
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
				if !known[name] && !known[base] && !natsExporterMetrics[name] && !prometheusSeries[name] {
					t.Errorf("alert %s uses %s, which no service registers and the NATS exporter does not export", rule.Alert, name)
				}
			}
			if used == 0 {
				t.Errorf("alert %s: no metric found in %q", rule.Alert, expr)
			}
		}
	}
	all := strings.Join(exprs, "\n")
	for what, pattern := range map[string]string{
		"probes cannot be submitted": `scout_sender_submission_up\{delivery="relay"\}\) == 0`,
		"consumer naks":              `scout_consumer_messages_total\{outcome="nak"\}`,
		"consumer lag":               `nats_consumer_num_pending\{stream_name="SCOUT"\}`,
		"ClickHouse backlog":         `scout_recorder_insert_failures_total|consumer_name="recorder"`,
		"no results from a site":     `scout_evaluator_site_last_result_timestamp_seconds`,
		"monitor unhealthy":          `scout_evaluator_monitor_healthy\) == 0`,
	} {
		if !regexp.MustCompile(pattern).MatchString(all) {
			t.Errorf("no alert for %s (%s)", what, pattern)
		}
	}
}
