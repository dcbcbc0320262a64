package system

import (
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// unknownUser is the bounce Postfix writes for a probe to a mailbox that
// does not exist (as pkg/dsn reads it).
var unknownUser = events.Bounce{Action: events.BounceFailed, Status: "5.1.1",
	Diagnostic: "550 5.1.1 <webscout@acme.example>: Recipient address rejected: User unknown in local recipient table",
	RemoteMTA:  "mx1.acme.example", ReportingMTA: "mail.relay.example", Parser: "rfc3464",
	Summary: "mx1.acme.example refused the probe: 550 5.1.1 <webscout@acme.example>: Recipient address rejected: User unknown in local recipient table"}

// TestSimHardFailureToldInTwoMinutes: with the defaults (interval 20m,
// timeout 10m, retry_delay 30s, retries 1, quorum 2), the customer's MX
// starts refusing the probe mailbox at three sites; each refusal comes back
// as a bounce 5 s after the probe. The first bounce ends its attempt at once
// as failed and asks the other sites to confirm now; their confirmations
// bounce too, and the incident opens within 2 minutes of the first bounce
// (docs/evaluation.md, "Hard failures"), with the bounce's words as its
// reason.
func TestSimHardFailureToldInTwoMinutes(t *testing.T) {
	var broken time.Time
	s := newSim(t, defaultsThreeSites, func(_ string, _ events.TestScheduled, now time.Time) outcome {
		if !broken.IsZero() && !now.Before(broken) {
			return outcome{bounce: &unknownUser, bounceAfter: 5 * time.Second}
		}
		return outcome{rtt: 3 * time.Second}
	})
	s.run()
	s.firstGoodTest()
	broken = s.clock.Now()
	var firstBounce time.Time
	// A minute at a time: advance stops at every due moment within it, and
	// the times compared are the events' own.
	for i := 0; i < 3*60 && len(s.opens()) == 0; i++ {
		s.advance(time.Minute)
		if firstBounce.IsZero() {
			for _, r := range s.results() {
				if r.Status == events.StatusFailed {
					firstBounce = r.FinishedAt
				}
			}
		}
	}
	opens := s.opens()
	if len(opens) != 1 {
		t.Fatalf("%d incidents, want 1", len(opens))
	}
	took := opens[0].OpenedAt.Sub(firstBounce)
	t.Logf("hard failure: first bounce at %s, incident open %s later", firstBounce.Format(time.TimeOnly), took)
	if took > 2*time.Minute || took < 0 {
		t.Errorf("incident opened %s after the first bounce, want within 2m", took)
	}
	if r := opens[0].Reason; !strings.HasPrefix(r, "mx1.acme.example refused the probe: 550 5.1.1") || opens[0].Severity != events.SeverityCritical {
		t.Errorf("incident %s: %q", opens[0].Severity, r)
	}
	for _, v := range opens[0].Sites {
		for _, a := range v.Attempts {
			if a.Status != events.StatusFailed || a.Summary != unknownUser.Summary {
				t.Errorf("site %s attempt %+v, want failed with the bounce as its summary", v.Site, a)
			}
		}
	}
}

// TestSimOneSiteBounces: one site's probes bounce (its path is broken, say a
// blocklist that hits only its relay) while two sites deliver: the bouncing
// site goes down, nothing opens.
func TestSimOneSiteBounces(t *testing.T) {
	s := newSim(t, defaultsThreeSites, func(site string, _ events.TestScheduled, _ time.Time) outcome {
		if site == "eu-west" {
			return outcome{bounce: &unknownUser, bounceAfter: 5 * time.Second}
		}
		return outcome{rtt: 3 * time.Second}
	})
	s.run()
	s.advance(3 * time.Hour)
	if n := len(s.opens()); n != 0 {
		t.Fatalf("%d incidents for one bouncing site, want none", n)
	}
	failed := 0
	for _, r := range s.results() {
		if r.Site == "eu-west" && r.Status == events.StatusFailed {
			failed++
		}
	}
	if failed == 0 {
		t.Error("eu-west's bounces made no failed result")
	}
}

// TestSimGreylistingIsNoFailure: the customer's MX greylists every probe
// for 5 minutes (4xx, then it takes it). A deferral is not a failure: no
// attempt fails, no critical incident opens; the round trips are slow
// (they count from the first attempt) and say so in a warning.
func TestSimGreylistingIsNoFailure(t *testing.T) {
	s := newSim(t, defaultsThreeSites, func(string, events.TestScheduled, time.Time) outcome {
		return outcome{deferFor: 5 * time.Minute, rtt: 5*time.Minute + 3*time.Second}
	})
	s.run()
	s.advance(2 * time.Hour)
	rs := s.results()
	if len(rs) < 9 {
		t.Fatalf("%d results in 2h at 3 sites, want at least 9", len(rs))
	}
	for _, r := range rs {
		if r.Status != events.StatusSlow || len(r.Warnings) == 0 || !strings.Contains(r.Warnings[0], "451 4.7.1") {
			t.Errorf("%s attempt %d: %s warnings %v, want slow with the deferral as a warning", r.Site, r.Attempt, r.Status, r.Warnings)
		}
	}
	for _, o := range s.opens() {
		if o.Severity == events.SeverityCritical {
			t.Errorf("critical incident for greylisting: %q", o.Reason)
		}
	}
}
