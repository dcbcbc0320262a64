package evaluator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probemail"
)

// Attempt is the evaluator's record of one test attempt (KV key
// attempt.<partition>.<test id>, attemptKey). It is created by whichever
// event of the attempt arrives first and is done once its check.result is
// published.
type Attempt struct {
	// key is the KV key the record was read from or is to be created at.
	key string

	TestID       string     `json:"test_id"`
	CheckID      string     `json:"check_id"`
	Site         string     `json:"site"`
	Kind         string     `json:"kind"`
	Attempt      int        `json:"attempt"`
	Reason       string     `json:"reason,omitempty"`
	OriginTestID string     `json:"origin_test_id,omitempty"`
	ScheduledAt  time.Time  `json:"scheduled_at,omitempty"`
	NotAfter     time.Time  `json:"not_after,omitempty"`
	StartedAt    time.Time  `json:"started_at,omitempty"`
	SentAt       *time.Time `json:"sent_at,omitempty"`
	// Deadline and DeadlineKind: the pending timer (zero when done).
	Deadline     time.Time `json:"deadline,omitempty"`
	DeadlineKind string    `json:"deadline_kind,omitempty"`
	Done         bool      `json:"done"`
	Status       string    `json:"status,omitempty"` // the verdict once Done
	// LateRecorded: a probe that came back after its timeout was recorded
	// (CheckResult revision 2).
	LateRecorded bool `json:"late_recorded,omitempty"`
	// Evidence gathered so far (the submission, a deferral, a bounce) and
	// the warnings (a delay notice): they go into the result.
	Evidence *events.Evidence `json:"evidence,omitempty"`
	Warnings []string         `json:"warnings,omitempty"`
}

// attemptKey is the key of an attempt of check: attempt.<partition>.<test
// id>, the partition the check's events are in (events.PartitionOf), so
// that a replica's KV watch follows its own partitions' attempts only.
func attemptKey(check, testID string) string {
	return prefixAttempt + strconv.Itoa(events.PartitionOf(check)) + "." + testID
}

// legacyAttemptKey is the key of an attempt written before keys named
// the partition (attempt.<test id>). Such a record is followed by every
// replica's timers and read by the handlers that need an existing attempt
// (findAttempt) until it expires (AttemptTTL after the upgrade).
func legacyAttemptKey(testID string) string { return prefixAttempt + testID }

// timer returns the deadline timer of a pending attempt.
func (a *Attempt) timer() (time.Time, events.Event, bool) {
	if a.Done || a.Deadline.IsZero() {
		return time.Time{}, nil, false
	}
	return a.Deadline, events.CheckTimeout{
		V: events.SchemaVersion, TestID: a.TestID, CheckID: a.CheckID, Site: a.Site,
		Attempt: a.Attempt, Deadline: a.DeadlineKind, DueAt: a.Deadline,
	}, true
}

// loadAttempt returns the attempt record of testID, or a new one built by
// fill when none exists yet (rev 0).
func (e *Evaluator) loadAttempt(ctx context.Context, check, testID string, fill func(*Attempt)) (*Attempt, uint64, error) {
	key := attemptKey(check, testID)
	var a Attempt
	rev, found, err := e.state.get(ctx, key, &a)
	if err != nil {
		return nil, 0, err
	}
	if !found {
		a = Attempt{TestID: testID}
		fill(&a)
	}
	a.key = key
	return &a, rev, nil
}

// findAttempt reads the existing attempt testID of check, at its key or,
// when there is none, at its legacy key (legacyAttemptKey).
func (e *Evaluator) findAttempt(ctx context.Context, check, testID string) (a *Attempt, rev uint64, found bool, err error) {
	for _, key := range []string{attemptKey(check, testID), legacyAttemptKey(testID)} {
		var rec Attempt
		rev, found, err := e.state.get(ctx, key, &rec)
		if err != nil || found {
			rec.key = key
			return &rec, rev, found, err
		}
	}
	return &Attempt{}, 0, false, nil
}

// saveAttempt writes a at the key it was read from and arms or disarms
// its timer in this process, when its partition is this replica's (the
// owner's KV watch does it otherwise).
func (e *Evaluator) saveAttempt(ctx context.Context, a *Attempt, rev uint64) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	w := &inFlightWrite{data: data, part: events.PartitionOf(a.CheckID)}
	w.due, w.ev, w.armed = a.timer()
	e.timers.writing(a.key, w)
	newRev, err := e.state.putData(ctx, a.key, data, rev, e.cfg.AttemptTTL)
	e.timers.writeDone(a.key, w)
	if err != nil {
		return err
	}
	e.timers.wrote(a.key, w.part, newRev, w.due, w.ev, w.armed)
	return nil
}

// onScheduled starts tracking an attempt: its first deadline is the end of
// the send window plus SubmitGrace (round trip: the sender must report
// mail.sent; service check: the sender must report a result within the
// timeout as well).
func (e *Evaluator) onScheduled(ctx context.Context, ev *events.TestScheduled) error {
	c := e.check(ev.CheckID, ev.Subject())
	if c == nil {
		return nil
	}
	a, rev, err := e.loadAttempt(ctx, ev.CheckID, ev.TestID, func(a *Attempt) { a.fromScheduled(ev) })
	if err != nil {
		return err
	}
	if rev != 0 {
		if a.Done || !a.ScheduledAt.IsZero() {
			return nil // seen already, or finished by an event that came first
		}
		a.fromScheduled(ev) // mail.sent came first: keep its deadline
		return e.saveAttempt(ctx, a, rev)
	}
	notAfter := ev.NotAfter
	if notAfter.IsZero() {
		notAfter = ev.ScheduledAt.Add(c.SendWindow())
	}
	if c.Kind == events.KindRoundTrip {
		a.Deadline, a.DeadlineKind = notAfter.Add(e.cfg.SubmitGrace), events.DeadlineSubmission
	} else {
		a.Deadline, a.DeadlineKind = notAfter.Add(c.Timeout+e.cfg.SubmitGrace), events.DeadlineResult
	}
	return e.saveAttempt(ctx, a, rev)
}

func (a *Attempt) fromScheduled(ev *events.TestScheduled) {
	a.CheckID, a.Site, a.Kind, a.Attempt = ev.CheckID, ev.Site, ev.Kind, ev.Attempt
	a.Reason, a.OriginTestID = ev.Reason, ev.OriginTestID
	a.ScheduledAt, a.NotAfter = ev.ScheduledAt, ev.NotAfter
}

// onSent moves a round-trip attempt from "submitting" to "in flight" (the
// return deadline is started_at + timeout + Settle), or finishes it when
// the submission failed.
func (e *Evaluator) onSent(ctx context.Context, ev *events.MailSent) error {
	c := e.check(ev.CheckID, ev.Subject())
	if c == nil {
		return nil
	}
	a, rev, err := e.loadAttempt(ctx, ev.CheckID, ev.TestID, func(a *Attempt) {
		a.CheckID, a.Site, a.Kind, a.Attempt = ev.CheckID, ev.Site, events.KindRoundTrip, ev.Attempt
	})
	if err != nil {
		return err
	}
	if a.Done {
		return nil
	}
	a.withEvidence(ev.Evidence)
	switch ev.Status {
	case events.SentOK:
		a.StartedAt = ev.StartedAt
		sent := ev.SentAt
		a.SentAt = &sent
		a.Deadline, a.DeadlineKind = ev.StartedAt.Add(c.Timeout+e.cfg.Settle), events.DeadlineReturn
		if a.Evidence != nil && a.Evidence.Deferred != nil {
			a.warn("deferred by the customer's MX before it took the probe: " + a.Evidence.Deferred.String())
		}
		return e.saveAttempt(ctx, a, rev)
	case events.SentDeferred:
		// The customer's MX said "later" (4xx): not a failure. The sender
		// retries the same probe; the attempt keeps its timeout.
		if a.DeadlineKind == events.DeadlineReturn {
			return e.saveAttempt(ctx, a, rev) // the probe was taken meanwhile
		}
		a.StartedAt = ev.StartedAt
		a.Deadline, a.DeadlineKind = ev.StartedAt.Add(c.Timeout+e.cfg.Settle), events.DeadlineReturn
		return e.saveAttempt(ctx, a, rev)
	}
	// The submission failed: the customer's MX refused the probe (failed),
	// or our side could not submit it (monitor_error, possibly before any
	// probe was started).
	status := events.StatusMonitorError
	if ev.Status == events.SentFailed {
		status = events.StatusFailed
	}
	a.StartedAt = ev.StartedAt
	if a.StartedAt.IsZero() {
		a.StartedAt = e.deps.Clock.Now()
	}
	r := e.result(c, a, status)
	r.Reply, r.ErrorClass, r.Error, r.Timings = ev.Reply, ev.ErrorClass, ev.Error, ev.Timings
	return e.finish(ctx, a, rev, r)
}

// onReturned finishes a round-trip attempt: rtt = received_at - started_at,
// both monitor clocks (the signed start comes with the return, so a return
// that arrives before its mail.sent is evaluated all the same). A return
// after the attempt timed out keeps the timeout verdict and is recorded
// with its real rtt (revision 2).
func (e *Evaluator) onReturned(ctx context.Context, ev *events.MailReturned) error {
	c := e.check(ev.CheckID, ev.Subject())
	if c == nil {
		return nil
	}
	a, rev, err := e.loadAttempt(ctx, ev.CheckID, ev.TestID, func(a *Attempt) {
		a.CheckID, a.Site, a.Kind, a.Attempt = ev.CheckID, ev.Site, events.KindRoundTrip, ev.Attempt
	})
	if err != nil {
		return err
	}
	a.StartedAt = ev.StartedAt
	rt := probemail.Measure(ev.StartedAt, ev.ReceivedAt, ev.ReflectedAt)
	if a.Done {
		if a.Status != events.StatusTimeout || a.LateRecorded {
			e.m.duplicateReturns.Inc()
			return nil // a duplicate return
		}
		r := e.result(c, a, events.StatusTimeout)
		r.Revision, r.Late = 2, true
		withReturn(r, ev, rt)
		if _, err := e.pub.Publish(ctx, r); err != nil {
			return err
		}
		e.m.lateReturns.Inc()
		a.LateRecorded = true
		return e.saveAttempt(ctx, a, rev)
	}
	status := events.StatusOK
	switch {
	case rt.RTT >= c.Timeout:
		status = events.StatusTimeout // came back, but after the timeout
	case rt.RTT >= c.Slow:
		status = events.StatusSlow
	}
	r := e.result(c, a, status)
	withReturn(r, ev, rt)
	if status == events.StatusTimeout {
		r.Late = true
		a.LateRecorded = true
	}
	if w := pathWarning(c, ev.Path); w != "" {
		r.Warnings = append(slices.Clone(r.Warnings), w)
	}
	e.m.monitorLatency.Observe(e.deps.Clock.Since(ev.ReceivedAt).Seconds())
	return e.finish(ctx, a, rev, r)
}

// pathWarning says when a probe came back another way than its check
// expects (a forwarding rule where a reflector was meant, or the other way
// round): the round trip counts, but what it measures differs (a forward
// has no legs).
func pathWarning(c *checks.Check, path string) string {
	got := path
	if got == probemail.PathForwardAttachment {
		got = probemail.PathForward
	}
	if c.Return == "" || got == "" || got == c.Return {
		return ""
	}
	return fmt.Sprintf("came back by %s, the check expects %s (return: %s)", path, c.Return, c.Return)
}

func withReturn(r *events.CheckResult, ev *events.MailReturned, rt probemail.RoundTrip) {
	if ev.Evidence != nil && len(ev.Evidence.Hops) > 0 {
		merged := events.Evidence{}
		if r.Evidence != nil {
			merged = *r.Evidence
		}
		merged.Hops = ev.Evidence.Hops
		r.Evidence = &merged
	}
	recv := ev.ReceivedAt
	r.ReceivedAt = &recv
	r.DKIM, r.ReturnPath = ev.DKIM, ev.Path
	r.ReflectedAt = ev.ReflectedAt
	r.RTTMS = ms(rt.RTT)
	if rt.Outgoing != nil {
		r.OutgoingLegMS, r.IncomingLegMS, r.SkewMS = ms(*rt.Outgoing), ms(*rt.Incoming), ms(*rt.Skew)
		r.SkewSuspect = rt.SkewSuspect
	}
}

func ms(d time.Duration) *int64 {
	v := d.Milliseconds()
	return &v
}

// onServiceChecked finishes a service-check attempt with the evaluator's
// verdict on what the sender's prober observed: the class's status
// (probe.StatusOf), and "slow" for a dialogue that passed but took the
// check's slow threshold or longer (probe.ServiceStatus). A second observation of a
// finished attempt changes nothing.
func (e *Evaluator) onServiceChecked(ctx context.Context, ev *events.ServiceChecked) error {
	c := e.check(ev.CheckID, ev.Subject())
	if c == nil {
		return nil
	}
	a, rev, err := e.loadAttempt(ctx, ev.CheckID, ev.TestID, func(a *Attempt) {
		a.CheckID, a.Site, a.Kind, a.Attempt = ev.CheckID, ev.Site, ev.Kind, ev.Attempt
		a.Reason, a.OriginTestID = ev.Reason, ev.OriginTestID
	})
	if err != nil {
		return err
	}
	if a.Done {
		return nil
	}
	a.StartedAt = ev.StartedAt
	r := e.result(c, a, probe.ServiceStatus(ev.ErrorClass, ev.Timings.TotalMS, c.Slow))
	r.FinishedAt = ev.FinishedAt
	r.Target, r.Phase, r.Reply, r.ErrorClass, r.Error = ev.Target, ev.Phase, ev.Reply, ev.ErrorClass, ev.Error
	r.Timings, r.TLS, r.Evidence = ev.Timings, ev.TLS, ev.Evidence
	r.Summary = serviceSummary(r)
	return e.finish(ctx, a, rev, r)
}

// serviceSummary is the one line of a service check's result that did
// not pass, as incidents and SMS show it:
//
//	mx1.acme.example:25 refused at capabilities: 554 5.7.1 Service unavailable
//	imap.acme.example:993 tls: certificate of imap.acme.example does not verify: ...
func serviceSummary(r *events.CheckResult) string {
	switch {
	case r.Status == events.StatusOK || r.Status == events.StatusSlow:
		return ""
	case r.Reply != nil:
		return r.Target + " refused at " + r.Phase + ": " + r.Reply.String()
	case r.Error != "" && strings.Contains(r.Error, r.Target):
		return r.Error
	case r.Error != "":
		return r.Target + " " + r.Error
	}
	return ""
}

// onBounced applies a bounce of a probe (docs/evaluation.md, "Hard
// failures"): a failed DSN ends the attempt at once as failed, with the
// bounce as its evidence, which starts the confirmation fan-out at once; a
// delay notice is a warning on the attempt, never a failure. A bounce of an
// attempt this evaluator does not know (its record expired, or a replayed
// or forged old bounce) or of one already finished is dropped.
func (e *Evaluator) onBounced(ctx context.Context, ev *events.MailBounced) error {
	c := e.check(ev.CheckID, ev.Subject())
	if c == nil {
		return nil
	}
	a, rev, found, err := e.findAttempt(ctx, ev.CheckID, ev.TestID)
	if err != nil {
		return err
	}
	if !found || a.Done || a.Site != ev.Site || a.CheckID != ev.CheckID {
		e.m.droppedBounces.Inc()
		e.log.Info("bounce of an attempt that is unknown or finished: dropped", "test_id", ev.TestID, "check", ev.CheckID,
			"site", ev.Site, "known", found, "done", a.Done, "action", ev.Action)
		return nil
	}
	b := ev.Bounce
	a.withEvidence(&events.Evidence{Bounce: &b})
	if ev.Action == events.BounceDelayed {
		a.warn("delivery delayed: " + b.Summary)
		return e.saveAttempt(ctx, a, rev)
	}
	if a.StartedAt.IsZero() {
		a.StartedAt = a.ScheduledAt
	}
	r := e.result(c, a, events.StatusFailed)
	r.ErrorClass, r.Error, r.Reply = "bounced", b.Summary, bounceReply(b)
	return e.finish(ctx, a, rev, r)
}

// bounceReply reads a bounce's diagnostic as the SMTP reply it quotes
// ("550 5.1.1 <x>: ...", RFC 3464 section 2.3.6), or builds one from its
// status; nil when it has neither.
func bounceReply(b events.Bounce) *events.SMTPReply {
	d := strings.TrimSpace(b.Diagnostic)
	if len(d) >= 4 && d[3] == ' ' {
		if code, err := strconv.Atoi(d[:3]); err == nil && code >= 400 && code < 600 {
			r := &events.SMTPReply{Code: code, Text: strings.TrimSpace(d[4:])}
			if enh, rest, ok := strings.Cut(r.Text, " "); ok && looksEnhanced(enh) {
				r.Enhanced, r.Text = enh, rest
			}
			return r
		}
	}
	if looksEnhanced(b.Status) {
		code := 550
		if b.Status[0] == '4' {
			code = 450
		}
		return &events.SMTPReply{Code: code, Enhanced: b.Status, Text: d}
	}
	return nil
}

// looksEnhanced reports whether s is an RFC 3463 status code (x.y.z).
func looksEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if _, err := strconv.Atoi(p); err != nil || len(p) > 3 {
			return false
		}
	}
	return true
}

// withEvidence merges what an event showed into the attempt's evidence.
func (a *Attempt) withEvidence(ev *events.Evidence) {
	if ev == nil {
		return
	}
	if a.Evidence == nil {
		a.Evidence = &events.Evidence{}
	}
	if ev.Submission != nil {
		a.Evidence.Submission = ev.Submission
	}
	if ev.Deferred != nil {
		a.Evidence.Deferred = ev.Deferred
	}
	if ev.Bounce != nil {
		a.Evidence.Bounce = ev.Bounce
	}
	if len(ev.Hops) > 0 {
		a.Evidence.Hops = ev.Hops
	}
}

// warn adds a warning once.
func (a *Attempt) warn(w string) {
	if !slices.Contains(a.Warnings, w) {
		a.Warnings = append(a.Warnings, w)
	}
}

// onTimeout applies a deadline that fired, unless the attempt moved on in
// the meantime (done, or a newer deadline).
func (e *Evaluator) onTimeout(ctx context.Context, ev *events.CheckTimeout) error {
	c := e.check(ev.CheckID, ev.Subject())
	if c == nil {
		return nil
	}
	a, rev, found, err := e.findAttempt(ctx, ev.CheckID, ev.TestID)
	if err != nil {
		return err
	}
	if !found || a.Done || a.DeadlineKind != ev.Deadline || !a.Deadline.Equal(ev.DueAt) {
		return nil
	}
	var r *events.CheckResult
	switch ev.Deadline {
	case events.DeadlineReturn:
		r = e.result(c, a, events.StatusTimeout)
		r.Error = fmt.Sprintf("no return within %v", c.Timeout)
	case events.DeadlineSubmission:
		if a.StartedAt.IsZero() {
			a.StartedAt = a.ScheduledAt
		}
		r = e.result(c, a, events.StatusMonitorError)
		r.ErrorClass = "not_submitted"
		r.Error = fmt.Sprintf("the sender at %s reported no submission by %s", a.Site, a.Deadline.UTC().Format(time.RFC3339))
	default:
		if a.StartedAt.IsZero() {
			a.StartedAt = a.ScheduledAt
		}
		r = e.result(c, a, events.StatusMonitorError)
		r.ErrorClass = "no_result"
		r.Error = fmt.Sprintf("the sender at %s reported no result by %s", a.Site, a.Deadline.UTC().Format(time.RFC3339))
	}
	return e.finish(ctx, a, rev, r)
}

// result starts the check.result of attempt a.
func (e *Evaluator) result(c *checks.Check, a *Attempt, status string) *events.CheckResult {
	return &events.CheckResult{
		V: events.SchemaVersion, TestID: a.TestID, CheckID: a.CheckID, Customer: c.Customer,
		Site: a.Site, Kind: c.Kind, Attempt: max(a.Attempt, 1), Reason: a.Reason, OriginTestID: a.OriginTestID,
		Status: status, Revision: 1, StartedAt: a.StartedAt, SentAt: a.SentAt,
		FinishedAt: e.deps.Clock.Now(), Target: c.Target, Evidence: a.Evidence, Warnings: a.Warnings,
	}
}

// finish publishes the attempt's result, applies it to the site verdict
// and the quorum, then marks the attempt done. The order matters: if the
// process dies in between, the event is handled again, the same result id
// is published (JetStream keeps one) and applying it again changes nothing.
func (e *Evaluator) finish(ctx context.Context, a *Attempt, rev uint64, r *events.CheckResult) error {
	if r.Summary == "" {
		r.Summary = r.Evidence.Line(r.Status, r.Reply)
	}
	if _, err := e.pub.Publish(ctx, r); err != nil {
		return err
	}
	if r.Revision <= 1 {
		e.m.results.WithLabelValues(r.Site, r.Kind, r.Status).Inc()
	}
	if r.Revision <= 1 {
		if c := e.deps.Checks.Current().Lookup(r.CheckID); c != nil {
			if err := e.applyVerdict(ctx, c, r); err != nil {
				return err
			}
		}
	}
	a.Done, a.Status, a.Deadline, a.DeadlineKind = true, r.Status, time.Time{}, ""
	return e.saveAttempt(ctx, a, rev)
}
