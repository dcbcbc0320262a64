//go:build integration

package recorder_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/chtest"
	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/internal/testkit"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/recorder"
	"github.com/prometheus/client_golang/prometheus"
)

// startRecorder runs a recorder on srv's database db until the test ends.
func startRecorder(t *testing.T, ctx context.Context, cfg recorder.Config, deps recorder.Deps) <-chan error {
	t.Helper()
	r, err := recorder.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("recorder: %v", err)
		}
	})
	return done
}

// TestRowsLand publishes known events through JetStream and reads every
// column of every table back: nullable legs, a late revision 2 that
// supersedes revision 1, an incident's two transitions, a notification;
// malformed events are terminated and counted.
func TestRowsLand(t *testing.T) {
	ch := chtest.Start(t)
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	ctx := natstest.Context(t)
	db := dbName(t)
	reg := prometheus.NewRegistry()
	health := platform.NewHealth()
	startRecorder(t, ctx, recorder.Config{DSN: ch.DSN(db), BatchSize: 100, BatchWait: 100 * time.Millisecond},
		recorder.Deps{JS: js, Registerer: reg, Health: health})
	pub := platform.JetStreamPublisher{JS: js}
	conn := rawConn(t, ch, "default")

	rev1 := events.CheckResult{
		V: 1, TestID: "rt000000000000000000000a", CheckID: "acme-roundtrip", Customer: "acme", Site: "eu-west",
		Kind: events.KindRoundTrip, Attempt: 1, Status: events.StatusTimeout, Revision: 1,
		StartedAt: utc(12, 0, 0, 123), SentAt: ptr(utc(12, 0, 1, 456)), FinishedAt: utc(12, 10, 0, 789),
		Reply:      &events.SMTPReply{Code: 250, Enhanced: "2.0.0", Text: "OK queued as 4XyZ"},
		ErrorClass: "timeout", Error: "no return within 10m0s",
		Timings: events.Timings{ConnectMS: 12.5, TransferMS: 80.25, TotalMS: 100.75, PeerAddress: "127.0.0.1:25"},
		Target:  "webscout@acme.example",
		Summary: "accepted by relay.monitor.example as 4XyZ at 12:00:01Z; no return and no bounce",
		Evidence: &events.Evidence{Submission: &events.Submission{Hop: "127.0.0.1:25", Server: "relay.monitor.example", QueueID: "4XyZ",
			Transcript: []string{"S: 220 relay.monitor.example ESMTP", "C: EHLO scout.monitor.example"}}},
	}
	rev2 := rev1
	rev2.Revision, rev2.Late = 2, true
	rev2.ReflectedAt, rev2.ReceivedAt = ptr(utc(12, 11, 0, 500)), ptr(utc(12, 12, 30, 250))
	rev2.FinishedAt = utc(12, 12, 30, 300)
	rev2.RTTMS, rev2.OutgoingLegMS, rev2.IncomingLegMS, rev2.SkewMS = ptr(int64(750127)), ptr(int64(660377)), ptr(int64(89750)), ptr(int64(-1500))
	rev2.Error = "returned 2m30.127s after the timeout"

	svc := events.CheckResult{
		V: 1, TestID: "sv000000000000000000000b", CheckID: "acme-smtp", Customer: "acme", Site: "us-east",
		Kind: events.KindSMTP, Attempt: 2, Status: events.StatusDegraded, Revision: 1,
		StartedAt: utc(12, 5, 0, 0), FinishedAt: utc(12, 5, 0, 24),
		SkewSuspect: true,
		Reply:       &events.SMTPReply{Code: 421, Enhanced: "4.7.0", Text: "try again later\nbusy"},
		ErrorClass:  "certificate", Error: "certificate expires in 9 days", Phase: "tls", Target: "mx.acme.example:25",
		Timings: events.Timings{DNSMS: 1.5, ConnectMS: 2.5, GreetingMS: 3.5, TLSMS: 4.5, CapsMS: 5.5, AuthMS: 6.5, MailboxMS: 7.5, TotalMS: 24, TLSVersion: "TLS1.2", PeerAddress: "127.0.0.1:2525"},
		TLS: &events.TLSInfo{Version: "TLS1.3", CipherSuite: "TLS_AES_128_GCM_SHA256", PeerNotAfter: time.Date(2026, 12, 9, 0, 0, 0, 0, time.UTC),
			DaysLeft: 9, HostnameMatch: true, Verified: false, PeerSubject: "CN=mx.acme.example", VerifyError: "x509: certificate signed by unknown authority"},
	}
	open := events.IncidentOpen{
		V: 1, IncidentID: "inc-1", CheckID: "acme-roundtrip", CheckName: "ACME mail round trip", Customer: "acme",
		Kind: events.KindRoundTrip, Severity: events.SeverityCritical, Since: utc(11, 40, 0, 0), OpenedAt: utc(12, 20, 30, 500),
		Reason: "no return from 2 of 3 sites; retest failed", Quorum: 2, Eligible: 3, Notify: true,
		Sites: []events.SiteVote{{Site: "eu-west", Verdict: "down"}, {Site: "us-east", Verdict: "down"}},
	}
	resolved := events.IncidentResolved{
		V: 1, IncidentID: "inc-1", CheckID: "acme-roundtrip", CheckName: "ACME mail round trip", Customer: "acme",
		Kind: events.KindRoundTrip, Severity: events.SeverityCritical, Since: utc(11, 40, 0, 0), OpenedAt: utc(12, 20, 30, 500),
		ResolvedAt: utc(13, 5, 0, 250), Reason: "returns again from 3 of 3 sites", Notify: true,
	}
	note := events.Notification{
		V: 1, IncidentID: "inc-1", CheckID: "acme-roundtrip", Customer: "acme", Transition: "open", Contact: "ACME on-call",
		Address: "+15555550100", Provider: "twilio", Outcome: events.NotifySent, ProviderID: "SM0123", Attempts: 1,
		Text: "ACME mail round trip is DOWN", Segments: 1, At: utc(12, 20, 31, 0),
	}

	for _, ev := range []events.Event{rev1, svc, open, note} {
		if _, err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	// Malformed: bad JSON, and a schema version this build cannot read.
	if _, err := js.Publish(ctx, "check.result.eu-west.acme-roundtrip", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "incident.open.acme-roundtrip", []byte(`{"v":99,"incident_id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "first rows", func() (bool, string) {
		n, errText := tryCount(ctx, conn, "SELECT count() FROM "+db+".check_results FINAL")
		return n == 2, fmt.Sprintf("%d results %s", n, errText)
	})
	// The late return arrives in a later batch and supersedes revision 1.
	for _, ev := range []events.Event{rev2, resolved} {
		if _, err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, ctx, "late revision and resolution", func() (bool, string) {
		r := count(t, ctx, conn, "SELECT count() FROM "+db+".check_results WHERE revision = 2")
		i := count(t, ctx, conn, "SELECT count() FROM "+db+".incidents WHERE transition = 'resolved'")
		return r == 1 && i == 1, "rows"
	})

	wantRT := recorder.ResultRow{
		TestID: "rt000000000000000000000a", CheckID: "acme-roundtrip", Customer: "acme", Site: "eu-west",
		Kind: "roundtrip", Attempt: 1, Status: "timeout", Revision: 2, Late: 1,
		StartedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), StartedAtMS: 1795953600123,
		SentAt: ptr(time.Date(2026, 11, 29, 12, 0, 1, 0, time.UTC)), SentAtMS: ptr(uint64(1795953601456)),
		ReflectedAt: ptr(time.Date(2026, 11, 29, 12, 11, 0, 0, time.UTC)), ReflectedAtMS: ptr(uint64(1795954260500)),
		ReceivedAt: ptr(time.Date(2026, 11, 29, 12, 12, 30, 0, time.UTC)), ReceivedAtMS: ptr(uint64(1795954350250)),
		FinishedAt: time.Date(2026, 11, 29, 12, 12, 30, 0, time.UTC), FinishedAtMS: 1795954350300,
		RTTMS: ptr(int64(750127)), OutgoingLegMS: ptr(int64(660377)), IncomingLegMS: ptr(int64(89750)), SkewMS: ptr(int64(-1500)),
		SkewSuspect: 0, SMTPCode: ptr(uint16(250)), SMTPEnhanced: "2.0.0", SMTPText: "OK queued as 4XyZ",
		ErrorClass: "timeout", Error: "returned 2m30.127s after the timeout", Target: "webscout@acme.example",
		ConnectMS: 12.5, TransferMS: 80.25, TotalMS: 100.75, PeerAddress: "127.0.0.1:25",
		Summary:  "accepted by relay.monitor.example as 4XyZ at 12:00:01Z; no return and no bounce",
		Warnings: []string{}, FirstHop: "relay.monitor.example", QueueID: "4XyZ",
		Transcript: []string{"S: 220 relay.monitor.example ESMTP", "C: EHLO scout.monitor.example"},
	}
	wantSvc := recorder.ResultRow{
		TestID: "sv000000000000000000000b", CheckID: "acme-smtp", Customer: "acme", Site: "us-east",
		Kind: "smtp", Attempt: 2, Status: "degraded", Revision: 1,
		StartedAt: time.Date(2026, 11, 29, 12, 5, 0, 0, time.UTC), StartedAtMS: 1795953900000,
		FinishedAt: time.Date(2026, 11, 29, 12, 5, 0, 0, time.UTC), FinishedAtMS: 1795953900024,
		SkewSuspect: 1, SMTPCode: ptr(uint16(421)), SMTPEnhanced: "4.7.0", SMTPText: "try again later\nbusy",
		ErrorClass: "certificate", Error: "certificate expires in 9 days", Phase: "tls", Target: "mx.acme.example:25",
		DNSMS: 1.5, ConnectMS: 2.5, GreetingMS: 3.5, TLSMS: 4.5, CapabilitiesMS: 5.5, AuthMS: 6.5, MailboxMS: 7.5, TotalMS: 24,
		PeerAddress: "127.0.0.1:2525", TLSVersion: "TLS1.3", TLSCipherSuite: "TLS_AES_128_GCM_SHA256",
		TLSPeerNotAfter: ptr(time.Date(2026, 12, 9, 0, 0, 0, 0, time.UTC)), TLSDaysLeft: ptr(int32(9)),
		TLSHostnameMatch: ptr(uint8(1)), TLSVerified: ptr(uint8(0)),
		TLSPeerSubject: "CN=mx.acme.example", TLSVerifyError: "x509: certificate signed by unknown authority",
		Warnings: []string{}, Transcript: []string{},
	}
	for _, want := range []recorder.ResultRow{wantRT, wantSvc} {
		var got recorder.ResultRow
		if err := conn.QueryRow(ctx, "SELECT * FROM "+db+".check_results FINAL WHERE test_id = ?", want.TestID).ScanStruct(&got); err != nil {
			t.Fatal(err)
		}
		compareRow(t, want.TestID, want, got)
	}
	if n := count(t, ctx, conn, "SELECT count() FROM "+db+".check_results FINAL"); n != 2 {
		t.Errorf("check_results FINAL has %d rows, want 2 (revision 2 replaces revision 1)", n)
	}

	wantIncidents := []recorder.IncidentRow{{
		IncidentID: "inc-1", Transition: "open", CheckID: "acme-roundtrip", CheckName: "ACME mail round trip", Customer: "acme",
		Kind: "roundtrip", Severity: "critical",
		Since: time.Date(2026, 11, 29, 11, 40, 0, 0, time.UTC), SinceMS: 1795952400000,
		OpenedAt: time.Date(2026, 11, 29, 12, 20, 30, 0, time.UTC), OpenedAtMS: 1795954830500,
		Reason: "no return from 2 of 3 sites; retest failed",
		Sites:  []string{"eu-west", "us-east"}, SiteVerdicts: []string{"down", "down"}, SiteSummaries: []string{"", ""}, Quorum: 2, Eligible: 3, Notify: 1,
	}, {
		IncidentID: "inc-1", Transition: "resolved", CheckID: "acme-roundtrip", CheckName: "ACME mail round trip", Customer: "acme",
		Kind: "roundtrip", Severity: "critical",
		Since: time.Date(2026, 11, 29, 11, 40, 0, 0, time.UTC), SinceMS: 1795952400000,
		OpenedAt: time.Date(2026, 11, 29, 12, 20, 30, 0, time.UTC), OpenedAtMS: 1795954830500,
		ResolvedAt: ptr(time.Date(2026, 11, 29, 13, 5, 0, 0, time.UTC)), ResolvedAtMS: ptr(uint64(1795957500250)),
		Reason: "returns again from 3 of 3 sites", Sites: []string{}, SiteVerdicts: []string{}, SiteSummaries: []string{}, Notify: 1,
	}}
	rows, err := conn.Query(ctx, "SELECT * FROM "+db+".incidents FINAL ORDER BY transition")
	if err != nil {
		t.Fatal(err)
	}
	var gotIncidents []recorder.IncidentRow
	for rows.Next() {
		var r recorder.IncidentRow
		if err := rows.ScanStruct(&r); err != nil {
			t.Fatal(err)
		}
		gotIncidents = append(gotIncidents, r)
	}
	rows.Close()
	if len(gotIncidents) != 2 {
		t.Fatalf("incidents: %d rows, want 2", len(gotIncidents))
	}
	for i := range wantIncidents {
		compareRow(t, "incident "+wantIncidents[i].Transition, wantIncidents[i], gotIncidents[i])
	}

	wantNote := recorder.NotificationRow{
		IncidentID: "inc-1", CheckID: "acme-roundtrip", Customer: "acme", Transition: "open", Contact: "ACME on-call",
		Address: "+15555550100", Provider: "twilio", Outcome: "sent", ProviderID: "SM0123", Attempts: 1,
		Text: "ACME mail round trip is DOWN", Segments: 1,
		At: time.Date(2026, 11, 29, 12, 20, 31, 0, time.UTC), AtMS: 1795954831000,
	}
	var gotNote recorder.NotificationRow
	if err := conn.QueryRow(ctx, "SELECT * FROM "+db+".notifications FINAL").ScanStruct(&gotNote); err != nil {
		t.Fatal(err)
	}
	compareRow(t, "notification", wantNote, gotNote)

	// The documented query of failed attempts finds the timeout with the
	// first hop that took it and its queue id.
	text, err := recorder.QueryText(recorder.QueryFailedAttempts)
	if err != nil {
		t.Fatal(err)
	}
	q, err := recorder.Expand(text, recorder.QueryParams{From: utc(11, 0, 0, 0), To: utc(13, 0, 0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	frows, err := rawConn(t, ch, db).Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var failedAttempts []string
	for frows.Next() {
		var started time.Time
		var check, site, status, summary, firstHop, queueID, bounceStatus, bounceMTA string
		if err := frows.Scan(&started, &check, &site, &status, &summary, &firstHop, &queueID, &bounceStatus, &bounceMTA); err != nil {
			t.Fatal(err)
		}
		failedAttempts = append(failedAttempts, strings.Join([]string{check, site, status, summary, firstHop, queueID}, "|"))
	}
	frows.Close()
	wantFailed := "acme-roundtrip|eu-west|timeout|accepted by relay.monitor.example as 4XyZ at 12:00:01Z; no return and no bounce|relay.monitor.example|4XyZ"
	if !slices.Contains(failedAttempts, wantFailed) {
		t.Errorf("failed attempts query: %q, want a row %q", failedAttempts, wantFailed)
	}

	if got := testkit.MustMetric(t, reg, "scout_recorder_events_malformed_total", nil); got != 2 {
		t.Errorf("malformed events counted: %v, want 2", got)
	}
	cons, err := js.Consumer(ctx, events.StreamName, events.RecorderConsumer().Durable)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "every message acked or terminated", func() (bool, string) {
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.NumAckPending == 0 && info.NumPending == 0, "pending"
	})
	if err := health.Ready(); err != nil {
		t.Errorf("not ready: %v", err)
	}
}

// compareRow compares two rows field by field, times by instant.
func compareRow(t *testing.T, what string, want, got any) {
	t.Helper()
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	for i := 0; i < wv.NumField(); i++ {
		name := wv.Type().Field(i).Name
		w, g := wv.Field(i).Interface(), gv.Field(i).Interface()
		if !equalValue(w, g) {
			t.Errorf("%s: %s = %s, want %s", what, name, show(g), show(w))
		}
	}
}

func equalValue(w, g any) bool {
	switch w := w.(type) {
	case time.Time:
		return w.Equal(g.(time.Time))
	case *time.Time:
		g := g.(*time.Time)
		if w == nil || g == nil {
			return w == nil && g == nil
		}
		return w.Equal(*g)
	}
	return reflect.DeepEqual(w, g)
}

func show(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return "NULL"
		}
		v = rv.Elem().Interface()
	}
	if t, ok := v.(time.Time); ok {
		return t.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%#v", v)
}
