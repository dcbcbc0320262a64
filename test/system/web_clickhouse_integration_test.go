//go:build integration

package system

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/emailscout/emailscout/services/web"
)

// TestWebClickHouseHistory: with SCOUT_CLICKHOUSE_HTTP_URL set, a check
// page's plots and past incidents come from ClickHouse's HTTP interface.
// The recorder writes results and an incident into a real
// clickhouse-server (Debian's 18.16, scripts/clickhouse.sh); the web
// service, which keeps one result per site in memory and did not see the
// incident, shows 12 hourly points per site and the resolved incident.
func TestWebClickHouseHistory(t *testing.T) {
	tcp, httpPort := freePort(t), freePort(t)
	dir := t.TempDir()
	start := exec.Command("../../scripts/clickhouse.sh", "start", fmt.Sprint(tcp), fmt.Sprint(httpPort), dir)
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("scripts/clickhouse.sh start: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("../../scripts/clickhouse.sh", "stop", dir).Run() })
	ctx, cancel := context.WithCancel(natstest.Context(t))
	defer cancel()
	_, js := natstest.Connect(t, natstest.Start(t))
	pub := platform.JetStreamPublisher{JS: js}

	rcfg := recorder.Defaults()
	rcfg.DSN, rcfg.BatchWait = fmt.Sprintf("clickhouse://127.0.0.1:%d/webtest?dial_timeout=2s", tcp), 200*time.Millisecond
	rec, err := recorder.New(rcfg, recorder.Deps{JS: js})
	if err != nil {
		t.Fatal(err)
	}
	recDone := make(chan error, 1)
	go func() { recDone <- rec.Run(ctx) }()
	defer func() { cancel(); <-recDone }()

	now := time.Now().UTC()
	for h := range 12 {
		at := now.Add(-time.Duration(h+1) * time.Hour)
		for _, site := range []string{"eu-west", "us-east"} {
			rtt := int64(1500 + 100*h)
			ev := &events.CheckResult{V: 1, TestID: fmt.Sprintf("t-%s-%d", site, h), CheckID: "acme-roundtrip", Customer: "acme", Site: site,
				Kind: events.KindRoundTrip, Attempt: 1, Reason: events.ReasonInterval, Status: events.StatusOK, Revision: 1,
				StartedAt: at, FinishedAt: at.Add(2 * time.Second), RTTMS: &rtt}
			if _, err := pub.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	open := &events.IncidentOpen{V: 1, IncidentID: "inc-ch-1", CheckID: "acme-roundtrip", Customer: "acme", Kind: events.KindRoundTrip,
		Severity: events.SeverityCritical, Since: now.Add(-3 * time.Hour), OpenedAt: now.Add(-170 * time.Minute),
		Reason: "no return from 2 of 2 sites; retest failed", Quorum: 2, Eligible: 2, Notify: true}
	res := &events.IncidentResolved{V: 1, IncidentID: open.IncidentID, CheckID: open.CheckID, Customer: "acme", Kind: open.Kind,
		Severity: open.Severity, Since: open.Since, OpenedAt: open.OpenedAt, ResolvedAt: now.Add(-150 * time.Minute),
		Reason: "2 of 2 sites deliver again", Notify: true}
	for _, ev := range []events.Event{open, res} {
		if _, err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	f, err := checks.Parse("checks.yaml", []byte(`sites: [eu-west, us-east]
checks:
  - id: acme-roundtrip
    customer: acme
    kind: roundtrip
    target: webscout@acme.example
`))
	if err != nil {
		t.Fatal(err)
	}
	// One result per site in memory, and nothing replayed: what the page
	// shows beyond that comes from ClickHouse.
	w, err := web.New(web.Config{Token: "t0ken", Recent: 1, Replay: 0, ClickHouseURL: fmt.Sprintf("http://default@127.0.0.1:%d/?database=webtest", httpPort)},
		web.Deps{Checks: f, JS: js, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	get := func(path string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer t0ken")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	var d web.CheckDetail
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := json.Unmarshal([]byte(get("/api/v1/checks/acme-roundtrip")), &d); err != nil {
			t.Fatal(err)
		}
		page := get("/checks/acme-roundtrip")
		if len(d.Incidents) == 1 && strings.Count(page, `<circle class="pt"`) >= 48 {
			if !strings.Contains(page, "From ClickHouse") {
				t.Errorf("the page does not say its plots come from ClickHouse")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ClickHouse history never showed: %d incidents, %d points\n%s", len(d.Incidents),
				strings.Count(page, `<circle class="pt"`), page[strings.Index(page, "Last 24 hours"):])
		}
	}
	in := d.Incidents[0]
	if in.ID != "inc-ch-1" || in.Reason != open.Reason || in.Resolution != res.Reason || in.ResolvedAt == nil ||
		!in.ResolvedAt.Equal(res.ResolvedAt.Truncate(time.Millisecond)) || in.Severity != events.SeverityCritical {
		t.Errorf("incident from ClickHouse: %+v", in)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
