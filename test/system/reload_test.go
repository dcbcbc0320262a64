package system

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/scheduler"
	"github.com/nats-io/nats.go"
)

const reloadChecks = `sites: [eu-west]
defaults:
  interval: 2s
  timeout: 1s
  slow: 500ms
  retries: 0
  quorum: 1
checks:
  - id: acme
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
`

const reloadGlobex = `  - id: globex
    customer: globex
    kind: roundtrip
    target: probe@globex.example
`

// seen collects the check ids of the events published on a subject.
type seen struct {
	mu  sync.Mutex
	ids map[string]int
}

func (s *seen) count(check string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[check]
}

func subscribe(t *testing.T, nc *nats.Conn, subject string) *seen {
	s := &seen{ids: map[string]int{}}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		parts := strings.Split(m.Subject, ".")
		s.mu.Lock()
		s.ids[parts[len(parts)-1]]++
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return s
}

// TestReloadMountedCheckFile runs the scheduler and the evaluator as their
// commands do (platform.Start, New, Serve) on a check file mounted like a
// ConfigMap, against a real nats-server. A new version with one more check
// is used by both without a restart: the scheduler schedules the new check
// and the evaluator judges its tests (a check it did not know would be
// dropped: each process reloads on its own, so the evaluator may drop the
// first test or two, scheduled before its own reload). An invalid version is refused by both: the metric
// scout_checks_last_reload_successful drops to 0 and the checks in force
// keep running.
func TestReloadMountedCheckFile(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := natstest.Connect(t, srv)
	file := testkit.NewConfigMapDir(t, "checks.yaml", reloadChecks)
	tests := subscribe(t, nc, events.SubjectTestScheduled+".>")
	results := subscribe(t, nc, events.SubjectCheckResult+".>")

	ctx, cancel := context.WithCancel(natstest.Context(t))
	base := platform.Base{NATSURL: srv.URL, HTTPAddr: "127.0.0.1:0", LogLevel: "info", ChecksFile: file.Path(),
		ChecksReload: time.Second, ShutdownTimeout: 5 * time.Second, StreamReplicas: 1}
	var wg sync.WaitGroup
	start := func(name string, component func(rt *platform.Runtime) (platform.Component, error)) *platform.Runtime {
		rt, err := platform.Start(ctx, base, name, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		c, err := component(rt)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := rt.Serve(ctx, c); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", name, err)
			}
		})
		return rt
	}
	sch := start("scheduler", func(rt *platform.Runtime) (platform.Component, error) {
		return scheduler.New(scheduler.Config{}, scheduler.Deps{Checks: rt.Checks, Publisher: platform.JetStreamPublisher{JS: rt.JS},
			Logger: rt.Logger, Registerer: rt.Registry})
	})
	eval := start("evaluator", func(rt *platform.Runtime) (platform.Component, error) {
		return evaluator.New(evaluator.Config{SubmitGrace: 100 * time.Millisecond, Settle: 100 * time.Millisecond},
			evaluator.Deps{Checks: rt.Checks, JS: rt.JS, Logger: rt.Logger, Registerer: rt.Registry})
	})
	defer func() { cancel(); wg.Wait() }()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second) // the reload interval is 1s
		for !ok() {
			if ctx.Err() != nil || time.Now().After(deadline) {
				t.Fatalf("not within 30s: %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("acme judged", func() bool { return results.count("acme") > 0 })
	if tests.count("globex") != 0 {
		t.Fatal("globex scheduled before it was in the file")
	}

	file.Update(reloadChecks + reloadGlobex)
	updated := time.Now()
	waitFor("globex scheduled after the reload", func() bool { return tests.count("globex") > 0 })
	scheduled := time.Since(updated)
	waitFor("globex judged by the evaluator", func() bool { return results.count("globex") > 0 })
	t.Logf("new check: first test %v after the ConfigMap swap, first result %v (reload interval 1s, check interval 2s)",
		scheduled.Round(time.Millisecond), time.Since(updated).Round(time.Millisecond))

	file.Update(strings.Replace(reloadChecks+reloadGlobex, "interval: 2s", "interval: every other second", 1))
	updated = time.Now()
	for _, rt := range []*platform.Runtime{sch, eval} {
		waitFor("invalid version refused", func() bool {
			return testkit.MustMetric(t, rt.Registry, "scout_checks_last_reload_successful", nil) == 0
		})
		if n := testkit.MustMetric(t, rt.Registry, "scout_checks_reloads_total", map[string]string{"outcome": "refused"}); n != 1 {
			t.Errorf("refused reloads = %v, want 1", n)
		}
		if n := testkit.MustMetric(t, rt.Registry, "scout_checks", nil); n != 2 {
			t.Errorf("checks in force = %v, want the 2 of the last valid version", n)
		}
	}
	t.Logf("invalid version: refused by both %v after the swap", time.Since(updated).Round(time.Millisecond))
	before := results.count("globex")
	waitFor("globex still judged with the old version in force", func() bool { return results.count("globex") > before+1 })
}
