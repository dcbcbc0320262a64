package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/jonboulle/clockwork"
)

// benchChecks and benchSites are the size of the benchmarks' fleet.
const benchChecks, benchSites = 10000, 2

// benchWeb is a web service with benchChecks checks at benchSites sites in
// memory, each site with 10 results, 1 % of the checks with an open
// incident, put straight into its state. It does not run: the benchmarks
// call its handler, as the HTTP server would.
func benchWeb(b *testing.B) (*Web, http.Handler) {
	b.Helper()
	var y strings.Builder
	y.WriteString("sites: [eu-west, us-east]\ndefaults:\n  interval: 20m\n  timeout: 10m\n  slow: 2m\n  quorum: 2\nchecks:\n")
	for i := range benchChecks {
		if i%2 == 0 {
			fmt.Fprintf(&y, "  - id: c%05d\n    customer: cust%03d\n    kind: roundtrip\n    target: probe%d@example.com\n", i, i%500, i)
		} else {
			fmt.Fprintf(&y, "  - id: c%05d\n    customer: cust%03d\n    kind: smtp\n    host: mx%d.example.com\n    tls: starttls\n", i, i%500, i)
		}
	}
	f, err := checks.Parse("bench.yaml", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(now)
	_, js := natstest.Connect(b, natstest.Start(b))
	w, err := New(Config{Token: testToken, Recent: 10}, Deps{Checks: f, JS: js, Clock: clock})
	if err != nil {
		b.Fatal(err)
	}
	for i, c := range f.Checks {
		for j, site := range c.Sites {
			for k := range 10 {
				at := now.Add(time.Duration(k-10) * 20 * time.Minute)
				r := result(c.ID, c.Kind, site, events.StatusOK, int64(1000+i%700+j*100+k), at)
				if c.Kind != events.KindRoundTrip {
					r.RTTMS = nil
					r.Timings = events.Timings{ConnectMS: 3, GreetingMS: 12, TLSMS: 20, TotalMS: 40}
					r.TLS = &events.TLSInfo{Version: "TLS1.3", PeerNotAfter: at.Add(60 * 24 * time.Hour), DaysLeft: 60}
				}
				w.store.addResult(r)
			}
		}
		if i%100 == 0 {
			w.store.open(opened(c.ID, c.Customer, "inc-"+c.ID, "no return from 2 of 2 sites; retest failed", now.Add(-time.Hour)))
		}
	}
	w.store.take()
	return w, w.Handler()
}

func benchGet(b *testing.B, h http.Handler, path string) {
	b.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	b.ReportAllocs()
	var size int
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: %d", path, rec.Code)
		}
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "body-bytes")
}

// BenchmarkOverviewPage renders GET / (the first 500 rows, counts and
// open incidents of all 10,000 checks × 2 sites).
func BenchmarkOverviewPage(b *testing.B) {
	_, h := benchWeb(b)
	benchGet(b, h, "/")
}

// BenchmarkOverviewPageCustomer renders GET /?customer=... (20 checks).
func BenchmarkOverviewPageCustomer(b *testing.B) {
	_, h := benchWeb(b)
	benchGet(b, h, "/?customer=cust007")
}

// BenchmarkCheckPage renders one check page (plots from memory, attempts).
func BenchmarkCheckPage(b *testing.B) {
	_, h := benchWeb(b)
	benchGet(b, h, "/checks/c00042")
}

// BenchmarkAPIOverview answers GET /api/v1/overview: every check as JSON.
func BenchmarkAPIOverview(b *testing.B) {
	_, h := benchWeb(b)
	benchGet(b, h, "/api/v1/overview")
}

// BenchmarkAPICheck answers GET /api/v1/checks/{id}.
func BenchmarkAPICheck(b *testing.B) {
	_, h := benchWeb(b)
	benchGet(b, h, "/api/v1/checks/c00042")
}

// BenchmarkLiveUpdate renders the server-sent update of 100 changed
// checks (their rows, the counts per customer, the open incidents).
func BenchmarkLiveUpdate(b *testing.B) {
	w, _ := benchWeb(b)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%05d", i*97)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.render(ids); err != nil {
			b.Fatal(err)
		}
	}
}
