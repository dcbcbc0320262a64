package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// alertRules are the alerts of the monitor itself, as shipped.
const alertRules = "../../deploy/k8s/overlays/prod/prometheusrule.yaml"

// TestAlertCountersExistFromStart: every counter that an alert reads with
// increase() or rate() is exposed, with the labels the alert selects, from
// the moment its service starts, before anything has failed. client_golang
// creates a labelled series at its first Inc(), at value 1, and increase()
// over a series born at 1 is 0: the first failure after a restart would
// never fire the alert (deploy/prometheus/alerts_test.yaml shows both
// series). It runs the whole dev stack on a healthy check file and reads
// its metrics afterwards.
func TestAlertCountersExistFromStart(t *testing.T) {
	t.Parallel() // its own data directory, NATS and ports
	reg := prometheus.NewRegistry()
	var out bytes.Buffer
	o := devOptions{checksFile: "../../deploy/dev/checks.yaml", dataDir: t.TempDir(), duration: 5 * time.Second,
		natsPort: -1, getenv: os.Getenv, registry: reg}
	if err := runDev(context.Background(), o, &out); err != nil {
		t.Fatalf("scout dev: %v\n%s", err, out.String())
	}
	selectors := alertCounterSelectors(t)
	if len(selectors) < 5 {
		t.Fatalf("found only %d counters read by increase() or rate() in %s", len(selectors), alertRules)
	}
	for _, s := range selectors {
		if strings.HasPrefix(s.name, "scout_recorder_") {
			// The recorder runs in scout dev only with --clickhouse; its
			// counters have no labels, and a counter without labels is
			// exposed at 0 once registered.
			continue
		}
		if _, found := testkit.Metric(t, reg, s.name, s.labels); !found {
			t.Errorf("alert %s reads %s%v, which no service exposes before its first increment", s.alert, s.name, s.labels)
		}
	}
	if _, found := testkit.Metric(t, reg, "scout_build_info", nil); !found {
		t.Error("scout dev does not expose scout_build_info")
	}
}

type counterSelector struct {
	alert, name string
	labels      map[string]string
}

// alertCounterSelectors returns the scout_* series that the alerts take
// increase() or rate() of, with their equality matchers.
func alertCounterSelectors(t *testing.T) []counterSelector {
	t.Helper()
	data, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(data, &rule); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	call := regexp.MustCompile(`\b(?:increase|rate)\(\s*(scout_[a-z0-9_]+)\s*(?:\{([^}]*)\})?\s*\[`)
	matcher := regexp.MustCompile(`([a-z_]+)\s*=\s*"([^"]*)"`)
	var out []counterSelector
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			for _, m := range call.FindAllStringSubmatch(r.Expr, -1) {
				s := counterSelector{alert: r.Alert, name: m[1], labels: map[string]string{}}
				for _, lm := range matcher.FindAllStringSubmatch(m[2], -1) {
					s.labels[lm[1]] = lm[2]
				}
				out = append(out, s)
			}
		}
	}
	return out
}
