//go:build integration

package recorder_test

import (
	"fmt"
	"math"
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

// dataset is a known set of attempts: two sites, five hours across a day
// boundary, timeouts with and without late returns, monitor errors, slow
// returns, skew outliers, and rows of another check.
type dataset struct {
	final []events.CheckResult // what FINAL must show: the last revision of each attempt
	all   []events.CheckResult // what is inserted: revisions 1 and 2, some twice
}

func makeDataset() dataset {
	rng := rand.New(rand.NewPCG(6, 2026))
	var d dataset
	start := time.Date(2026, 11, 29, 22, 0, 0, 0, time.UTC)
	id := 0
	for _, check := range []string{"acme-roundtrip", "globex-roundtrip"} {
		for h := range 5 {
			for si, site := range []string{"eu-west", "us-east"} {
				n := 6 + 3*h + 5*si // attempts in this hour and site
				for i := range n {
					id++
					st := start.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Hour/time.Duration(n) + 1234*time.Millisecond)
					ev := events.CheckResult{
						V: 1, TestID: fmt.Sprintf("q%023d", id), CheckID: check, Customer: "c", Site: site,
						Kind: events.KindRoundTrip, Attempt: 1, Revision: 1, StartedAt: st, FinishedAt: st.Add(10 * time.Minute),
					}
					switch r := rng.IntN(100); {
					case r < 8: // no return
						ev.Status = events.StatusTimeout
					case r < 14: // monitor error
						ev.Status = events.StatusMonitorError
					case r < 20: // late return: revision 1, then revision 2 with the round trip
						ev.Status = events.StatusTimeout
						if r == 19 {
							ev.SkewSuspect = true // on revision 1 only: FINAL must hide it
						}
						d.all = append(d.all, ev)
						ev.Revision, ev.Late, ev.SkewSuspect = 2, true, false
						rtt := int64(600_000 + rng.IntN(300_000))
						ev.RTTMS = &rtt
						skew := int64(rng.IntN(180_001) - 90_000)
						ev.SkewMS = &skew
					default:
						rtt := int64(3_000 + rng.IntN(200_000))
						ev.RTTMS = &rtt
						ev.Status = events.StatusOK
						if rtt >= 120_000 {
							ev.Status = events.StatusSlow
						}
						skew := int64(rng.IntN(10_001) - 5_000)
						switch rng.IntN(40) {
						case 0:
							skew = 60_000 // on the boundary: an outlier
						case 1:
							skew = -59_999 // just inside: not an outlier
						case 2:
							skew = -75_000
						case 3:
							ev.SkewSuspect = true
						}
						ev.SkewMS = &skew
					}
					d.final = append(d.final, ev)
					d.all = append(d.all, ev)
					if id%5 == 0 { // delivered twice
						d.all = append(d.all, ev)
					}
				}
			}
		}
	}
	return d
}

// quantileExact is ClickHouse's quantileExact: the element at index
// floor(level * n) of the sorted values.
func quantileExact(sorted []int64, level float64) int64 {
	return sorted[min(int(level*float64(len(sorted))), len(sorted)-1)]
}

func insertResults(t *testing.T, st *recorder.Store, evs []events.CheckResult, batch int) {
	t.Helper()
	ctx := natstest.Context(t)
	for i := 0; i < len(evs); i += batch {
		var rows recorder.Rows
		for _, ev := range evs[i:min(i+batch, len(evs))] {
			rows.Results = append(rows.Results, recorder.ResultRowFrom(ev))
		}
		if err := st.Insert(ctx, &rows); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDocumentedQueries runs every documented query on a known data set
// and compares with results computed here, independently.
func TestDocumentedQueries(t *testing.T) {
	ch := chtest.Start(t)
	st := openStore(t, ch, "queries")
	ctx := natstest.Context(t)
	d := makeDataset()
	// Revision 2 rows arrive in later batches than their revision 1.
	insertResults(t, st, d.all, 37)

	from := time.Date(2026, 11, 29, 22, 0, 0, 0, time.UTC)
	to := from.Add(5 * time.Hour)

	t.Run("hourly rtt", func(t *testing.T) {
		type key struct {
			hour time.Time
			site string
		}
		type agg struct {
			attempts int
			rtts     []int64
		}
		want := map[key]*agg{}
		for _, ev := range d.final {
			if ev.CheckID != "acme-roundtrip" {
				continue
			}
			k := key{ev.StartedAt.Truncate(time.Hour), ev.Site}
			if want[k] == nil {
				want[k] = &agg{}
			}
			want[k].attempts++
			if ev.RTTMS != nil {
				want[k].rtts = append(want[k].rtts, *ev.RTTMS)
			}
		}
		got, err := st.HourlyRTT(ctx, "acme-roundtrip", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 10 || len(want) != 10 {
			t.Fatalf("%d rows, want 10 (5 hours x 2 sites); expected groups %d", len(got), len(want))
		}
		for i, r := range got {
			w := want[key{r.Hour.UTC(), r.Site}]
			if w == nil {
				t.Errorf("unexpected row %+v", r)
				continue
			}
			if i > 0 && r.Hour.Before(got[i-1].Hour) {
				t.Errorf("rows not ordered by hour")
			}
			slices.Sort(w.rtts)
			if r.Attempts != uint64(w.attempts) || r.Returned != uint64(len(w.rtts)) {
				t.Errorf("%v %s: attempts %d returned %d, want %d %d", r.Hour, r.Site, r.Attempts, r.Returned, w.attempts, len(w.rtts))
			}
			for _, q := range []struct {
				level float64
				got   *int64
			}{{0.5, r.P50MS}, {0.9, r.P90MS}, {0.99, r.P99MS}} {
				if want := quantileExact(w.rtts, q.level); q.got == nil || *q.got != want {
					t.Errorf("%v %s: p%v = %v, want %d", r.Hour, r.Site, q.level*100, show(q.got), want)
				}
			}
		}
	})

	t.Run("daily slow share", func(t *testing.T) {
		type agg struct{ attempts, slow, timeouts int }
		want := map[time.Time]*agg{}
		for _, ev := range d.final {
			if ev.CheckID != "acme-roundtrip" || ev.Status == events.StatusMonitorError {
				continue
			}
			day := ev.StartedAt.Truncate(24 * time.Hour)
			if want[day] == nil {
				want[day] = &agg{}
			}
			want[day].attempts++
			switch ev.Status {
			case events.StatusSlow:
				want[day].slow++
			case events.StatusTimeout:
				want[day].timeouts++
			}
		}
		got, err := st.DailySlowShare(ctx, "acme-roundtrip", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("%d days, want 2: %+v", len(got), got)
		}
		for _, r := range got {
			w := want[r.Day.UTC()]
			if w == nil {
				t.Fatalf("unexpected day %v", r.Day)
			}
			share := float64(w.slow) / float64(w.attempts)
			if r.Attempts != uint64(w.attempts) || r.Slow != uint64(w.slow) || r.Timeouts != uint64(w.timeouts) ||
				math.Abs(r.SlowShare-share) > 0.00005+1e-12 {
				t.Errorf("%v: %+v, want attempts %d slow %d timeouts %d share %.6f", r.Day, r, w.attempts, w.slow, w.timeouts, share)
			}
			if w.slow == 0 {
				t.Errorf("%v: the data set has no slow attempt; the test proves nothing", r.Day)
			}
		}
	})

	t.Run("skew outliers", func(t *testing.T) {
		var want []string
		sorted := slices.Clone(d.final)
		sort.SliceStable(sorted, func(i, j int) bool {
			a, b := sorted[i], sorted[j]
			if !a.StartedAt.Truncate(time.Second).Equal(b.StartedAt.Truncate(time.Second)) {
				return a.StartedAt.Before(b.StartedAt)
			}
			if a.CheckID != b.CheckID {
				return a.CheckID < b.CheckID
			}
			if a.Site != b.Site {
				return a.Site < b.Site
			}
			return a.TestID < b.TestID
		})
		for _, ev := range sorted {
			if ev.SkewSuspect || ev.SkewMS != nil && (*ev.SkewMS >= 60_000 || *ev.SkewMS <= -60_000) {
				want = append(want, fmt.Sprintf("%s %s %s %v %v", ev.TestID, ev.CheckID, ev.Site, show(ev.SkewMS), ev.SkewSuspect))
			}
		}
		rows, err := st.SkewOutliers(ctx, from, to)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s %s %s %v %v", r.TestID, r.CheckID, r.Site, show(r.SkewMS), r.SkewSuspect == 1))
		}
		if !slices.Equal(got, want) {
			t.Errorf("outliers:\n got %q\nwant %q", got, want)
		}
		if len(want) < 5 {
			t.Errorf("only %d outliers in the data set", len(want))
		}
	})

	t.Run("monthly incidents", func(t *testing.T) {
		type inc struct {
			id, check, severity string
			opened              time.Time
			resolveMS           int64 // 0: still open
		}
		incs := []inc{
			{"inc-a", "acme-roundtrip", "critical", time.Date(2026, 10, 5, 10, 0, 0, 0, time.UTC), 1_800_400},
			{"inc-b", "acme-roundtrip", "critical", time.Date(2026, 10, 20, 3, 0, 0, 0, time.UTC), 7_200_000},
			{"inc-c", "acme-roundtrip", "critical", time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC), 0},
			{"inc-d", "acme-roundtrip", "warning", time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC), 600_000},
			{"inc-e", "globex-roundtrip", "critical", time.Date(2026, 11, 12, 23, 59, 0, 0, time.UTC), 3_000},
			{"inc-f", "globex-roundtrip", "critical", time.Date(2026, 9, 30, 23, 0, 0, 0, time.UTC), 60_000}, // before the range
		}
		var rows recorder.Rows
		for _, in := range incs {
			open := recorder.IncidentOpenRow(events.IncidentOpen{V: 1, IncidentID: in.id, CheckID: in.check, Severity: in.severity,
				Since: in.opened.Add(-30 * time.Minute), OpenedAt: in.opened.Add(250 * time.Millisecond)})
			rows.Incidents = append(rows.Incidents, open, open) // redelivered
			if in.resolveMS > 0 {
				rows.Incidents = append(rows.Incidents, recorder.IncidentResolvedRow(events.IncidentResolved{V: 1, IncidentID: in.id,
					CheckID: in.check, Severity: in.severity, Since: in.opened.Add(-30 * time.Minute), OpenedAt: in.opened.Add(250 * time.Millisecond),
					ResolvedAt: in.opened.Add(250*time.Millisecond + time.Duration(in.resolveMS)*time.Millisecond)}))
			}
		}
		if err := st.Insert(ctx, &rows); err != nil {
			t.Fatal(err)
		}
		type key struct {
			month           time.Time
			check, severity string
		}
		type agg struct {
			n, resolved int
			sum, max    float64
		}
		want := map[key]*agg{}
		for _, in := range incs {
			if in.opened.Month() == 9 {
				continue
			}
			k := key{time.Date(in.opened.Year(), in.opened.Month(), 1, 0, 0, 0, 0, time.UTC), in.check, in.severity}
			if want[k] == nil {
				want[k] = &agg{}
			}
			want[k].n++
			if in.resolveMS > 0 {
				s := float64(in.resolveMS) / 1000
				want[k].resolved++
				want[k].sum += s
				want[k].max = max(want[k].max, s)
			}
		}
		got, err := st.MonthlyIncidents(ctx, time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d rows, want %d: %+v", len(got), len(want), got)
		}
		for _, r := range got {
			w := want[key{r.Month.UTC(), r.CheckID, r.Severity}]
			if w == nil {
				t.Fatalf("unexpected row %+v", r)
			}
			if r.Incidents != uint64(w.n) || r.Resolved != uint64(w.resolved) {
				t.Errorf("%v %s %s: %d incidents %d resolved, want %d %d", r.Month, r.CheckID, r.Severity, r.Incidents, r.Resolved, w.n, w.resolved)
			}
			if w.resolved == 0 {
				if r.AvgResolveS != nil || r.MaxResolveS != nil {
					t.Errorf("%v %s: time to resolve %v / %v with nothing resolved, want NULL", r.Month, r.CheckID, show(r.AvgResolveS), show(r.MaxResolveS))
				}
				continue
			}
			avg := w.sum / float64(w.resolved)
			if r.AvgResolveS == nil || math.Abs(*r.AvgResolveS-avg) > 0.05+1e-9 || r.MaxResolveS == nil || math.Abs(*r.MaxResolveS-w.max) > 1e-9 {
				t.Errorf("%v %s %s: avg %v max %v, want %.2f %.3f", r.Month, r.CheckID, r.Severity, show(r.AvgResolveS), show(r.MaxResolveS), avg, w.max)
			}
		}
	})

	t.Run("migrations are idempotent", func(t *testing.T) {
		applied, err := st.Migrate(ctx, recorder.Migrations())
		if err != nil || len(applied) != 0 {
			t.Errorf("second Migrate applied %v, %v; want nothing", applied, err)
		}
		conn := rawConn(t, ch, "queries")
		if n := count(t, ctx, conn, "SELECT count() FROM schema_migrations FINAL"); n != uint64(len(recorder.Migrations())) {
			t.Errorf("schema_migrations has %d versions, want %d", n, len(recorder.Migrations()))
		}
	})
}

// TestRetentionDropsWholeExpiredMonths: DropExpired removes the monthly
// partitions that ended before the cutoff, and nothing newer.
func TestRetentionDropsWholeExpiredMonths(t *testing.T) {
	ch := chtest.Start(t)
	st := openStore(t, ch, "retention")
	ctx := natstest.Context(t)
	var evs []events.CheckResult
	for i, at := range []time.Time{
		time.Date(2026, 1, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC),
	} {
		evs = append(evs, events.CheckResult{V: 1, TestID: fmt.Sprintf("r%d", i), CheckID: "c", Site: "s", Kind: "roundtrip",
			Attempt: 1, Status: "ok", StartedAt: at, FinishedAt: at})
	}
	insertResults(t, st, evs, 10)
	dropped, err := st.DropExpired(ctx, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"check_results/202601", "check_results/202602"}; !slices.Equal(dropped, want) {
		t.Errorf("dropped %v, want %v", dropped, want)
	}
	conn := rawConn(t, ch, "retention")
	if n := count(t, ctx, conn, "SELECT count() FROM check_results WHERE test_id = 'r2'"); n != 1 {
		t.Errorf("the March row is gone")
	}
	if n := count(t, ctx, conn, "SELECT count() FROM check_results"); n != 1 {
		t.Errorf("%d rows left, want 1", n)
	}
}
