package evaluator

import (
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probemail"
)

func testCheck(t *testing.T, extra string) *checks.Check {
	t.Helper()
	f, err := checks.Parse("t.yaml", []byte("sites: [a, b, c]\nchecks:\n  - id: x\n    customer: acme\n    kind: roundtrip\n    target: p@acme.example\n"+extra))
	if err != nil {
		t.Fatal(err)
	}
	return f.Lookup("x")
}

var t0 = time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)

func res(site, id string, attempt int, status string, started time.Duration) *events.CheckResult {
	return &events.CheckResult{V: 1, TestID: id, CheckID: "x", Site: site, Kind: events.KindRoundTrip,
		Attempt: attempt, Status: status, StartedAt: t0.Add(started), Revision: 1}
}

// TestCaseC12 is docs/field-cases.md, c12 for one site with the defaults: attempt 1
// sent at t=0 times out at t=600; attempt 2 is a new probe at t >= 630; if it
// returns fine, the site is up and nothing is told to anyone.
func TestCaseC12(t *testing.T) {
	c := testCheck(t, "")
	st := newSiteState("x", "a")
	// The timeout verdict is processed at t=601 (deadline + settle).
	retest, fanOut := applyResult(st, res("a", "t1", 1, events.StatusTimeout, 0), c, t0.Add(601*time.Second))
	if retest == nil || !fanOut {
		t.Fatalf("no retest (%v) or fan-out (%v) after the first timeout", retest, fanOut)
	}
	if retest.Attempt != 2 || retest.OriginTestID != "t1" || retest.DueAt != t0.Add(630*time.Second) {
		t.Errorf("retest %+v, want attempt 2 of t1 at t=630", retest)
	}
	if st.Verdict != VerdictSuspect {
		t.Errorf("verdict %s after one timeout, want suspect (not down)", st.Verdict)
	}
	st.Pending = &Pending{TestID: "t2", OriginTestID: "t1", Attempt: 2, DueAt: retest.DueAt}
	cs := &CheckState{}
	all := func(string) bool { return true }
	if d := decide(c, map[string]*SiteState{"a": st}, all, cs, t0.Add(700*time.Second)); d.open != nil || d.resolve != nil {
		t.Fatalf("decision while suspect: %+v", d)
	}
	ok := res("a", "t2", 2, events.StatusOK, 630*time.Second)
	ok.OriginTestID = "t1"
	if r, _ := applyResult(st, ok, c, t0.Add(640*time.Second)); r != nil {
		t.Errorf("retest after a good confirmation: %+v", r)
	}
	if st.Verdict != VerdictUp || st.Pending != nil {
		t.Errorf("after a good attempt 2: verdict %s pending %+v", st.Verdict, st.Pending)
	}
	if d := decide(c, map[string]*SiteState{"a": st}, all, cs, t0.Add(640*time.Second)); d.open != nil || d.resolve != nil {
		t.Errorf("no open and no resolved may follow a good retest: %+v", d)
	}
}

func TestApplyResultRules(t *testing.T) {
	c := testCheck(t, "")
	now := t0.Add(time.Hour)

	st := newSiteState("x", "a")
	applyResult(st, res("a", "ok1", 1, events.StatusOK, 10*time.Minute), c, now)
	if r, f := applyResult(st, res("a", "m1", 1, events.StatusMonitorError, 20*time.Minute), c, now); r != nil || f || st.Verdict != VerdictUp {
		t.Errorf("a monitor_error moved the verdict: %s", st.Verdict)
	}
	// An older failure arriving late does not undo a newer success.
	if r, _ := applyResult(st, res("a", "old", 1, events.StatusTimeout, 5*time.Minute), c, now); r != nil || st.Verdict != VerdictUp {
		t.Errorf("an older timeout moved the verdict to %s", st.Verdict)
	}
	// Attempt 1 fails, then its confirmation fails: down, with evidence.
	applyResult(st, res("a", "f1", 1, events.StatusTimeout, 30*time.Minute), c, now)
	if r, _ := applyResult(st, res("a", "f2", 2, events.StatusTimeout, 40*time.Minute), c, now); r != nil {
		t.Errorf("retries=1: no further retest expected, got %+v", r)
	}
	if st.Verdict != VerdictDown || len(st.Failing) != 2 || !st.Since.Equal(t0.Add(30*time.Minute)) {
		t.Errorf("after two failures: %s, %d attempts, since %v", st.Verdict, len(st.Failing), st.Since)
	}
	// A regular failure during the outage keeps it down without a new retest.
	if r, f := applyResult(st, res("a", "f3", 1, events.StatusFailed, 50*time.Minute), c, now); r != nil || f || st.Verdict != VerdictDown {
		t.Errorf("ongoing outage: retest %v fanout %v verdict %s", r, f, st.Verdict)
	}

	// A fan-out confirmation failing at a healthy site makes it down at once
	// (it is that site's confirmation attempt).
	b := newSiteState("x", "b")
	applyResult(b, res("b", "okb", 1, events.StatusOK, 10*time.Minute), c, now)
	if !fanOutTo(b, c, now) {
		t.Error("a healthy site must be asked to confirm")
	}
	if r, _ := applyResult(b, res("b", "cb", 2, events.StatusTimeout, 31*time.Minute), c, now); r != nil || b.Verdict != VerdictDown {
		t.Errorf("failed fan-out confirmation: retest %v verdict %s", r, b.Verdict)
	}
	if fanOutTo(b, c, now) {
		t.Error("a down site is not asked again")
	}
	// A site asked to confirm whose own attempt 1 then fails waits for that
	// confirmation instead of planning a second one.
	p := newSiteState("x", "c")
	p.Pending = &Pending{TestID: "conf", OriginTestID: "f1", Attempt: 2, DueAt: now}
	if r, _ := applyResult(p, res("c", "c1", 1, events.StatusTimeout, 30*time.Minute), c, now); r != nil || p.Verdict != VerdictSuspect {
		t.Errorf("pending confirmation: retest %+v verdict %s", r, p.Verdict)
	}

	// retries: 0 → the first failure is down; retries: 2 → three failures.
	c0 := testCheck(t, "    retries: 0\n")
	z := newSiteState("x", "a")
	if r, f := applyResult(z, res("a", "z1", 1, events.StatusFailed, 0), c0, now); r != nil || !f || z.Verdict != VerdictDown {
		t.Errorf("retries 0: retest %v fanout %v verdict %s", r, f, z.Verdict)
	}
	c2 := testCheck(t, "    retries: 2\n")
	w := newSiteState("x", "a")
	applyResult(w, res("a", "w1", 1, events.StatusTimeout, 0), c2, now)
	if r, _ := applyResult(w, res("a", "w2", 2, events.StatusTimeout, 11*time.Minute), c2, now); r == nil || r.Attempt != 3 || w.Verdict != VerdictSuspect {
		t.Errorf("retries 2 after 2 failures: retest %+v verdict %s", r, w.Verdict)
	}
	applyResult(w, res("a", "w3", 3, events.StatusTimeout, 22*time.Minute), c2, now)
	if w.Verdict != VerdictDown {
		t.Errorf("retries 2 after 3 failures: %s", w.Verdict)
	}
}

// TestApplyResultTwice: a result handled again (a redelivery, a restart
// between the verdict and the attempt record) changes nothing the second time.
func TestApplyResultTwice(t *testing.T) {
	c := testCheck(t, "    retries: 2\n")
	now := t0.Add(time.Hour)
	st := newSiteState("x", "a")
	applyResult(st, res("a", "f1", 1, events.StatusTimeout, 0), c, now)
	conf := res("a", "f2", 2, events.StatusTimeout, 11*time.Minute)
	first, _ := applyResult(st, conf, c, now)
	snapshot := *st
	again, fan := applyResult(st, conf, c, now)
	if first == nil || again != nil || fan {
		t.Fatalf("second application planned %+v (fan-out %v); the first planned %+v", again, fan, first)
	}
	if st.ConfirmFailures != 1 || st.Verdict != VerdictSuspect || len(st.Failing) != len(snapshot.Failing) {
		t.Errorf("after the same result twice: %d confirmation failures, verdict %s; want 1 and suspect", st.ConfirmFailures, st.Verdict)
	}
}

func siteWith(site, verdict string, at time.Time, failing ...events.AttemptRef) *SiteState {
	return &SiteState{CheckID: "x", Site: site, Verdict: verdict, LastResultAt: at, Failing: failing, Since: at}
}

func TestDecideQuorum(t *testing.T) {
	c := testCheck(t, "")
	now := t0.Add(2 * time.Hour)
	ref := func(id string, attempt int) events.AttemptRef {
		return events.AttemptRef{TestID: id, Attempt: attempt, Status: events.StatusTimeout, StartedAt: now.Add(-20 * time.Minute)}
	}
	all := func(string) bool { return true }
	notC := func(s string) bool { return s != "c" }

	oneDown := map[string]*SiteState{"a": siteWith("a", VerdictDown, now, ref("a1", 1), ref("a2", 2)), "b": siteWith("b", VerdictUp, now), "c": siteWith("c", VerdictUp, now)}
	if d := decide(c, oneDown, all, &CheckState{}, now); d.open != nil {
		t.Errorf("one site down of three opened an incident")
	}
	twoDown := map[string]*SiteState{"a": oneDown["a"], "b": siteWith("b", VerdictDown, now, ref("b1", 2)), "c": siteWith("c", VerdictUp, now)}
	d := decide(c, twoDown, all, &CheckState{}, now)
	if d.open == nil || d.open.Severity != events.SeverityCritical || d.open.Quorum != 2 || d.open.Eligible != 3 {
		t.Fatalf("two of three down: %+v", d.open)
	}
	if d.open.Reason != "no return from 2 of 3 sites; retest failed" {
		t.Errorf("reason %q", d.open.Reason)
	}
	again := decide(c, twoDown, all, &CheckState{}, now)
	if again.open.IncidentID != d.open.IncidentID {
		t.Error("the same state must name the same incident (redelivery, failover)")
	}
	// A stale down verdict does not count.
	stale := map[string]*SiteState{"a": oneDown["a"], "b": siteWith("b", VerdictDown, now.Add(-3*time.Hour), ref("b1", 2)), "c": siteWith("c", VerdictUp, now)}
	if d := decide(c, stale, all, &CheckState{}, now); d.open != nil {
		t.Error("a stale verdict voted")
	}
	// A site whose monitor is down does not vote and the quorum is capped at
	// the healthy sites: one down of two healthy is not enough...
	if d := decide(c, oneDown, notC, &CheckState{}, now); d.open != nil {
		t.Error("1 of 2 healthy sites opened with quorum 2")
	}
	// ...but with only one healthy site left, it decides alone.
	onlyA := func(s string) bool { return s == "a" }
	if d := decide(c, oneDown, onlyA, &CheckState{}, now); d.open == nil || d.open.Quorum != 1 || d.open.Reason != "no return from the only site; retest failed" {
		t.Errorf("capped quorum: %+v", d.open)
	}
	// No healthy site at all: nothing opens (monitor fault).
	if d := decide(c, twoDown, func(string) bool { return false }, &CheckState{}, now); d.open != nil {
		t.Error("opened with no healthy site")
	}

	open := &CheckState{Open: d.open}
	// While a confirmation is pending anywhere, no resolution.
	recovering := map[string]*SiteState{"a": siteWith("a", VerdictUp, now), "b": siteWith("b", VerdictDown, now), "c": siteWith("c", VerdictUp, now)}
	recovering["c"].Pending = &Pending{TestID: "p", OriginTestID: "x", Attempt: 2, DueAt: now}
	if d := decide(c, recovering, all, open, now); d.resolve != nil {
		t.Error("resolved while a confirmation was pending")
	}
	recovering["c"].Pending = nil
	d2 := decide(c, recovering, all, open, now)
	if d2.resolve == nil || d2.resolve.IncidentID != open.Open.IncidentID || d2.open != nil {
		t.Fatalf("recovery: %+v", d2)
	}
	// Missing results are not a recovery: all sites stale → no resolution.
	stalled := map[string]*SiteState{"a": siteWith("a", VerdictUp, now.Add(-3*time.Hour)), "b": siteWith("b", VerdictDown, now.Add(-3*time.Hour))}
	if d := decide(c, stalled, all, open, now); d.resolve != nil {
		t.Error("resolved without fresh evidence")
	}
	// Never a resolution without an open incident.
	if d := decide(c, recovering, all, &CheckState{}, now); d.resolve != nil || d.open != nil {
		t.Errorf("decision with nothing open and all well: %+v", d)
	}
}

// TestSuspectSiteAsksAgainWhenItsConfirmationIsGone: a site whose
// confirmation ended in a monitor_error (the evaluator was down past the
// retest's send window, so the sender found it stale) stays suspect; its
// next failure must ask for a confirmation again, or the site never goes
// down and the outage is never told (found by the soak, docs/soak.md).
func TestSuspectSiteAsksAgainWhenItsConfirmationIsGone(t *testing.T) {
	c := testCheck(t, "")
	st := newSiteState("x", "a")
	now := t0.Add(11 * time.Minute)
	retest, _ := applyResult(st, res("a", "t1", 1, events.StatusTimeout, 0), c, now)
	if retest == nil || st.Verdict != VerdictSuspect {
		t.Fatalf("first timeout: retest %+v, verdict %s", retest, st.Verdict)
	}
	st.Pending = &Pending{TestID: "r1", OriginTestID: "t1", Attempt: 2, DueAt: retest.DueAt} // as planRetest records it

	// A regular failure while the confirmation is on its way asks nothing.
	if again, _ := applyResult(st, res("a", "t2", 1, events.StatusTimeout, time.Minute), c, now.Add(time.Minute)); again != nil {
		t.Fatalf("a second confirmation while one is pending: %+v", again)
	}
	// The confirmation ends in a monitor_error: the verdict stays suspect.
	stale := res("a", "r1", 2, events.StatusMonitorError, 2*time.Minute)
	stale.OriginTestID = "t1"
	applyResult(st, stale, c, now.Add(2*time.Minute))
	if st.Verdict != VerdictSuspect || st.Pending != nil {
		t.Fatalf("after the stale confirmation: verdict %s, pending %+v", st.Verdict, st.Pending)
	}
	// The next regular failure asks for a confirmation again.
	again, _ := applyResult(st, res("a", "t3", 1, events.StatusTimeout, 20*time.Minute), c, now.Add(31*time.Minute))
	if again == nil || again.Attempt != 2 || again.OriginTestID != "t3" {
		t.Fatalf("no new confirmation after the lost one: %+v", again)
	}
	st.Pending = &Pending{TestID: "r3", OriginTestID: "t3", Attempt: 2, DueAt: again.DueAt}
	failed := res("a", "r3", 2, events.StatusTimeout, 31*time.Minute)
	failed.OriginTestID = "t3"
	applyResult(st, failed, c, now.Add(42*time.Minute))
	if st.Verdict != VerdictDown {
		t.Fatalf("the confirmation failed: verdict %s, want down", st.Verdict)
	}
}

// TestSlowIncidentNamesTheRoundTrip: a warning opened from slow results as
// applyResult leaves them (a slow verdict keeps no failing attempts) names
// the longest round trip of its sites, not "up to 0s" (found by the soak,
// docs/soak.md).
func TestSlowIncidentNamesTheRoundTrip(t *testing.T) {
	c := testCheck(t, "")
	now := t0.Add(time.Hour)
	sites := map[string]*SiteState{}
	for i, site := range []string{"a", "b", "c"} {
		st := newSiteState("x", site)
		r := res(site, "t-"+site, 1, events.StatusSlow, 50*time.Minute)
		rtt := int64(150000 + i*10000) // 2m30s, 2m40s, 2m50s
		r.RTTMS = &rtt
		applyResult(st, r, c, now)
		st.LastResultAt = now
		sites[site] = st
	}
	d := decide(c, sites, func(string) bool { return true }, &CheckState{}, now)
	if d.open == nil || d.open.Severity != events.SeverityWarning {
		t.Fatalf("slow at every site: %+v", d.open)
	}
	if want := "slow delivery at 3 of 3 sites (up to 2m50s)"; d.open.Reason != want {
		t.Errorf("reason %q, want %q", d.open.Reason, want)
	}
	for _, v := range d.open.Sites {
		if len(v.Attempts) != 1 || v.Attempts[0].RTTMS == nil {
			t.Errorf("site %s: attempts %+v, want the slow attempt with its round trip", v.Site, v.Attempts)
		}
	}
}

func TestDecideWarningsAndCanary(t *testing.T) {
	c := testCheck(t, "")
	now := t0.Add(time.Hour)
	rtt := int64(150000)
	slow := func(site string) *SiteState {
		return siteWith(site, VerdictSlow, now, events.AttemptRef{TestID: site, Status: events.StatusSlow, RTTMS: &rtt})
	}
	all := func(string) bool { return true }
	sites := map[string]*SiteState{"a": slow("a"), "b": slow("b"), "c": siteWith("c", VerdictUp, now)}
	d := decide(c, sites, all, &CheckState{}, now)
	if d.open == nil || d.open.Severity != events.SeverityWarning || d.open.Notify {
		t.Fatalf("slow at quorum: %+v", d.open)
	}
	if d.open.Reason != "slow delivery at 2 of 3 sites (up to 2m30s)" {
		t.Errorf("reason %q", d.open.Reason)
	}
	cn := testCheck(t, "    notify_warnings: true\n")
	if d := decide(cn, sites, all, &CheckState{}, now); d.open == nil || !d.open.Notify {
		t.Error("notify_warnings: true must notify warnings")
	}
	// Escalation: the warning resolves and a critical incident opens.
	sites["a"] = siteWith("a", VerdictDown, now, events.AttemptRef{TestID: "d1", Status: events.StatusTimeout})
	sites["b"] = siteWith("b", VerdictDown, now, events.AttemptRef{TestID: "d2", Status: events.StatusTimeout})
	e := decide(c, sites, all, &CheckState{Open: d.open}, now)
	if e.resolve == nil || e.open == nil || e.open.Severity != events.SeverityCritical || e.resolve.IncidentID != d.open.IncidentID {
		t.Errorf("escalation: %+v", e)
	}
	canary := testCheck(t, "    canary: true\n")
	if d := decide(canary, sites, all, &CheckState{}, now); d.open != nil {
		t.Error("a canary check opened a customer incident")
	}
}

func TestReasons(t *testing.T) {
	rt := testCheck(t, "")
	refused := []events.SiteVote{{Site: "a", Attempts: []events.AttemptRef{{TestID: "1", Status: events.StatusFailed,
		Reply: &events.SMTPReply{Code: 554, Enhanced: "5.7.1", Text: "rejected"}}}}, {Site: "b", Attempts: []events.AttemptRef{{TestID: "2", Status: events.StatusFailed, Attempt: 2,
		Reply: &events.SMTPReply{Code: 554, Enhanced: "5.7.1", Text: "rejected"}}}}}
	if got := reasonFor(rt, refused, 3, events.SeverityCritical); got != "probe refused at 2 of 3 sites: 554 5.7.1 rejected; retest failed" {
		t.Errorf("refused: %q", got)
	}
	smtp := &checks.Check{ID: "s", Kind: events.KindSMTP}
	phase := []events.SiteVote{{Site: "a", Attempts: []events.AttemptRef{{TestID: "1", Status: events.StatusFailed, Phase: "greeting",
		Reply: &events.SMTPReply{Code: 554, Text: "go away"}}}}}
	if got := reasonFor(smtp, phase, 2, events.SeverityCritical); got != "SMTP greeting failed at 1 of 2 sites: 554 go away" {
		t.Errorf("service: %q", got)
	}
	// IMAP and POP3 failures have no SMTP reply: the class in words.
	for _, tc := range []struct {
		kind, phase, class, want string
	}{
		{events.KindIMAP, "auth", "auth", "IMAP auth failed at 2 of 3 sites: login rejected; retest failed"},
		{events.KindPOP3, "greeting", "refused", "POP3 greeting failed at 2 of 3 sites: refused; retest failed"},
		{events.KindIMAP, "tls", "cert_invalid", "IMAP tls failed at 2 of 3 sites: certificate invalid; retest failed"},
		{events.KindPOP3, "mailbox", "odd_class", "POP3 mailbox failed at 2 of 3 sites: odd_class; retest failed"},
	} {
		c := &checks.Check{ID: "s", Kind: tc.kind}
		votes := []events.SiteVote{
			{Site: "a", Attempts: []events.AttemptRef{{TestID: "1", Status: events.StatusFailed, Phase: tc.phase, ErrorClass: tc.class}}},
			{Site: "b", Attempts: []events.AttemptRef{{TestID: "2", Attempt: 2, Status: events.StatusFailed, Phase: tc.phase, ErrorClass: tc.class}}},
		}
		if got := reasonFor(c, votes, 3, events.SeverityCritical); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.kind, tc.class, got, tc.want)
		}
	}
	// Service-check warnings: slow at every voting site, or degraded.
	slow := []events.SiteVote{{Site: "a", Verdict: VerdictSlow}, {Site: "b", Verdict: VerdictSlow}}
	if got := reasonFor(smtp, slow, 3, events.SeverityWarning); got != "SMTP slow at 2 of 3 sites" {
		t.Errorf("slow: %q", got)
	}
	mixed := []events.SiteVote{{Site: "a", Verdict: VerdictSlow}, {Site: "b", Verdict: VerdictDegraded}}
	if got := reasonFor(smtp, mixed, 3, events.SeverityWarning); got != "SMTP check degraded at 2 of 3 sites" {
		t.Errorf("degraded: %q", got)
	}
}

// TestPathWarning: a probe that came back another way than its check
// expects is a warning (the round trip counts; a forward has no legs).
func TestPathWarning(t *testing.T) {
	reflector := &checks.Check{ID: "a", Return: checks.ReturnReflector}
	forward := &checks.Check{ID: "b", Return: checks.ReturnForward}
	for _, tc := range []struct {
		c    *checks.Check
		path string
		warn bool
	}{
		{reflector, probemail.PathReflector, false},
		{reflector, probemail.PathForward, true},
		{forward, probemail.PathForwardAttachment, false},
		{forward, probemail.PathReflector, true},
		{forward, "", false},
	} {
		if got := pathWarning(tc.c, tc.path); (got != "") != tc.warn || tc.warn && !strings.Contains(got, tc.path) {
			t.Errorf("check expects %s, came by %q: warning %q", tc.c.Return, tc.path, got)
		}
	}
}
