package platform

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/prometheus/client_golang/prometheus"
)

const checkV1 = `sites: [eu-west]
checks:
  - id: acme
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
`

// TestCheckFileWatcher: versions of a mounted check file are applied when
// valid, refused (old file kept, metric 0, one log line) when not, and the
// metric is back to 1 with the next valid version.
func TestCheckFileWatcher(t *testing.T) {
	m := testkit.NewConfigMapDir(t, "checks.yaml", checkV1)
	data, err := os.ReadFile(m.Path())
	if err != nil {
		t.Fatal(err)
	}
	f, err := checks.Parse(m.Path(), data)
	if err != nil {
		t.Fatal(err)
	}
	live := checks.NewLive(f)
	reg := prometheus.NewRegistry()
	var logs testkit.LogBuffer
	log, _ := NewLogger(&logs, "info")
	w, err := NewCheckFileWatcher(m.Path(), data, live, 0, nil, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	metric := func(name string, labels map[string]string) float64 { return testkit.MustMetric(t, reg, name, labels) }
	if metric("scout_checks_last_reload_successful", nil) != 1 || metric("scout_checks", nil) != 1 ||
		metric("scout_checks_reloads_total", map[string]string{"outcome": "refused"}) != 0 {
		t.Fatal("metrics at start")
	}
	if got := w.Reload(); got != "" {
		t.Fatalf("unchanged file: Reload = %q", got)
	}

	changed := live.Changed()
	m.Update(checkV1 + "  - id: globex\n    customer: globex\n    kind: roundtrip\n    target: probe@globex.example\n")
	if got := w.Reload(); got != ReloadApplied {
		t.Fatalf("valid version: Reload = %q", got)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by the reload")
	}
	if live.Current().Lookup("globex") == nil || metric("scout_checks", nil) != 2 {
		t.Fatal("new check not in force")
	}
	if len(logs.Lines(`"msg":"check file reloaded"`, `"added":["globex"]`)) != 1 {
		t.Errorf("log:\n%s", logs.String())
	}

	in := live.Current()
	m.Update(strings.Replace(checkV1, "kind: roundtrip", "kind: roundtrip\n    interval: soon", 1))
	for range 3 {
		w.Reload()
	}
	if live.Current() != in {
		t.Fatal("an invalid version replaced the file in force")
	}
	if metric("scout_checks_last_reload_successful", nil) != 0 || metric("scout_checks_reloads_total", map[string]string{"outcome": "refused"}) != 1 {
		t.Error("refusal not in the metrics (or counted more than once)")
	}
	refused := logs.Lines(`"level":"ERROR"`, `check file refused: the previous version stays in force`)
	if len(refused) != 1 || !strings.Contains(refused[0], `check \"acme\": interval`) {
		t.Errorf("want one error line naming the check and field, got %q", refused)
	}

	// Putting the version in force back clears the refusal.
	m.Update(checkV1 + "  - id: globex\n    customer: globex\n    kind: roundtrip\n    target: probe@globex.example\n")
	if got := w.Reload(); got != "" || metric("scout_checks_last_reload_successful", nil) != 1 {
		t.Fatalf("version in force put back: Reload = %q, successful = %v", got, metric("scout_checks_last_reload_successful", nil))
	}

	m.Update(checkV1)
	if got := w.Reload(); got != ReloadApplied || live.Current().Lookup("globex") != nil {
		t.Fatalf("valid version after a refusal: Reload = %q", got)
	}
	if metric("scout_checks_last_reload_successful", nil) != 1 || metric("scout_checks_reloads_total", map[string]string{"outcome": "applied"}) != 2 {
		t.Error("metrics after the next valid version")
	}

	// A file that disappears is refused too: the checks keep running.
	if err := os.Remove(m.Path()); err != nil {
		t.Fatal(err)
	}
	if got := w.Reload(); got != ReloadRefused || live.Current().Lookup("acme") == nil {
		t.Fatalf("missing file: Reload = %q", got)
	}
}

// manyChecks is a check file of n round-trip checks.
func manyChecks(n int) string {
	var b strings.Builder
	b.WriteString("sites: [eu-west, us-east]\nchecks:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: c%d\n    customer: acme\n    kind: roundtrip\n    target: probe%d@acme.example\n    contacts: [{name: Ops, phone: \"+15555550100\"}]\n", i, i)
	}
	return b.String()
}

// BenchmarkCheckFileReload: the cost of one poll of a 500-check file,
// unchanged (the steady state, every SCOUT_CHECKS_RELOAD_INTERVAL) and
// changed (read, validate, apply).
func BenchmarkCheckFileReload(b *testing.B) {
	for _, changed := range []bool{false, true} {
		b.Run(fmt.Sprintf("changed=%v", changed), func(b *testing.B) {
			content := manyChecks(500)
			m := testkit.NewConfigMapDir(b, "checks.yaml", content)
			f, err := checks.Parse(m.Path(), []byte(content))
			if err != nil {
				b.Fatal(err)
			}
			w, err := NewCheckFileWatcher(m.Path(), []byte(content), checks.NewLive(f), 0, nil, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; b.Loop(); i++ {
				if changed {
					b.StopTimer()
					m.Update(content + fmt.Sprintf("# version %d\n", i))
					b.StartTimer()
				}
				if got, want := w.Reload(), map[bool]string{false: "", true: ReloadApplied}[changed]; got != want {
					b.Fatalf("Reload = %q, want %q", got, want)
				}
			}
		})
	}
}

// TestDiffChecks: the same definitions loaded again, moved down the file,
// are unchanged, even with an expected greeting and maintenance windows
// (whose compiled regexp and time zone are new pointers each load); a
// changed setting, a new and a removed check are named.
func TestDiffChecks(t *testing.T) {
	const svc = `  - id: acme-smtp
    customer: acme
    kind: smtp
    host: mail.acme.example
    expect_greeting: '^mail\.acme\.example ESMTP'
    maintenance:
      - weekly: "Sun 02:00-04:00"
        timezone: Europe/Berlin
        reason: patch window
`
	parse := func(text string) *checks.File {
		t.Helper()
		f, err := checks.Parse("checks.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	old := parse(checkV1 + svc)
	moved := parse("sites: [eu-west]\nchecks:\n" + svc + strings.TrimPrefix(checkV1, "sites: [eu-west]\nchecks:\n"))
	if a, r, c := diffChecks(old, moved); len(a)+len(r)+len(c) != 0 {
		t.Errorf("same checks, moved: added %v removed %v changed %v", a, r, c)
	}
	next := parse("sites: [eu-west]\nchecks:\n" + strings.Replace(svc, "Sun 02:00-04:00", "Sun 03:00-05:00", 1) +
		"  - id: globex\n    customer: globex\n    kind: roundtrip\n    target: probe@globex.example\n")
	a, r, c := diffChecks(old, next)
	if fmt.Sprint(a, r, c) != "[globex] [acme] [acme-smtp]" {
		t.Errorf("added %v removed %v changed %v, want [globex] [acme] [acme-smtp]", a, r, c)
	}
	// The service block is a pointer: what it points to is compared.
	for _, edit := range [][2]string{{"host: mail.acme.example", "host: mx.acme.example"}, {"ESMTP'", "ESMTP Postfix'"}} {
		if a, r, c := diffChecks(old, parse(strings.Replace(checkV1+svc, edit[0], edit[1], 1))); fmt.Sprint(a, r, c) != "[] [] [acme-smtp]" {
			t.Errorf("%s -> %s: added %v removed %v changed %v, want acme-smtp changed", edit[0], edit[1], a, r, c)
		}
	}
}
