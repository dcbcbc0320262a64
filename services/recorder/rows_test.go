package recorder_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/recorder"
)

func ptr[T any](v T) *T { return &v }

func TestResultRowFrom(t *testing.T) {
	start := time.Date(2026, 11, 29, 12, 0, 0, 999_000_000, time.UTC)
	tests := []struct {
		name string
		ev   events.CheckResult
		want recorder.ResultRow
	}{{
		name: "timeout without return: nullable columns NULL",
		ev: events.CheckResult{V: 1, TestID: "t1", CheckID: "c", Customer: "cu", Site: "s", Kind: "roundtrip", Attempt: 2,
			Status: "timeout", StartedAt: start, FinishedAt: start.Add(10 * time.Minute)},
		want: recorder.ResultRow{TestID: "t1", CheckID: "c", Customer: "cu", Site: "s", Kind: "roundtrip", Attempt: 2,
			Status: "timeout", Revision: 1, // revision 0 (absent) is stored as 1
			StartedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), StartedAtMS: 1795953600999,
			FinishedAt: time.Date(2026, 11, 29, 12, 10, 0, 0, time.UTC), FinishedAtMS: 1795954200999},
	}, {
		name: "late return with legs and skew",
		ev: events.CheckResult{V: 1, TestID: "t2", CheckID: "c", Site: "s", Kind: "roundtrip", Attempt: 1, Status: "timeout",
			Revision: 2, Late: true, StartedAt: start, ReflectedAt: ptr(start.Add(time.Minute)), ReceivedAt: ptr(start.Add(11 * time.Minute)),
			FinishedAt: start.Add(11 * time.Minute), RTTMS: ptr(int64(660000)), OutgoingLegMS: ptr(int64(60000)),
			IncomingLegMS: ptr(int64(600000)), SkewMS: ptr(int64(-20)), SkewSuspect: true},
		want: recorder.ResultRow{TestID: "t2", CheckID: "c", Site: "s", Kind: "roundtrip", Attempt: 1, Status: "timeout",
			Revision: 2, Late: 1,
			StartedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), StartedAtMS: 1795953600999,
			ReflectedAt: ptr(time.Date(2026, 11, 29, 12, 1, 0, 0, time.UTC)), ReflectedAtMS: ptr(uint64(1795953660999)),
			ReceivedAt: ptr(time.Date(2026, 11, 29, 12, 11, 0, 0, time.UTC)), ReceivedAtMS: ptr(uint64(1795954260999)),
			FinishedAt: time.Date(2026, 11, 29, 12, 11, 0, 0, time.UTC), FinishedAtMS: 1795954260999,
			RTTMS: ptr(int64(660000)), OutgoingLegMS: ptr(int64(60000)), IncomingLegMS: ptr(int64(600000)), SkewMS: ptr(int64(-20)), SkewSuspect: 1},
	}, {
		name: "service check with reply and TLS",
		ev: events.CheckResult{V: 1, TestID: "t3", CheckID: "c", Site: "s", Kind: "smtp", Attempt: 1, Status: "failed",
			StartedAt: start, FinishedAt: start, Reply: &events.SMTPReply{Code: 554, Enhanced: "5.7.1", Text: "no"},
			ErrorClass: "refused", Error: "554 5.7.1 no", Phase: "greeting", Target: "mx:25",
			Timings:  events.Timings{DNSMS: 1, ConnectMS: 2, GreetingMS: 3, TLSMS: 4, CapsMS: 5, AuthMS: 6, TransferMS: 7, MailboxMS: 8, TotalMS: 36, TLSVersion: "TLS1.2", PeerAddress: "127.0.0.1:25"},
			TLS:      &events.TLSInfo{CipherSuite: "X", DaysLeft: -3, HostnameMatch: false, Verified: true, PeerSubject: "CN=mx"},
			Evidence: &events.Evidence{Dialogue: []string{"S: 220 mx", "C: EHLO x", "S: 554 5.7.1 no"}}},
		want: recorder.ResultRow{TestID: "t3", CheckID: "c", Site: "s", Kind: "smtp", Attempt: 1, Status: "failed", Revision: 1,
			StartedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), StartedAtMS: 1795953600999,
			FinishedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), FinishedAtMS: 1795953600999,
			SMTPCode: ptr(uint16(554)), SMTPEnhanced: "5.7.1", SMTPText: "no", ErrorClass: "refused", Error: "554 5.7.1 no",
			Phase: "greeting", Target: "mx:25", DNSMS: 1, ConnectMS: 2, GreetingMS: 3, TLSMS: 4, CapabilitiesMS: 5, AuthMS: 6,
			TransferMS: 7, MailboxMS: 8, TotalMS: 36, PeerAddress: "127.0.0.1:25",
			TLSVersion:     "TLS1.2", // TLS.Version empty: the timings' version stays
			TLSCipherSuite: "X", TLSDaysLeft: ptr(int32(-3)), TLSHostnameMatch: ptr(uint8(0)), TLSVerified: ptr(uint8(1)), TLSPeerSubject: "CN=mx",
			Transcript: []string{"S: 220 mx", "C: EHLO x", "S: 554 5.7.1 no"}}, // the service check's dialogue
	}, {
		name: "zero times are stored as the epoch",
		ev:   events.CheckResult{V: 1, TestID: "t4", CheckID: "c", Site: "s", Kind: "imap", Attempt: 1, Status: "monitor_error", SentAt: &time.Time{}},
		want: recorder.ResultRow{TestID: "t4", CheckID: "c", Site: "s", Kind: "imap", Attempt: 1, Status: "monitor_error", Revision: 1,
			StartedAt: time.Unix(0, 0).UTC(), FinishedAt: time.Unix(0, 0).UTC()},
	}}
	// An evidence-bearing attempt: a bounce after a submission, with hops.
	tests = append(tests, struct {
		name string
		ev   events.CheckResult
		want recorder.ResultRow
	}{
		name: "failed with evidence",
		ev: events.CheckResult{V: 1, TestID: "t5", CheckID: "c", Site: "s", Kind: "roundtrip", Attempt: 1, Status: "failed",
			StartedAt: start, FinishedAt: start, Summary: "mx1 refused the probe: 550 5.1.1 no", Warnings: []string{"w"},
			Evidence: &events.Evidence{
				Submission: &events.Submission{Hop: "relay:25", Server: "relay.example", QueueID: "4XyZ", Transcript: []string{"S: 220 relay.example", "C: EHLO x"}},
				Deferred:   &events.SMTPReply{Code: 451, Enhanced: "4.7.1", Text: "later"},
				Bounce:     &events.Bounce{Action: "failed", Status: "5.1.1", Diagnostic: "550 5.1.1 no", RemoteMTA: "mx1", ReportingMTA: "relay.example"},
				Hops:       []events.Hop{{By: "mx1", ID: "A"}},
			}},
		want: recorder.ResultRow{TestID: "t5", CheckID: "c", Site: "s", Kind: "roundtrip", Attempt: 1, Status: "failed", Revision: 1,
			StartedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), StartedAtMS: 1795953600999,
			FinishedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), FinishedAtMS: 1795953600999,
			Summary: "mx1 refused the probe: 550 5.1.1 no", Warnings: []string{"w"}, FirstHop: "relay.example", QueueID: "4XyZ",
			Transcript: []string{"S: 220 relay.example", "C: EHLO x"}, DeferredReply: "451 4.7.1 later",
			BounceAction: "failed", BounceStatus: "5.1.1", BounceDiagnostic: "550 5.1.1 no", BounceRemoteMTA: "mx1", BounceReportingMTA: "relay.example",
			Hops: `[{"by":"mx1","id":"A"}]`},
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := recorder.ResultRowFrom(tt.ev)
			// Arrays are never NULL: empty when the event had none.
			if tt.want.Warnings == nil {
				tt.want.Warnings = []string{}
			}
			if tt.want.Transcript == nil {
				tt.want.Transcript = []string{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ResultRowFrom:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestIncidentAndNotificationRows(t *testing.T) {
	opened := time.Date(2026, 10, 5, 8, 30, 0, 250_000_000, time.UTC)
	open := recorder.IncidentOpenRow(events.IncidentOpen{V: 1, IncidentID: "i1", CheckID: "c", Customer: "cu", Kind: "roundtrip",
		Severity: "warning", Since: opened.Add(-time.Hour), OpenedAt: opened, Reason: "slow at 2 of 2 sites", Quorum: 2, Eligible: 2,
		Sites: []events.SiteVote{{Site: "a", Verdict: "slow"}, {Site: "b", Verdict: "slow"}}, Notify: false, Silenced: "warnings are recorded only"})
	wantOpen := recorder.IncidentRow{IncidentID: "i1", Transition: "open", CheckID: "c", Customer: "cu", Kind: "roundtrip", Severity: "warning",
		Since: time.Date(2026, 10, 5, 7, 30, 0, 0, time.UTC), SinceMS: 1791185400250,
		OpenedAt: time.Date(2026, 10, 5, 8, 30, 0, 0, time.UTC), OpenedAtMS: 1791189000250,
		Reason: "slow at 2 of 2 sites", Sites: []string{"a", "b"}, SiteVerdicts: []string{"slow", "slow"}, SiteSummaries: []string{"", ""},
		Quorum: 2, Eligible: 2, Silenced: "warnings are recorded only"}
	if !reflect.DeepEqual(open, wantOpen) {
		t.Errorf("open row:\n got %+v\nwant %+v", open, wantOpen)
	}
	res := recorder.IncidentResolvedRow(events.IncidentResolved{V: 1, IncidentID: "i1", CheckID: "c", Severity: "warning",
		Since: opened.Add(-time.Hour), OpenedAt: opened, ResolvedAt: opened.Add(90 * time.Minute), Reason: "ok", Notify: true})
	if res.Transition != "resolved" || res.OpenedAtMS != 1791189000250 || res.ResolvedAtMS == nil || *res.ResolvedAtMS != 1791194400250 ||
		!res.ResolvedAt.Equal(time.Date(2026, 10, 5, 10, 0, 0, 0, time.UTC)) || res.Notify != 1 || res.Sites == nil {
		t.Errorf("resolved row %+v", res)
	}
	n := recorder.NotificationRowFrom(events.Notification{V: 1, IncidentID: "i1", CheckID: "c", Transition: "resolved", Contact: "ops",
		Address: "+15555550100", Provider: "twilio", Outcome: "failed", Attempts: 3, Error: "21211 invalid number", Text: "t", Segments: 2, At: opened})
	wantN := recorder.NotificationRow{IncidentID: "i1", CheckID: "c", Transition: "resolved", Contact: "ops", Address: "+15555550100",
		Provider: "twilio", Outcome: "failed", Attempts: 3, Error: "21211 invalid number", Text: "t", Segments: 2,
		At: time.Date(2026, 10, 5, 8, 30, 0, 0, time.UTC), AtMS: 1791189000250}
	if n != wantN {
		t.Errorf("notification row:\n got %+v\nwant %+v", n, wantN)
	}
}
