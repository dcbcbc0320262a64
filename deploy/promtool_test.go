//go:build promtool

package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

// alertTests are promtool's unit tests of the shipped alerts
// (promtool test rules; Prometheus docs, "Unit testing for rules").
const alertTests = "prometheus/alerts_test.yaml"

// TestAlertsWithPromtool runs Prometheus's own promtool (Debian's
// prometheus package, fetched by scripts/promtool.sh; $PROMTOOL or PATH) on the alerts of the
// rendered prod overlay: `promtool check rules` parses every expression,
// `promtool test rules` evaluates them over the series of
// prometheus/alerts_test.yaml. Every alert must have a case where it fires
// and one where it does not.
func TestAlertsWithPromtool(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		var err error
		if promtool, err = exec.LookPath("promtool"); err != nil {
			t.Fatal("no promtool: set PROMTOOL=$(scripts/promtool.sh) (scripts/test.sh alerts does)")
		}
	}
	r := render(t, filepath.Join(k8sDir, "overlays", "prod"))
	rules := r.all("PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules in prod, want 1", len(rules))
	}
	spec := rules[0].obj.(*monitoringv1.PrometheusRule).Spec
	data, err := yaml.Marshal(map[string]any{"groups": spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// alerts_test.yaml names its rule file "scout-monitor.rules.yaml",
	// relative to itself: both go into one directory.
	if err := os.WriteFile(filepath.Join(dir, "scout-monitor.rules.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "scout-monitor.rules.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// Coverage: each alert fires in some case and stays silent in another.
	var suite struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &suite); err != nil {
		t.Fatalf("%s: %v", alertTests, err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tg := range suite.Tests {
		for _, c := range tg.AlertRuleTest {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname] = true
			} else {
				silent[c.Alertname] = true
			}
		}
	}
	for _, g := range spec.Groups {
		for _, rule := range g.Rules {
			if !fires[rule.Alert] || !silent[rule.Alert] {
				t.Errorf("alert %s: %s needs a case where it fires (%v) and one where it does not (%v)", rule.Alert, alertTests, fires[rule.Alert], silent[rule.Alert])
			}
		}
	}
}
