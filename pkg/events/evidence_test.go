package events

import (
	"strings"
	"testing"
	"time"
)

// TestEvidenceDetails: every part of the evidence is written, sub-lines
// indented, unknown values as "?", nothing for nil evidence.
func TestEvidenceDetails(t *testing.T) {
	at := time.Date(2026, 12, 5, 12, 0, 1, 0, time.UTC)
	delay := int64(1500)
	e := &Evidence{
		Submission: &Submission{Hop: "127.0.0.1:25", Server: "relay.monitor.example", TLSVersion: "TLS1.3", QueueID: "4XyZ",
			AcceptedAt: at, Transcript: []string{"S: 220 relay.monitor.example ESMTP", "C: EHLO eu-west"}},
		Deferred: &SMTPReply{Code: 451, Enhanced: "4.7.1", Text: "greylisted"},
		Bounce:   &Bounce{Action: "failed", Status: "5.1.1", RemoteMTA: "mx1.acme.example", Diagnostic: "550 5.1.1 no such user"},
		Hops:     []Hop{{From: "relay", By: "mx1.acme.example", With: "ESMTPS", ID: "A1", At: at}, {By: "mx2", At: at.Add(1500 * time.Millisecond), DelayMS: &delay}},
		Dialogue: []string{"S: 554 5.7.1 go away", "C: QUIT"},
	}
	want := `submitted  to relay.monitor.example (127.0.0.1:25, TLS1.3), queued as 4XyZ at 2026-12-05 12:00:01Z
  S: 220 relay.monitor.example ESMTP
  C: EHLO eu-west
deferred   451 4.7.1 greylisted
bounce     failed, status 5.1.1, reported by ?
  remote MTA       mx1.acme.example
  diagnostic       550 5.1.1 no such user
hop 1      from relay by mx1.acme.example with ESMTPS id A1 at 2026-12-05 12:00:01Z
hop 2      from ? by mx2 with ? id ? at 2026-12-05 12:00:02Z (+1.5s, remote clocks)
dialogue
  S: 554 5.7.1 go away
  C: QUIT`
	if got := strings.Join(e.Details(), "\n"); got != want {
		t.Errorf("Details:\n%s\nwant:\n%s", got, want)
	}
	var none *Evidence
	if got := none.Details(); got != nil {
		t.Errorf("nil evidence: %q", got)
	}
}
