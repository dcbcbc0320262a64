package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/events"
)

// TestIncidentShow: `scout incident show` finds an incident in the stream
// by its id (or the short id of an SMS) and prints its attempts with the
// whole evidence: the bounce, the submission and its dialogue, the
// resolution.
func TestIncidentShow(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	ctx := natstest.Context(t)
	pub := platform.JetStreamPublisher{JS: js}
	// Event times near the stream's own: the command reads from a start
	// time (the stream keeps publication times).
	at := time.Now().UTC().Truncate(time.Second).Add(-2 * time.Hour)
	bounce := &events.Bounce{Action: "failed", Status: "5.1.1", Diagnostic: "550 5.1.1 <webscout@acme.example>: User unknown",
		RemoteMTA: "mx1.acme.example", ReportingMTA: "relay.monitor.example", FinalRecipient: "webscout@acme.example",
		Summary: "mx1.acme.example refused the probe: 550 5.1.1 <webscout@acme.example>: User unknown"}
	result := func(id, site string, attempt int) events.CheckResult {
		return events.CheckResult{V: 1, TestID: id, CheckID: "acme-rt", Customer: "acme", Site: site, Kind: events.KindRoundTrip,
			Attempt: attempt, Status: events.StatusFailed, Revision: 1, StartedAt: at, FinishedAt: at.Add(5 * time.Second),
			ErrorClass: "bounced", Error: bounce.Summary, Summary: bounce.Summary,
			Evidence: &events.Evidence{Bounce: bounce, Submission: &events.Submission{Hop: "127.0.0.1:25", Server: "relay.monitor.example",
				TLSVersion: "TLS1.3", QueueID: "4XyZ", AcceptedAt: at, Transcript: []string{"S: 220 relay.monitor.example ESMTP", "C: AUTH PLAIN ****"}}}}
	}
	open := events.IncidentOpen{V: 1, IncidentID: "inc-rtkkowtutap5", CheckID: "acme-rt", CheckName: "ACME mail", Customer: "acme",
		Kind: events.KindRoundTrip, Severity: events.SeverityCritical, Since: at, OpenedAt: at.Add(10 * time.Second),
		Reason: bounce.Summary + " (2 of 2 sites)", Quorum: 2, Eligible: 2, Notify: true,
		Sites: []events.SiteVote{
			{Site: "eu-west", Verdict: "down", Attempts: []events.AttemptRef{{TestID: "t-eu", Attempt: 1, Status: "failed", StartedAt: at, Summary: bounce.Summary}}},
			{Site: "us-east", Verdict: "down", Attempts: []events.AttemptRef{{TestID: "t-us", Attempt: 2, Status: "failed", StartedAt: at, Summary: bounce.Summary}}},
		}}
	for _, ev := range []events.Event{result("t-eu", "eu-west", 1), result("t-us", "us-east", 2), open,
		events.IncidentResolved{V: 1, IncidentID: open.IncidentID, CheckID: "acme-rt", Severity: "critical", Since: at, OpenedAt: open.OpenedAt,
			ResolvedAt: at.Add(time.Hour), Reason: "2 of 2 sites deliver again", Notify: true}} {
		if _, err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	getenv := func(k string) string {
		if k == "SCOUT_NATS_URL" {
			return srv.URL
		}
		return ""
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"incident", "show", "inc-rtkkow"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"Incident inc-rtkkowtutap5  CRITICAL  acme-rt",
		"Site eu-west: down", "Site us-east: down", "attempt 2  FAILED",
		"mx1.acme.example refused the probe: 550 5.1.1",
		"submitted  to relay.monitor.example (127.0.0.1:25, TLS1.3), queued as 4XyZ",
		"S: 220 relay.monitor.example ESMTP", "C: AUTH PLAIN ****",
		"bounce     failed, status 5.1.1, reported by relay.monitor.example", "remote MTA       mx1.acme.example",
		"resolved  " + stamp(at.Add(time.Hour)) + ": 2 of 2 sites deliver again",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"incident", "show", open.IncidentID, "--json", "--nats", srv.URL}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	var rep incidentReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Results) != 2 || rep.Resolved == nil {
		t.Errorf("--json: %v, %d results, resolved %v", err, len(rep.Results), rep.Resolved)
	}
	err := run(context.Background(), []string{"incident", "show", "inc-nothere", "--nats", srv.URL}, func(string) string { return "" }, &out)
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "no incident") {
		t.Errorf("unknown incident: %v (exit %d)", err, exitCode(err))
	}
}
