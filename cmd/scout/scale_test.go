package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// TestMain lets this test binary stand in for scout when scout scale
// starts its service processes (scaleRoleEnv names their arguments).
func TestMain(m *testing.M) {
	if args := os.Getenv(scaleRoleEnv); args != "" {
		if err := run(context.Background(), strings.Split(args, "\x1f"), os.Getenv, os.Stdout); err != nil {
			os.Stderr.WriteString("scale role: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestScaleSmoke runs scout scale for a few seconds with 200 checks and
// two evaluator replicas: it runs and prints its figures (not judged:
// they are measurements).
func TestScaleSmoke(t *testing.T) {
	var out bytes.Buffer
	o := scaleOptions{checks: []int{100, 200}, replicas: []int{2}, sites: 3, interval: 10 * time.Second,
		warmup: 2 * time.Second, window: 3 * time.Second}
	if err := runScale(context.Background(), o, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"scheduled:", "lateness p50", "decisions:", "per replica:", "heap after GC: scheduler", "B/check", "each added replica adds"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	m := regexp.MustCompile(`decisions:\s+([0-9.]+) check.result/s`).FindAllStringSubmatch(out.String(), -1)
	if len(m) != 3 {
		t.Fatalf("%d runs reported decisions, want 3", len(m))
	}
	for _, d := range m {
		if v, _ := strconv.ParseFloat(d[1], 64); v <= 0 {
			t.Errorf("no decisions in a run: %s", d[0])
		}
	}
}

// TestScaleLatenessCountsLateArrivals: a test that arrives while measuring
// counts with its whole lateness even when it was due before the window (a
// scheduler that fell behind); nothing counts before or after the window,
// nor a retest.
func TestScaleLatenessCountsLateArrivals(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f := &fakeMail{measureFrom: t0}
	due := func(at time.Time) *events.TestScheduled {
		return &events.TestScheduled{Reason: events.ReasonInterval, ScheduledAt: at}
	}
	f.observe(due(t0.Add(-time.Second)), t0.Add(-500*time.Millisecond)) // warm-up
	f.startMeasuring()
	f.observe(due(t0.Add(-20*time.Second)), t0.Add(time.Second)) // due in the warm-up, 21 s late
	f.observe(due(t0.Add(time.Second)), t0.Add(time.Second+5*time.Millisecond))
	f.observe(&events.TestScheduled{Reason: events.ReasonRetest, ScheduledAt: t0}, t0.Add(2*time.Second))
	f.stopMeasuring()
	f.observe(due(t0.Add(2*time.Second)), t0.Add(3*time.Second))
	got := f.latenesses()
	if want := []float64{21000, 5}; !slices.Equal(got, want) {
		t.Errorf("latenesses %v ms, want %v", got, want)
	}
}

// TestReplicaScaling compares each run of several replicas with the run of
// one replica at the same checks: 4 replicas deciding 3.4 times one add
// 0.8 of one each; a run without a one-replica run at its checks, or
// against one that decided nothing, is left out.
func TestReplicaScaling(t *testing.T) {
	runs := []scaleRun{
		{Checks: 100, Replicas: 1, DecisionsPerSec: 50},
		{Checks: 200, Replicas: 1, DecisionsPerSec: 200},
		{Checks: 200, Replicas: 2, DecisionsPerSec: 400},
		{Checks: 200, Replicas: 4, DecisionsPerSec: 680},
		{Checks: 300, Replicas: 2, DecisionsPerSec: 300},
		{Checks: 400, Replicas: 1, DecisionsPerSec: 0},
		{Checks: 400, Replicas: 2, DecisionsPerSec: 10},
	}
	got := replicaScaling(runs)
	want := []replicaScale{{Replicas: 2, TimesOne: 2, AddedPerReplica: 1}, {Replicas: 4, TimesOne: 3.4, AddedPerReplica: 0.8}}
	if len(got) != len(want) {
		t.Fatalf("replicaScaling = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Replicas != want[i].Replicas || math.Abs(got[i].TimesOne-want[i].TimesOne) > 1e-9 || math.Abs(got[i].AddedPerReplica-want[i].AddedPerReplica) > 1e-9 {
			t.Errorf("replicaScaling[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}
