package web

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
)

func putKV(t *testing.T, s *stack, bucket, key string, v any) {
	t.Helper()
	ctx := natstest.Context(t)
	kv, err := s.js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}
}

// TestStateFromKVStreamAndLive: the verdicts and the open incident in
// KV, and the results already in the stream, are there at start; new
// events move the states; each check and site keeps Recent results.
func TestStateFromKVStreamAndLive(t *testing.T) {
	s := newStack(t, fixture)
	now := time.Now().UTC().Truncate(time.Second)
	open := opened("acme-roundtrip", "acme", "inc-acme-1", "no return from 2 of 2 sites; retest failed", now.Add(-5*time.Minute))
	putKV(t, s, events.BucketEvaluator, "site.acme-roundtrip.eu-west", siteState{CheckID: "acme-roundtrip", Site: "eu-west", Verdict: verdictDown,
		Since: now.Add(-10 * time.Minute), LastStartedAt: now.Add(-6 * time.Minute)})
	putKV(t, s, events.BucketIncidents, "acme-roundtrip", checkState{CheckID: "acme-roundtrip", Open: open})
	smtp := result("acme-smtp", events.KindSMTP, "us-east", events.StatusDegraded, -1, now.Add(-time.Minute))
	smtp.Customer, smtp.ErrorClass = "acme", "cert_expiring"
	smtp.Timings = events.Timings{ConnectMS: 3, GreetingMS: 10, TLSMS: 25, TotalMS: 52}
	smtp.TLS = &events.TLSInfo{Version: "TLS1.3", PeerNotAfter: now.Add(9 * 24 * time.Hour), DaysLeft: 9}
	s.publish(result("globex-roundtrip", events.KindRoundTrip, "eu-west", events.StatusOK, 1200, now.Add(-2*time.Minute)), smtp)
	s.start(Config{Recent: 3}, false)

	var o Overview
	s.getJSON("/api/v1/overview", &o)
	if len(o.Checks) != 3 || o.Checks[0].ID != "acme-roundtrip" || o.Checks[0].State != StateDown || o.Checks[0].Incident == nil ||
		o.Checks[0].Incident.Reason != open.Reason {
		t.Fatalf("the open incident from KV is not first: %+v", o.Checks)
	}
	if o.Counts != (Counts{Up: 1, Warning: 1, Down: 1}) {
		t.Errorf("counts %+v", o.Counts)
	}
	byID := map[string]CheckSummary{}
	for _, c := range o.Checks {
		byID[c.ID] = c
	}
	if v := byID["acme-roundtrip"].Sites[0]; v.Site != "eu-west" || v.Verdict != verdictDown {
		t.Errorf("acme-roundtrip eu-west from KV: %+v", v)
	}
	if g := byID["globex-roundtrip"]; g.State != StateUp || g.Sites[0].RTTMS == nil || *g.Sites[0].RTTMS != 1200 || g.Sites[1].Verdict != verdictUnknown {
		t.Errorf("globex-roundtrip from the stream: %+v", g)
	}
	if m := byID["acme-smtp"].Sites[1]; byID["acme-smtp"].State != StateWarning || m.CertDaysLeft == nil || *m.CertDaysLeft != 9 ||
		m.Timings == nil || m.Timings.TLSMS != 25 {
		t.Errorf("acme-smtp us-east: %+v", m)
	}

	// Live: the incident resolves and both sites pass again.
	s.publish(resolved(open, now))
	testkit.WaitFor(t, "acme-roundtrip to leave down", func() bool { return s.stateOf("acme-roundtrip") == StateWarning })
	for i := range 5 {
		at := now.Add(time.Duration(i) * time.Second)
		s.publish(result("acme-roundtrip", events.KindRoundTrip, "eu-west", events.StatusOK, int64(900+i), at),
			result("acme-roundtrip", events.KindRoundTrip, "us-east", events.StatusOK, int64(800+i), at))
	}
	testkit.WaitFor(t, "acme-roundtrip up", func() bool { return s.stateOf("acme-roundtrip") == StateUp })
	var d CheckDetail
	testkit.WaitFor(t, "every result", func() bool {
		s.getJSON("/api/v1/checks/acme-roundtrip", &d)
		return len(d.Results) == 6 && *d.Results[0].RTTMS == 904
	})
	if len(d.Incidents) != 1 || d.Incidents[0].ResolvedAt == nil || d.Incidents[0].Reason != open.Reason {
		t.Errorf("past incidents: %+v", d.Incidents)
	}

	// Live: a new incident.
	o2 := opened("globex-roundtrip", "globex", "inc-globex-1", "no return from 2 of 2 sites", now)
	s.publish(o2)
	testkit.WaitFor(t, "globex-roundtrip down", func() bool { return s.stateOf("globex-roundtrip") == StateDown })
	var inc IncidentList
	s.getJSON("/api/v1/incidents", &inc)
	if len(inc.Open) != 1 || inc.Open[0].ID != "inc-globex-1" || len(inc.Recent) != 1 {
		t.Errorf("incidents: %+v", inc)
	}
	if code, _ := s.get("/api/v1/checks/nope", true); code != http.StatusNotFound {
		t.Errorf("unknown check: %d", code)
	}
}

// TestEventsPushChangedRows: a page connected to /events gets the row of
// a check that changed, already rendered, with its new state.
func TestEventsPushChangedRows(t *testing.T) {
	s := newStack(t, fixture)
	s.start(Config{}, false)
	ctx, cancel := context.WithTimeout(natstest.Context(t), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.srv.URL+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	testkit.WaitFor(t, "the page to subscribe", func() bool { return s.w.hub.count() == 1 })
	s.publish(opened("globex-roundtrip", "globex", "inc-g", "no return from 2 of 2 sites", time.Now()))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var u update
		if err := json.Unmarshal([]byte(data), &u); err != nil || len(u.Rows) == 0 {
			continue
		}
		r := u.Rows[0]
		if r.ID != "globex-roundtrip" || r.State != StateDown || !strings.Contains(r.HTML, `id="row-globex-roundtrip"`) ||
			!strings.Contains(r.HTML, "b-down") || !strings.Contains(u.Incidents, "no return from 2 of 2 sites") ||
			u.Counts["globex"].Down != 1 || u.Counts[""].Down != 1 {
			t.Fatalf("update %+v", u)
		}
		return
	}
	t.Fatalf("no update on /events: %v", sc.Err())
}

// TestEmptyListenServesNothing: a Config built in code with Listen empty
// (scout dev, which mounts Handler on its own server) opens no port of its
// own: FillDefaults does not turn "" into the environment's ":8080".
func TestEmptyListenServesNothing(t *testing.T) {
	cfg := Defaults()
	cfg.Listen = ""
	platform.FillDefaults(&cfg)
	if cfg.Listen != "" {
		t.Errorf("Listen = %q after FillDefaults, want empty", cfg.Listen)
	}
	if Defaults().Listen != ":8080" {
		t.Errorf("the environment's default is %q, want :8080", Defaults().Listen)
	}
}
