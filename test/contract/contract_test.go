// Package contract checks the seams between Email Scout's services against
// the code and the documents that describe them: the subject table of
// docs/architecture.md against the event catalog and the services'
// routers, the consumers bound on a real NATS server against those routers,
// the defaults of docs/configuration.md against the services' envDefault
// tags, and the module graph (no service requires another).
package contract

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/notifier"
	"github.com/emailscout/emailscout/services/receiver"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/emailscout/emailscout/services/scheduler"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/emailscout/emailscout/services/web"
)

// root is the repository root, from test/contract.
const root = "../.."

// consumers maps each consuming service to the subject names its router
// handles.
func consumers() map[string][]string {
	return map[string][]string{
		"sender":    sender.Consumes(),
		"evaluator": evaluator.Consumes(),
		"notifier":  notifier.Consumes(),
		"recorder":  recorder.Consumes(),
		"web":       web.Consumes(),
	}
}

// tableRow is one row of docs/architecture.md's subject table.
type tableRow struct {
	names []string // subject names; "notification.sent/failed/suppressed" gives three
	from  []string
	to    []string // service names; nil for "stream only"
	line  int
}

var subjectCell = regexp.MustCompile("^`([a-z]+)\\.([a-z/]+)\\.<[a-z]+>(?:\\.<[a-z]+>)?`$")

// subjectTable reads the table under "## Subjects" of docs/architecture.md.
func subjectTable(t *testing.T) []tableRow {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []tableRow
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "## Subjects":
			in = true
			continue
		case in && strings.HasPrefix(line, "## "):
			in = false
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4 {
			t.Fatalf("docs/architecture.md:%d: a subject row has %d cells, want 4", n, len(cells))
		}
		m := subjectCell.FindStringSubmatch(strings.TrimSpace(cells[0]))
		if m == nil {
			t.Fatalf("docs/architecture.md:%d: subject %q is not `name.verb.<token>...`", n, cells[0])
		}
		r := tableRow{line: n, from: list(cells[1])}
		for _, verb := range strings.Split(m[2], "/") {
			r.names = append(r.names, m[1]+"."+verb)
		}
		if to := strings.TrimSpace(cells[2]); to != "stream only" {
			r.to = list(to)
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatal("docs/architecture.md: no subject table under ## Subjects")
	}
	return rows
}

func list(cell string) []string {
	var out []string
	for _, s := range strings.Split(cell, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// TestSubjectTable: every subject name of the event catalog has exactly one
// row; every row names catalog subjects; a row's "to" column is exactly the
// services whose routers handle the subject, and a subject no service
// consumes is marked "stream only". Removing a handler, or a row, fails it.
func TestSubjectTable(t *testing.T) {
	handledBy := map[string][]string{}
	for svc, names := range consumers() {
		for _, n := range names {
			handledBy[n] = append(handledBy[n], svc)
		}
	}
	seen := map[string]int{}
	for _, r := range subjectTable(t) {
		for _, name := range r.names {
			if _, ok := events.RoutingOf(name); !ok {
				t.Errorf("docs/architecture.md:%d: %s is not in the event catalog (pkg/events/catalog.go)", r.line, name)
			}
			if prev, dup := seen[name]; dup {
				t.Errorf("docs/architecture.md:%d: %s has a row already (line %d)", r.line, name, prev)
			}
			seen[name] = r.line
			got := handledBy[name]
			sort.Strings(got)
			if !slices.Equal(got, r.to) {
				want := "stream only"
				if len(r.to) > 0 {
					want = strings.Join(r.to, ", ")
				}
				t.Errorf("docs/architecture.md:%d: %s goes to %q, but the routers that handle it are %v", r.line, name, want, got)
			}
			if len(r.from) == 0 {
				t.Errorf("docs/architecture.md:%d: %s has no producer", r.line, name)
			}
		}
	}
	for _, name := range events.SubjectNames() {
		if _, ok := seen[name]; !ok {
			t.Errorf("%s (pkg/events) has no row in docs/architecture.md's subject table", name)
		}
	}
	// A handler for a name outside the catalog could never be subscribed.
	for svc, names := range consumers() {
		for _, n := range names {
			if _, ok := events.RoutingOf(n); !ok {
				t.Errorf("%s handles %s, which is not in the event catalog", svc, n)
			}
		}
	}
}

// TestNoServiceRequiresAnother: each service module is built on its own
// (the images build with GOWORK=off), so no services/<name>/go.mod may
// require another service module, even indirectly; cross-service tests
// live in test/.
func TestNoServiceRequiresAnother(t *testing.T) {
	mods, err := filepath.Glob(filepath.Join(root, "services", "*", "go.mod"))
	if err != nil || len(mods) < 6 {
		t.Fatalf("service go.mod files: %v, %v", mods, err)
	}
	for _, m := range mods {
		data, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		self := filepath.Base(filepath.Dir(m))
		for i, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "github.com/emailscout/emailscout/services/") && !strings.HasPrefix(strings.TrimSpace(line), "module ") {
				t.Errorf("services/%s/go.mod:%d requires another service: %s", self, i+1, strings.TrimSpace(line))
			}
		}
	}
}

// docVariables reads the variable tables of the services' sections of
// docs/configuration.md ("## Common service variables" to "## web"):
// every row that starts with a variable ("| `SCOUT_X` | default | ..."),
// variable -> default cell.
func docVariables(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{"Common service variables": true, "scheduler": true, "sender": true, "receiver": true,
		"evaluator": true, "notifier": true, "recorder": true, "web": true}
	row := regexp.MustCompile("^\\| `([A-Z][A-Z0-9_]+)` \\|\\s*([^|]*?)\\s*\\|")
	out := map[string]string{}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			in = sections[h]
			continue
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			if prev, dup := out[m[1]]; dup && prev != strings.TrimSpace(m[2]) {
				t.Errorf("docs/configuration.md documents %s twice, with %q and %q", m[1], prev, m[2])
			}
			out[m[1]] = m[2]
		}
	}
	return out
}

// TestConfigReference: every environment variable of every service's
// Config (and of platform.Base) has a row in docs/configuration.md, and a
// variable with a default shows exactly that default, as the envDefault
// tag writes it: the tags are the one place a default is written.
func TestConfigReference(t *testing.T) {
	docs := docVariables(t)
	configs := map[string]map[string]platform.Variable{
		"platform.Base":    platform.Variables[platform.Base](),
		"scheduler.Config": platform.Variables[scheduler.Config](),
		"sender.Config":    platform.Variables[sender.Config](),
		"receiver.Config":  platform.Variables[receiver.Config](),
		"evaluator.Config": platform.Variables[evaluator.Config](),
		"notifier.Config":  platform.Variables[notifier.Config](),
		"recorder.Config":  platform.Variables[recorder.Config](),
		"web.Config":       platform.Variables[web.Config](),
	}
	checked := 0
	for cfg, vars := range configs {
		for name, v := range vars {
			cell, ok := docs[name]
			if !ok {
				t.Errorf("%s: %s has no row in docs/configuration.md", cfg, name)
				continue
			}
			checked++
			switch {
			case v.HasDefault && cell != "`"+v.Default+"`":
				t.Errorf("%s: %s defaults to %q (envDefault), docs/configuration.md says %s", cfg, name, v.Default, cell)
			case v.Required && cell != "(required)":
				t.Errorf("%s: %s is required, docs/configuration.md says %s", cfg, name, cell)
			}
		}
	}
	if checked < 40 {
		t.Errorf("only %d variables checked: the tables were not read", checked)
	}
}
