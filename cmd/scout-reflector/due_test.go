package main

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/jonboulle/clockwork"
)

// expectations records the watch's Expect calls: when, and until when.
type expectations struct {
	clock clockwork.Clock
	mu    sync.Mutex
	calls [][2]time.Time
}

func (e *expectations) expect(until time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, [2]time.Time{e.clock.Now(), until})
}

func (e *expectations) got() [][2]time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([][2]time.Time(nil), e.calls...)
}

// TestDueProbesPredictsTheNextArrival: after two probes of a check and
// site a minute apart, the watch polls fast from 2 s before the next
// predicted arrival (one interval after the last arrival) to 5 s after
// it; a confirmation attempt, a probe of another site and an older probe
// move nothing.
func TestDueProbesPredictsTheNextArrival(t *testing.T) {
	start := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	rec := &expectations{clock: clock}
	d := newDueProbes(clock, rec.expect)
	probe := func(site string, attempt int, started time.Time) probemail.Probe {
		return probemail.Probe{TestID: "t", CheckID: "acme-rt", Site: site, Attempt: attempt, StartedAt: started}
	}
	// The monitor's clock is 3 s ahead of ours and the mail takes 1.5 s.
	sent := start.Add(3 * time.Second)
	d.arrived(probe("eu", 1, sent), clock.Now())
	clock.Advance(time.Minute)
	d.arrived(probe("eu", 1, sent.Add(time.Minute)), clock.Now())
	second := clock.Now()
	d.arrived(probe("eu", 2, sent.Add(time.Minute+10*time.Second)), clock.Now()) // a retest: off the schedule
	d.arrived(probe("us", 1, sent.Add(30*time.Second)), clock.Now())             // another site: its own schedule
	d.arrived(probe("eu", 1, sent), clock.Now())                                 // an older probe again

	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute - dueLead - time.Millisecond)
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("fast poll before the window: %v", got)
	}
	clock.Advance(time.Millisecond)
	due := second.Add(time.Minute)
	want := [2]time.Time{due.Add(-dueLead), due.Add(dueTail)}
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.got()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := rec.got(); len(got) != 1 || got[0] != want {
		t.Fatalf("expectations %v, want one from %v until %v", got, want[0].Format(time.TimeOnly), want[1].Format(time.TimeOnly))
	}
}

// TestDueProbesIgnoresImpossibleIntervals: probes less than a second or
// more than a day apart are not a schedule.
func TestDueProbesIgnoresImpossibleIntervals(t *testing.T) {
	start := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	rec := &expectations{clock: clock}
	d := newDueProbes(clock, rec.expect)
	for _, gap := range []time.Duration{0, 500 * time.Millisecond, 25 * time.Hour} {
		p := probemail.Probe{CheckID: "c", Site: "s", Attempt: 1, StartedAt: start}
		d.arrived(p, clock.Now())
		p.StartedAt = start.Add(gap)
		d.arrived(p, clock.Now())
		start = start.Add(48 * time.Hour)
	}
	clock.Advance(72 * time.Hour)
	if got := rec.got(); len(got) != 0 {
		t.Errorf("expectations %v, want none", got)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, l := range d.last {
		if l.timer != nil {
			t.Errorf("%q: a window was armed", k)
		}
	}
}

// TestDueProbesForgetsSilentChecks: a check and site whose last probe
// arrived more than two days ago (a check removed from the monitor) is
// forgotten (within the hour); one heard from within two days is kept.
func TestDueProbesForgetsSilentChecks(t *testing.T) {
	start := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	rec := &expectations{clock: clock}
	d := newDueProbes(clock, rec.expect)
	arrive := func(check string) {
		d.arrived(probemail.Probe{TestID: "t", CheckID: check, Site: "eu", Attempt: 1, StartedAt: clock.Now()}, clock.Now())
	}
	remembered := func() string {
		d.mu.Lock()
		defer d.mu.Unlock()
		var checks []string
		for key := range d.last {
			checks = append(checks, key[:strings.IndexByte(key, 0)])
		}
		slices.Sort(checks)
		return strings.Join(checks, ",")
	}
	arrive("removed")
	clock.Advance(time.Hour)
	arrive("removed") // then it is taken out of the monitor
	arrive("kept")
	clock.Advance(dueForget - time.Minute)
	arrive("kept")
	if got := remembered(); got != "kept,removed" {
		t.Fatalf("after %s of silence: remembered %s, want both", dueForget-time.Minute, got)
	}
	clock.Advance(time.Hour) // forgetting runs at most once an hour
	arrive("new")
	if got := remembered(); got != "kept,new" {
		t.Errorf("after %s of silence: remembered %s, want kept and new", dueForget+59*time.Minute, got)
	}
}
