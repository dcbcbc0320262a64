package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// fixture is the check file of the tests: two customers, a round trip and
// a service check for acme, a round trip for globex, two sites.
const fixture = `sites: [eu-west, us-east]
defaults:
  interval: 1m
  timeout: 30s
  slow: 10s
  quorum: 2
checks:
  - id: acme-roundtrip
    customer: acme
    name: ACME mail round trip
    kind: roundtrip
    target: webscout@acme.example
  - id: acme-smtp
    customer: acme
    name: ACME mail server
    kind: smtp
    host: mx.acme.example
    tls: starttls
  - id: globex-roundtrip
    customer: globex
    name: Globex mail round trip
    kind: roundtrip
    target: secret-probe@globex.example
`

const testToken = "s3cr3t-token-for-tests"

// stack is a web service on a real embedded NATS server, served by a
// real HTTP server on loopback.
type stack struct {
	t    testing.TB
	js   jetstream.JetStream
	pub  platform.JetStreamPublisher
	w    *Web
	srv  *httptest.Server
	logs *testkit.LogBuffer
	reg  *prometheus.Registry
	file *checks.File
}

// newStack starts NATS and publishes nothing; start runs the service.
func newStack(t testing.TB, file string) *stack {
	t.Helper()
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	f, err := checks.Parse("checks.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	return &stack{t: t, js: js, pub: platform.JetStreamPublisher{JS: js}, logs: &testkit.LogBuffer{}, reg: prometheus.NewRegistry(), file: f}
}

// start runs the web service with cfg (the token set unless cfg has
// one, the default replay unless cfg has one) until the test ends and
// waits until its replay caught up.
func (s *stack) start(cfg Config, open bool) {
	s.t.Helper()
	if cfg.Token == "" && cfg.AuthHeader == "" && !open {
		cfg.Token = testToken
	}
	if cfg.Flush == 0 {
		cfg.Flush = 50 * time.Millisecond
	}
	if cfg.Replay == 0 {
		cfg.Replay = Defaults().Replay // zero is a setting: no replay
	}
	cfg.Listen = "" // served by httptest below
	h := platform.NewHealth()
	w, err := New(cfg, Deps{Checks: s.file, JS: s.js, Logger: slog.New(slog.NewJSONHandler(s.logs, nil)), Registerer: s.reg, Health: h, Open: open})
	if err != nil {
		s.t.Fatal(err)
	}
	s.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	s.srv = httptest.NewServer(w.Handler())
	s.t.Cleanup(func() {
		s.srv.CloseClientConnections()
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("Run: %v", err)
		}
		s.srv.Close()
	})
	testkit.WaitFor(s.t, "the replay to catch up", func() bool { return h.Ready() == nil })
}

func (s *stack) publish(evs ...events.Event) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ev := range evs {
		if _, err := s.pub.Publish(ctx, ev); err != nil {
			s.t.Fatalf("publish %s: %v", ev.Subject(), err)
		}
	}
}

// get requests path with the bearer token (when auth) and returns the
// status and body.
func (s *stack) get(path string, auth bool) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.srv.URL+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// getJSON GETs path with the token and decodes a 200 answer into v.
func (s *stack) getJSON(path string, v any) {
	s.t.Helper()
	code, body := s.get(path, true)
	if code != http.StatusOK {
		s.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		s.t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}

// stateOf is check id's state in the overview API.
func (s *stack) stateOf(id string) string {
	var o Overview
	s.getJSON("/api/v1/overview", &o)
	for _, c := range o.Checks {
		if c.ID == id {
			return c.State
		}
	}
	return "missing"
}

var testSeq int

// result is a check.result of check at site: status, a round trip of rtt
// milliseconds (rtt < 0: none), started at.
func result(check, kind, site, status string, rtt int64, at time.Time) *events.CheckResult {
	testSeq++
	r := &events.CheckResult{V: 1, TestID: fmt.Sprintf("t%06d", testSeq), CheckID: check, Customer: strings.SplitN(check, "-", 2)[0],
		Site: site, Kind: kind, Attempt: 1, Reason: events.ReasonInterval, Status: status, Revision: 1,
		StartedAt: at, FinishedAt: at.Add(2 * time.Second)}
	if rtt >= 0 {
		r.RTTMS = &rtt
	}
	return r
}

func opened(check, customer, id, reason string, at time.Time) *events.IncidentOpen {
	return &events.IncidentOpen{V: 1, IncidentID: id, CheckID: check, Customer: customer, Kind: events.KindRoundTrip,
		Severity: events.SeverityCritical, Since: at.Add(-time.Minute), OpenedAt: at, Reason: reason, Quorum: 2, Eligible: 2, Notify: true}
}

func resolved(o *events.IncidentOpen, at time.Time) *events.IncidentResolved {
	return &events.IncidentResolved{V: 1, IncidentID: o.IncidentID, CheckID: o.CheckID, Customer: o.Customer, Kind: o.Kind,
		Severity: o.Severity, Since: o.Since, OpenedAt: o.OpenedAt, ResolvedAt: at, Reason: "2 of 2 sites deliver again", Notify: true}
}
