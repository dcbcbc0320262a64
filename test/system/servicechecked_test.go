package system

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probe"
)

// TestServiceCheckedVerdicts: the evaluator makes the verdict of a service
// check from what the sender observed (service.checked): the class's
// status (probe.StatusOf), "slow" for a dialogue that passed but took the
// check's slow threshold or longer, the observation's evidence copied into
// check.result, and one result per test however often the observation is
// delivered.
func TestServiceCheckedVerdicts(t *testing.T) {
	const smtpCheck = `
sites: [eu-west]
checks:
  - {id: acme-smtp, customer: acme, kind: smtp, host: mx.acme.example, interval: 1h, timeout: 30s, slow: 2s, retries: 0, quorum: 1}
`
	reply := &events.SMTPReply{Code: 554, Enhanced: "5.7.1", Text: "client host blocked"}
	cases := []struct {
		name    string
		class   string
		totalMS float64
		want    string
	}{
		{"passed", "", 120, events.StatusOK},
		{"passed at the slow threshold", "", 2000, events.StatusSlow},
		{"refused", probe.ClassRefused, 20, events.StatusFailed},
		{"refused and slow stays failed", probe.ClassRefused, 5000, events.StatusFailed},
		{"certificate expiring", probe.ClassCertExpiring, 80, events.StatusDegraded},
		{"timed out", probe.ClassTimeout, 30000, events.StatusTimeout},
		{"not run: stale", probe.ClassStale, 0, events.StatusMonitorError},
		{"not run: no password", probe.ClassNoPassword, 0, events.StatusMonitorError},
		{"our OAuth credential refused", probe.ClassCredentials, 40, events.StatusMonitorError},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, smtpCheck, func(string, events.TestScheduled, time.Time) outcome { return outcome{sent: "none"} })
			s.startEvaluator()
			s.settle()
			now := s.clock.Now()
			id, _ := events.NewTestID(rand.NewChaCha8([32]byte{byte(i)}))
			s.publish(events.TestScheduled{V: 1, TestID: id, CheckID: "acme-smtp", Site: "eu-west", Kind: events.KindSMTP,
				Attempt: 1, Reason: events.ReasonInterval, Slot: 1, ScheduledAt: now, NotAfter: now.Add(time.Minute)})
			s.settle()
			obs := events.ServiceChecked{V: 1, TestID: id, CheckID: "acme-smtp", Site: "eu-west", Kind: events.KindSMTP,
				Attempt: 1, Reason: events.ReasonInterval, StartedAt: now, FinishedAt: now.Add(time.Duration(tc.totalMS) * time.Millisecond),
				Target: "mx.acme.example:25", ErrorClass: tc.class, Timings: events.Timings{TotalMS: tc.totalMS, TLSVersion: "TLS1.3"}}
			if tc.class == probe.ClassRefused {
				obs.Phase, obs.Reply, obs.Error = probe.PhaseCapabilities, reply, "capabilities: 554 5.7.1 client host blocked"
				obs.Evidence = &events.Evidence{Dialogue: []string{"S: 220 mx.acme.example ESMTP", "C: EHLO eu-west.monitor.example", "S: 554 5.7.1 client host blocked"}}
			}
			// Delivered twice (raw publishes, no message id).
			data, _ := json.Marshal(obs)
			for range 2 {
				if _, err := s.js.Publish(s.ctx, obs.Subject(), data); err != nil {
					t.Fatal(err)
				}
				s.settle()
			}
			s.advance(5 * time.Minute) // past the result deadline: nothing more happens
			var rs []events.CheckResult
			for _, r := range s.results() {
				if r.TestID == id {
					rs = append(rs, r)
				}
			}
			if len(rs) != 1 {
				t.Fatalf("%d results, want 1: %+v", len(rs), rs)
			}
			r := rs[0]
			if r.Status != tc.want || r.Kind != events.KindSMTP || r.Customer != "acme" || r.TestID != id || r.Revision != 1 {
				t.Errorf("result %s %s customer %q revision %d, want %s", r.Kind, r.Status, r.Customer, r.Revision, tc.want)
			}
			if r.ErrorClass != tc.class || r.Target != "mx.acme.example:25" || r.Timings != obs.Timings ||
				!r.StartedAt.Equal(obs.StartedAt) || !r.FinishedAt.Equal(obs.FinishedAt) {
				t.Errorf("evidence not copied: %+v", r)
			}
			if tc.class == probe.ClassRefused && (r.Reply == nil || *r.Reply != *reply || r.Phase != probe.PhaseCapabilities || r.Error != obs.Error ||
				r.Evidence == nil || !slices.Equal(r.Evidence.Dialogue, obs.Evidence.Dialogue)) {
				t.Errorf("refusal evidence: reply %+v phase %q error %q evidence %+v", r.Reply, r.Phase, r.Error, r.Evidence)
			}
			wantSummary := map[string]string{
				probe.ClassRefused: "mx.acme.example:25 refused at capabilities: 554 5.7.1 client host blocked",
			}[tc.class]
			if r.Summary != wantSummary {
				t.Errorf("summary %q, want %q", r.Summary, wantSummary)
			}
		})
	}
}
