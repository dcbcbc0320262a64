//go:build integration

package recorder_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/chtest"
	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/recorder"
)

// TestServiceAndIncidentQueries runs the documented service-check,
// certificate and incident-annotation queries on known rows and compares
// them with what is computed here: service checks at two sites over four
// hours (failures, warnings, monitor errors, attempts without TLS, a
// certificate renewed midway), round trips that must not count, and
// incidents open, resolved and of another check.
func TestServiceAndIncidentQueries(t *testing.T) {
	ch := chtest.Start(t)
	st := openStore(t, ch, "servicequeries")
	ctx := natstest.Context(t)
	rng := rand.New(rand.NewPCG(16, 2026))
	start := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	from, to := start, start.Add(4*time.Hour)
	renewed := start.Add(150 * time.Minute) // acme-smtp's new certificate from here

	var evs []events.CheckResult
	id := 0
	add := func(ev events.CheckResult) {
		id++
		ev.V, ev.TestID, ev.Customer, ev.Attempt, ev.Revision = 1, fmt.Sprintf("s%023d", id), "c", 1, 1
		ev.FinishedAt = ev.StartedAt.Add(2 * time.Second)
		evs = append(evs, ev)
	}
	for _, check := range []struct{ id, kind string }{{"acme-smtp", events.KindSMTP}, {"globex-imap", events.KindIMAP}} {
		for si, site := range []string{"eu-west", "us-east"} {
			for i := range 4 * 12 { // every 5 minutes for 4 hours
				at := start.Add(time.Duration(i)*5*time.Minute + time.Duration(si)*time.Minute + 321*time.Millisecond)
				ev := events.CheckResult{CheckID: check.id, Site: site, Kind: check.kind, StartedAt: at, Status: events.StatusOK,
					Timings: events.Timings{TotalMS: float64(50+rng.IntN(400)) + 0.25}}
				switch r := rng.IntN(20); {
				case r == 0:
					ev.Status = events.StatusMonitorError
				case r == 1:
					ev.Status = events.StatusTimeout
				case r <= 3:
					ev.Status = events.StatusFailed
				case r == 4:
					ev.Status = events.StatusSlow
				case r == 5:
					ev.Status = events.StatusDegraded
				}
				notAfter := time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC)
				if check.id == "globex-imap" {
					notAfter = time.Date(2026, 12, 9, 0, 0, 0, 0, time.UTC)
				} else if !at.Before(renewed) {
					notAfter = time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
				}
				// Failed connects and the last attempt of globex at us-east
				// saw no certificate: they must not hide the last one seen.
				if ev.Status != events.StatusFailed && !(check.id == "globex-imap" && site == "us-east" && i == 47) {
					ev.TLS = &events.TLSInfo{Version: "TLS1.3", PeerNotAfter: notAfter, DaysLeft: int(notAfter.Sub(at).Hours() / 24),
						HostnameMatch: site == "eu-west", Verified: true, PeerSubject: "CN=mail." + check.id + ".example"}
				}
				add(ev)
			}
		}
	}
	for i := range 10 { // round trips: neither service checks nor certificates
		rtt := int64(5000)
		add(events.CheckResult{CheckID: "acme-roundtrip", Site: "eu-west", Kind: events.KindRoundTrip, Status: events.StatusOK,
			StartedAt: start.Add(time.Duration(i) * 20 * time.Minute), RTTMS: &rtt})
	}
	insertResults(t, st, evs, 50)

	t.Run("hourly service", func(t *testing.T) {
		type key struct {
			hour time.Time
			site string
		}
		type agg struct {
			checks, failed, warned int
			totals                 []float64
		}
		want := map[key]*agg{}
		for _, ev := range evs {
			if ev.CheckID != "acme-smtp" || ev.Status == events.StatusMonitorError {
				continue
			}
			k := key{ev.StartedAt.Truncate(time.Hour), ev.Site}
			if want[k] == nil {
				want[k] = &agg{}
			}
			a := want[k]
			a.checks++
			switch ev.Status {
			case events.StatusFailed, events.StatusTimeout:
				a.failed++
			case events.StatusSlow, events.StatusDegraded:
				a.warned++
			}
			a.totals = append(a.totals, ev.Timings.TotalMS)
		}
		got, err := st.HourlyService(ctx, "acme-smtp", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(got) != 8 {
			t.Fatalf("%d rows, want %d (4 hours, 2 sites): %+v", len(got), len(want), got)
		}
		for i, r := range got {
			w := want[key{r.Hour.UTC(), r.Site}]
			if w == nil {
				t.Fatalf("unexpected row %+v", r)
			}
			if i > 0 && (r.Hour.Before(got[i-1].Hour) || r.Hour.Equal(got[i-1].Hour) && r.Site < got[i-1].Site) {
				t.Errorf("row %d out of order", i)
			}
			sort.Float64s(w.totals)
			q := func(level float64) float64 { return w.totals[min(int(level*float64(len(w.totals))), len(w.totals)-1)] }
			if r.Checks != uint64(w.checks) || r.Failed != uint64(w.failed) || r.Warned != uint64(w.warned) ||
				r.P50TotalMS != q(0.5) || r.P90TotalMS != q(0.9) {
				t.Errorf("%v %s: %+v; want checks %d failed %d warned %d p50 %v p90 %v", r.Hour, r.Site, r, w.checks, w.failed, w.warned, q(0.5), q(0.9))
			}
		}
	})

	t.Run("certificates", func(t *testing.T) {
		type key struct{ check, site string }
		newest := map[key]events.CheckResult{}
		for _, ev := range evs {
			if ev.Kind == events.KindRoundTrip || ev.TLS == nil {
				continue
			}
			k := key{ev.CheckID, ev.Site}
			if old, ok := newest[k]; !ok || ev.StartedAt.After(old.StartedAt) {
				newest[k] = ev
			}
		}
		got, err := st.Certificates(ctx, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 {
			t.Fatalf("%d rows, want 4 (two checks, two sites): %+v", len(got), got)
		}
		if !slices.IsSortedFunc(got, func(a, b recorder.Certificate) int { return int(*a.DaysLeft - *b.DaysLeft) }) || got[0].CheckID != "globex-imap" {
			t.Errorf("not soonest expiry first: %+v", got)
		}
		for _, r := range got {
			w, ok := newest[key{r.CheckID, r.Site}]
			if !ok {
				t.Fatalf("unexpected row %+v", r)
			}
			wantMatch := uint8(0)
			if w.TLS.HostnameMatch {
				wantMatch = 1
			}
			if !r.LastSeen.Equal(w.StartedAt.Truncate(time.Second)) || r.NotAfter == nil || !r.NotAfter.Equal(w.TLS.PeerNotAfter) ||
				r.DaysLeft == nil || *r.DaysLeft != int32(w.TLS.DaysLeft) || r.Verified == nil || *r.Verified != 1 ||
				r.HostnameMatch == nil || *r.HostnameMatch != wantMatch || r.Subject != w.TLS.PeerSubject {
				t.Errorf("%s %s: %+v (not_after %s, days %s); want the certificate of the attempt at %v: %+v", r.CheckID, r.Site, r,
					show(r.NotAfter), show(r.DaysLeft), w.StartedAt, *w.TLS)
			}
			if r.CheckID == "acme-smtp" && r.NotAfter != nil && r.NotAfter.Before(time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("%s %s: the renewed certificate is not the one shown: %v", r.CheckID, r.Site, r.NotAfter)
			}
		}
	})

	t.Run("incident annotations", func(t *testing.T) {
		type inc struct {
			id, check, severity, reason, resolution string
			opened                                  time.Time
			resolved                                time.Duration // 0: still open
		}
		incs := []inc{
			{"inc-1", "acme-smtp", "critical", "SMTP connect failed at 2 of 2 sites: refused", "2 of 2 sites answer again", start.Add(20 * time.Minute), 25 * time.Minute},
			{"inc-2", "acme-smtp", "warning", "SMTP slow at 2 of 2 sites", "", start.Add(3 * time.Hour), 0},
			{"inc-3", "globex-imap", "critical", "IMAP not answering at 2 of 2 sites", "check removed", start.Add(time.Hour), time.Hour},
			{"inc-4", "acme-smtp", "critical", "before the range", "x", start.Add(-2 * time.Hour), time.Hour},
		}
		var rows recorder.Rows
		for _, in := range incs {
			open := recorder.IncidentOpenRow(events.IncidentOpen{V: 1, IncidentID: in.id, CheckID: in.check, Severity: in.severity,
				Since: in.opened.Add(-10 * time.Minute), OpenedAt: in.opened, Reason: in.reason})
			rows.Incidents = append(rows.Incidents, open, open) // redelivered
			if in.resolved > 0 {
				rows.Incidents = append(rows.Incidents, recorder.IncidentResolvedRow(events.IncidentResolved{V: 1, IncidentID: in.id,
					CheckID: in.check, Severity: in.severity, Since: in.opened.Add(-10 * time.Minute), OpenedAt: in.opened,
					ResolvedAt: in.opened.Add(in.resolved), Reason: in.resolution}))
			}
		}
		if err := st.Insert(ctx, &rows); err != nil {
			t.Fatal(err)
		}
		got, err := st.IncidentAnnotations(ctx, "acme-smtp", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("%d annotations, want acme-smtp's 2 in the range: %+v", len(got), got)
		}
		for i, in := range incs[:2] {
			r := got[i]
			text := in.severity + ": " + in.reason
			if in.resolved > 0 {
				text += " (resolved: " + in.resolution + ")"
			}
			if r.IncidentID != in.id || !r.Time.Equal(in.opened) || r.Text != text {
				t.Errorf("annotation %d: %+v; want %s at %v: %q", i, r, in.id, in.opened, text)
			}
			switch {
			case in.resolved == 0 && r.TimeEnd != nil:
				t.Errorf("%s: still open, timeEnd %v", in.id, r.TimeEnd)
			case in.resolved > 0 && (r.TimeEnd == nil || !r.TimeEnd.Equal(in.opened.Add(in.resolved))):
				t.Errorf("%s: timeEnd %s, want %v", in.id, show(r.TimeEnd), in.opened.Add(in.resolved))
			}
		}
	})
}
