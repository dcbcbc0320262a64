package web

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// TestStoreBoundsAndRevisions: a site keeps the newest Recent results in
// start order whatever order they arrive in, a second revision replaces
// its first, and an older result does not move the verdict back.
func TestStoreBoundsAndRevisions(t *testing.T) {
	s := newStore(3)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for _, m := range []int{5, 1, 4, 2, 3} {
		s.addResult(result("c", events.KindRoundTrip, "a", events.StatusOK, int64(m), at(m)))
	}
	late := result("c", events.KindRoundTrip, "a", events.StatusTimeout, -1, at(6))
	s.addResult(late)
	if _, recent, _ := s.get("c", true); len(recent["a"]) != 3 || recent["a"][0].RTTMS != 4 || recent["a"][2].Status != events.StatusTimeout {
		t.Fatalf("recent: %+v", recent["a"])
	}
	snap, _, _ := s.get("c", false)
	if v := snap.sites["a"]; v.verdict != verdictFailing || !v.since.Equal(at(6)) {
		t.Errorf("after a timeout: %+v", v)
	}
	rev2 := *late
	rev2.Revision, rev2.Late, rev2.RTTMS = 2, true, ptr(int64(700000))
	s.addResult(&rev2)
	_, recent, _ := s.get("c", true)
	if n := len(recent["a"]); n != 3 || !recent["a"][2].Late || recent["a"][2].RTTMS != 700000 {
		t.Errorf("revision 2 did not replace revision 1: %+v", recent["a"])
	}
	s.addResult(result("c", events.KindRoundTrip, "a", events.StatusOK, 9, at(0))) // older than everything
	if snap, _, _ := s.get("c", false); snap.sites["a"].verdict != verdictFailing {
		t.Errorf("an older ok moved the verdict back to %s", snap.sites["a"].verdict)
	}
	s.setVerdict("c", "a", verdictDown, at(6), at(6))
	s.addResult(result("c", events.KindRoundTrip, "a", events.StatusFailed, -1, at(7)))
	if snap, _, _ := s.get("c", false); snap.sites["a"].verdict != verdictDown {
		t.Errorf("a failure after down: %s, want down", snap.sites["a"].verdict)
	}
	if got := s.take(); len(got) != 1 || got[0] != "c" || len(s.take()) != 0 {
		t.Errorf("take: %v", got)
	}
}

// TestStoreKeepsNewestEvidence: only a site's keptEvidence newest attempts
// keep their whole evidence; older ones keep their summary.
func TestStoreKeepsNewestEvidence(t *testing.T) {
	s := newStore(50)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for m := range keptEvidence + 3 {
		r := result("c", events.KindSMTP, "a", events.StatusFailed, -1, t0.Add(time.Duration(m)*time.Minute))
		r.Summary = fmt.Sprintf("attempt %d refused", m)
		r.Evidence = &events.Evidence{Dialogue: []string{fmt.Sprintf("S: 554 no %d", m)}}
		s.addResult(r)
	}
	_, recent, _ := s.get("c", true)
	as := recent["a"]
	if len(as) != keptEvidence+3 {
		t.Fatalf("%d attempts", len(as))
	}
	for i, a := range as {
		if a.Summary != fmt.Sprintf("attempt %d refused", i) {
			t.Errorf("attempt %d: summary %q", i, a.Summary)
		}
		if kept := a.Evidence != nil; kept != (i >= 3) {
			t.Errorf("attempt %d: evidence kept %v, want only the %d newest", i, kept, keptEvidence)
		}
	}
}

// TestIncidentReplay: an incident.open replayed after its resolution does
// not reopen it; past incidents are bounded.
func TestIncidentReplay(t *testing.T) {
	s := newStore(5)
	now := time.Now()
	o := opened("c", "acme", "i1", "why", now)
	s.open(o)
	s.resolve(resolved(o, now.Add(time.Minute)))
	s.open(o)
	snap, _, _ := s.get("c", true)
	if snap.open != nil || len(snap.past) != 1 || snap.past[0].Reason != "why" {
		t.Fatalf("after open, resolve, open again: %+v", snap)
	}
	for i := range maxPastIncidents + 5 {
		x := opened("c", "acme", "x"+string(rune('a'+i)), "r", now.Add(time.Duration(i)*time.Hour))
		s.open(x)
		s.resolve(resolved(x, x.OpenedAt.Add(time.Minute)))
	}
	if snap, _, _ := s.get("c", true); len(snap.past) != maxPastIncidents || !snap.past[0].OpenedAt.After(snap.past[1].OpenedAt) {
		t.Errorf("%d past incidents, want %d newest first", len(snap.past), maxPastIncidents)
	}
}

func TestPlotSVG(t *testing.T) {
	from := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ss := []series{{Site: "a<b", Points: []point{{from.Add(time.Hour), 800}, {from.Add(2 * time.Hour), 1200}}}, {Site: "c"}}
	svg := string(plotSVG("RTT <24h>", ss, from, from.Add(24*time.Hour), 6*time.Hour, "15:04"))
	for _, want := range []string{`aria-label="RTT &lt;24h&gt;"`, `<circle class="pt"`, "a&lt;b", "06:00", "2 s", "(0)"} {
		if !strings.Contains(svg, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
	if strings.Count(svg, `class="pt"`) != 2 || strings.Contains(svg, "a<b") {
		t.Errorf("plot: %s", svg)
	}
	if empty := string(plotSVG("x", nil, from, from.Add(time.Hour), time.Hour, "15:04")); !strings.Contains(empty, "No times in this period") {
		t.Error("an empty plot does not say so")
	}
	for ms, want := range map[float64]string{850: "850 ms", 12300: "12.3 s", 245000: "4m05s"} {
		if got := fmtMS(ms); got != want {
			t.Errorf("fmtMS(%v) = %q, want %q", ms, got, want)
		}
	}
	for v, want := range map[float64]float64{0: 10, 11: 20, 1300: 2000, 2001: 5000, 5001: 10000} {
		if got := niceCeil(v); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", v, got, want)
		}
	}
}
