package events

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// SchemaVersion is the version written in every event's "v" field.
const SchemaVersion = 1

// Check kinds.
const (
	KindRoundTrip = "roundtrip"
	KindSMTP      = "smtp"
	KindIMAP      = "imap"
	KindPOP3      = "pop3"
)

// Outcomes of one attempt (CheckResult.Status).
const (
	// StatusOK: the probe came back before the slow threshold, or the service
	// answered every phase correctly.
	StatusOK = "ok"
	// StatusSlow: the probe came back at or after the slow threshold but
	// before the timeout. A warning, not an outage.
	StatusSlow = "slow"
	// StatusDegraded: a service check passed with a warning (certificate
	// expiring, a temporary 4xx reply).
	StatusDegraded = "degraded"
	// StatusTimeout: no return before the timeout (round trip) or no answer
	// in time (service check).
	StatusTimeout = "timeout"
	// StatusFailed: the customer's system refused or broke the dialogue.
	StatusFailed = "failed"
	// StatusMonitorError: the monitor itself could not run the attempt (our
	// relay refused, the sender never picked the test up). Never counts
	// against the customer and never as a success.
	StatusMonitorError = "monitor_error"
)

// Outcomes of a probe submission (MailSent.Status).
const (
	SentOK           = "sent"          // the first hop answered 250 to the DATA
	SentFailed       = "failed"        // the customer's MX refused the probe (5xx)
	SentMonitorError = "monitor_error" // our relay refused, or we could not reach it
	// SentDeferred: the customer's MX answered 4xx (greylisting,
	// throttling); the sender keeps retrying the same probe until the
	// attempt's timeout, as an MTA would (RFC 5321 section 4.5.4.1). Not a
	// failure: the attempt keeps its timeout.
	SentDeferred = "deferred"
)

// Reasons for a TestScheduled.
const (
	ReasonInterval = "interval" // the scheduler's regular slot
	ReasonRetest   = "retest"   // this site's previous attempt failed; confirm after retry_delay
	ReasonConfirm  = "confirm"  // another site's attempt failed; confirm now (fan-out)
)

// Deadline kinds (CheckTimeout.Deadline).
const (
	DeadlineReturn     = "return"     // a sent probe did not come back within the timeout
	DeadlineSubmission = "submission" // the sender did not report a submission in time
	DeadlineResult     = "result"     // a service check did not report a result in time
)

// Incident severities.
const (
	SeverityCritical = "critical" // the check is down at a quorum of sites
	SeverityWarning  = "warning"  // the check is slow or degraded at a quorum of sites
)

// ErrEvent is wrapped by every error Decode and Validate return: the message
// is malformed and will never become valid. It is marked permanent in the
// way pkg/fault reads (Temporary() false), so consumers Term it.
var ErrEvent error = invalidEvent{}

type invalidEvent struct{}

func (invalidEvent) Error() string   { return "invalid event" }
func (invalidEvent) Temporary() bool { return false }

// Event is implemented by every event type.
type Event interface {
	// Subject is the NATS subject the event is published on.
	Subject() string
	// MsgID is the Nats-Msg-Id header: equal ids within the stream's
	// duplicate window are stored once.
	MsgID() string
	// Validate reports missing or malformed fields, wrapping ErrEvent.
	Validate() error
	// version is the event's "v".
	version() int
	// names are the subject names events of this type are published on
	// (NamesOf).
	names() []string
}

// Decode unmarshals data into a T and validates it. Unknown JSON fields are
// ignored (newer minor versions add fields); a "v" above SchemaVersion, bad
// JSON or a failed Validate return an error wrapping ErrEvent.
func Decode[T any, P interface {
	*T
	Event
}](data []byte) (T, error) {
	var zero, v T
	if err := json.Unmarshal(data, &v); err != nil {
		return zero, fmt.Errorf("%w: %v", ErrEvent, err)
	}
	if n := P(&v).version(); n < 1 || n > SchemaVersion {
		return zero, fmt.Errorf("%w: schema version %d not supported (this build reads 1..%d)", ErrEvent, n, SchemaVersion)
	}
	if err := P(&v).Validate(); err != nil {
		return zero, err
	}
	return v, nil
}

// SMTPReply is one SMTP server reply (RFC 5321 section 4.2), with the
// enhanced status code of RFC 3463 when the server sent one.
type SMTPReply struct {
	Code     int    `json:"code"`               // e.g. 250, 451, 554
	Enhanced string `json:"enhanced,omitempty"` // e.g. "5.7.1"
	Text     string `json:"text"`               // the reply text, lines joined with "\n"
}

// String formats the reply as a server would send it on one line.
func (r *SMTPReply) String() string {
	if r == nil {
		return ""
	}
	s := strconv.Itoa(r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	if r.Text != "" {
		s += " " + r.Text
	}
	return s
}

// TestScheduled asks the sender of Site to run one attempt of a check now.
// Published on test.scheduled.<site>.<check> by the scheduler (interval slots)
// and the evaluator (retests and confirmations).
type TestScheduled struct {
	V       int    `json:"v"`
	TestID  string `json:"test_id"`  // unique per attempt; see NewTestID
	CheckID string `json:"check_id"` // ValidToken
	Site    string `json:"site"`     // ValidToken
	Kind    string `json:"kind"`     // KindRoundTrip, KindSMTP, ...
	Attempt int    `json:"attempt"`  // 1 for a regular test, 2.. for confirmations
	Reason  string `json:"reason"`   // ReasonInterval, ReasonRetest, ReasonConfirm
	// OriginTestID is the attempt whose failure asked for this one (empty for
	// ReasonInterval).
	OriginTestID string `json:"origin_test_id,omitempty"`
	// Slot numbers interval slots of the check: the slot starts at
	// unix epoch + Slot*interval + phase. Only for ReasonInterval.
	Slot        int64     `json:"slot,omitempty"`
	ScheduledAt time.Time `json:"scheduled_at"` // when the attempt should run (monitor clock)
	// NotAfter: a sender that picks the test up later than this reports a
	// monitor_error instead of sending a stale probe.
	NotAfter time.Time `json:"not_after"`
}

// Subject implements Event.
func (e TestScheduled) Subject() string {
	return SiteCheckSubject(SubjectTestScheduled, e.Site, e.CheckID)
}

// MsgID implements Event. Interval tests are keyed by (check, site, slot), so
// two scheduler replicas that publish the same slot are stored once;
// confirmations by (origin test, site, attempt).
func (e TestScheduled) MsgID() string {
	if e.Reason == ReasonInterval {
		return "sched:" + e.CheckID + ":" + e.Site + ":" + strconv.FormatInt(e.Slot, 10)
	}
	return "retest:" + e.OriginTestID + ":" + e.Site + ":" + strconv.Itoa(e.Attempt)
}

// Validate implements Event.
func (e TestScheduled) Validate() error {
	var errs []error
	errs = append(errs, routing(e.TestID, e.Site, e.CheckID)...)
	if e.Attempt < 1 {
		errs = append(errs, errors.New("attempt must be >= 1"))
	}
	switch e.Reason {
	case ReasonInterval:
	case ReasonRetest, ReasonConfirm:
		if e.OriginTestID == "" {
			errs = append(errs, errors.New("origin_test_id is required for a "+e.Reason))
		}
	default:
		errs = append(errs, fmt.Errorf("reason %q is not interval, retest or confirm", e.Reason))
	}
	if !validKind(e.Kind) {
		errs = append(errs, fmt.Errorf("kind %q is unknown", e.Kind))
	}
	if e.ScheduledAt.IsZero() {
		errs = append(errs, errors.New("scheduled_at is required"))
	}
	return joinEventErrors("test.scheduled", errs)
}

// Timings are per-phase durations of one SMTP submission or protocol
// dialogue, in milliseconds. Zero means the phase did not happen.
type Timings struct {
	DNSMS       float64 `json:"dns_ms,omitempty"`
	ConnectMS   float64 `json:"connect_ms,omitempty"`
	GreetingMS  float64 `json:"greeting_ms,omitempty"`
	TLSMS       float64 `json:"tls_ms,omitempty"`
	CapsMS      float64 `json:"capabilities_ms,omitempty"`
	AuthMS      float64 `json:"auth_ms,omitempty"`
	TransferMS  float64 `json:"transfer_ms,omitempty"` // MAIL FROM .. end of DATA
	MailboxMS   float64 `json:"mailbox_ms,omitempty"`  // IMAP SELECT / POP3 STAT
	TotalMS     float64 `json:"total_ms"`
	TLSVersion  string  `json:"tls_version,omitempty"` // "TLS1.3"
	PeerAddress string  `json:"peer_address,omitempty"`
}

// MailSent reports the submission of a round-trip probe by the sender.
// Published on mail.sent.<site>.<check>.
type MailSent struct {
	V       int    `json:"v"`
	TestID  string `json:"test_id"`
	CheckID string `json:"check_id"`
	Site    string `json:"site"`
	Attempt int    `json:"attempt"`
	Status  string `json:"status"` // SentOK, SentFailed, SentMonitorError, SentDeferred
	// StartedAt is the probe's signed start time (the t= field), the origin
	// of the round-trip time.
	StartedAt time.Time `json:"started_at"`
	// SentAt is when the first hop accepted the DATA (zero unless Status is
	// SentOK).
	SentAt     time.Time  `json:"sent_at,omitempty"`
	MessageID  string     `json:"message_id,omitempty"` // the probe's Message-ID, without <>
	Hop        string     `json:"hop,omitempty"`        // host:port of the relay or MX used
	Reply      *SMTPReply `json:"smtp_reply,omitempty"` // the last reply (the refusal, or the 250 to DATA)
	ErrorClass string     `json:"error_class,omitempty"`
	Error      string     `json:"error,omitempty"`
	Timings    Timings    `json:"timings"`
	// Evidence.Submission: the dialogue, the queue id, the first hop's
	// name; Evidence.Deferred: the 4xx of a deferral.
	Evidence *Evidence `json:"evidence,omitempty"`
}

// Subject implements Event.
func (e MailSent) Subject() string { return SiteCheckSubject(SubjectMailSent, e.Site, e.CheckID) }

// MsgID implements Event: one outcome per test, and one deferral notice
// before it.
func (e MailSent) MsgID() string {
	if e.Status == SentDeferred {
		return "deferred:" + e.TestID
	}
	return "sent:" + e.TestID
}

// Validate implements Event.
func (e MailSent) Validate() error {
	errs := routing(e.TestID, e.Site, e.CheckID)
	switch e.Status {
	case SentOK, SentFailed, SentMonitorError, SentDeferred:
	default:
		errs = append(errs, fmt.Errorf("status %q is not sent, failed, deferred or monitor_error", e.Status))
	}
	if e.Status != SentMonitorError && e.StartedAt.IsZero() {
		errs = append(errs, errors.New("started_at is required"))
	}
	return joinEventErrors("mail.sent", errs)
}

// MailReturned reports a verified probe that came back to the receiver.
// Published on mail.returned.<site>.<check>, where site and check are the
// probe's signed fields (not the receiver's own site).
type MailReturned struct {
	V       int    `json:"v"`
	TestID  string `json:"test_id"`
	CheckID string `json:"check_id"`
	Site    string `json:"site"`
	Attempt int    `json:"attempt"`
	KeyID   string `json:"key_id"`
	// StartedAt is the signed start time from the probe header (monitor clock).
	StartedAt time.Time `json:"started_at"`
	// ReflectedAt is the reflector's stamp (remote clock), nil when the
	// message came back without one.
	ReflectedAt *time.Time `json:"reflected_at,omitempty"`
	// ReceivedAt is when the receiver had the whole message (monitor clock).
	ReceivedAt time.Time `json:"received_at"`
	Via        string    `json:"via"`                  // "smtp" or "imap"
	Hops       int       `json:"hops"`                 // Received: header fields in the returned message
	MatchedBy  string    `json:"matched_by,omitempty"` // how the test id was found (probemail.Match*)
	// Evidence.Hops: the Received: fields with per-hop delays (remote
	// clocks).
	Evidence *Evidence `json:"evidence,omitempty"`
	// DKIM says whether the return arrived DKIM-signed for the domain of
	// its From (probemail.VerifyDKIM: "pass", "pass_unaligned", "fail",
	// "none", "temperror"); empty when not checked.
	DKIM string `json:"dkim,omitempty"`
	// Path is how the probe came back: "reflector" (stamped), "forward"
	// (a forwarding rule: the probe itself, no legs) or
	// "forward_attachment" (probemail.Path*).
	Path string `json:"path,omitempty"`
}

// Subject implements Event.
func (e MailReturned) Subject() string {
	return SiteCheckSubject(SubjectMailReturned, e.Site, e.CheckID)
}

// MsgID implements Event.
func (e MailReturned) MsgID() string { return "returned:" + e.TestID }

// Validate implements Event.
func (e MailReturned) Validate() error {
	errs := routing(e.TestID, e.Site, e.CheckID)
	if e.StartedAt.IsZero() {
		errs = append(errs, errors.New("started_at is required"))
	}
	if e.ReceivedAt.IsZero() {
		errs = append(errs, errors.New("received_at is required"))
	}
	return joinEventErrors("mail.returned", errs)
}

// Bounce actions (MailBounced.Action), RFC 3464 section 2.3.3.
const (
	BounceFailed  = "failed"  // the probe will not be delivered: the attempt failed
	BounceDelayed = "delayed" // a warning; delivery goes on
)

// MailBounced reports a bounce (a delivery status notification, RFC 3464,
// or a non-standard one) of a probe, taken in by the receiver of the
// probe's site: identified by the VERP envelope sender the bounce was sent
// to (probemail.ParseVERP), or by the probe header it quotes. Published on
// mail.bounced.<site>.<check>.
type MailBounced struct {
	V       int    `json:"v"`
	TestID  string `json:"test_id"`
	CheckID string `json:"check_id"`
	Site    string `json:"site"`
	Action  string `json:"action"` // BounceFailed, BounceDelayed
	Bounce  Bounce `json:"bounce"`
	// ReceivedAt is when the receiver had the whole bounce (monitor clock).
	ReceivedAt time.Time `json:"received_at"`
	MatchedBy  string    `json:"matched_by"` // "verp" or "quoted_probe"
	Via        string    `json:"via"`        // "smtp" or "imap"
}

// Bounce matches (MailBounced.MatchedBy).
const (
	MatchedVERP        = "verp"         // the VERP envelope sender's signed token
	MatchedQuotedProbe = "quoted_probe" // the signed probe header the bounce quotes
)

// Subject implements Event.
func (e MailBounced) Subject() string {
	return SiteCheckSubject(SubjectMailBounced, e.Site, e.CheckID)
}

// MsgID implements Event: one failure and one delay warning per test.
func (e MailBounced) MsgID() string { return "bounced:" + e.TestID + ":" + e.Action }

// Validate implements Event.
func (e MailBounced) Validate() error {
	errs := routing(e.TestID, e.Site, e.CheckID)
	if e.Action != BounceFailed && e.Action != BounceDelayed {
		errs = append(errs, fmt.Errorf("action %q is not failed or delayed", e.Action))
	}
	if e.ReceivedAt.IsZero() {
		errs = append(errs, errors.New("received_at is required"))
	}
	return joinEventErrors("mail.bounced", errs)
}

// CheckTimeout says that a deadline of one attempt passed. Published on
// check.timeout.<site>.<check> by the evaluator's timer and consumed by the
// evaluator, so that the verdict is made in stream order with the returns.
type CheckTimeout struct {
	V        int       `json:"v"`
	TestID   string    `json:"test_id"`
	CheckID  string    `json:"check_id"`
	Site     string    `json:"site"`
	Attempt  int       `json:"attempt"`
	Deadline string    `json:"deadline"` // DeadlineReturn, DeadlineSubmission, DeadlineResult
	DueAt    time.Time `json:"due_at"`   // the deadline itself
	FiredAt  time.Time `json:"fired_at"` // when the timer fired (monitor clock)
}

// Subject implements Event.
func (e CheckTimeout) Subject() string {
	return SiteCheckSubject(SubjectCheckTimeout, e.Site, e.CheckID)
}

// MsgID implements Event. One timeout per attempt and deadline kind, however
// many evaluator replicas fire it.
func (e CheckTimeout) MsgID() string { return "timeout:" + e.TestID + ":" + e.Deadline }

// Validate implements Event.
func (e CheckTimeout) Validate() error {
	errs := routing(e.TestID, e.Site, e.CheckID)
	switch e.Deadline {
	case DeadlineReturn, DeadlineSubmission, DeadlineResult:
	default:
		errs = append(errs, fmt.Errorf("deadline %q is unknown", e.Deadline))
	}
	return joinEventErrors("check.timeout", errs)
}

// ServiceChecked reports what the sender's prober observed in one
// service-check dialogue (kinds smtp, imap, pop3): the phases it reached,
// their timings, the TLS session, the server's reply and an error class.
// Published on service.checked.<site>.<check>, as mail.returned reports a
// round trip; the evaluator makes the verdict (check.result) from it.
//
// ErrorClass is empty when every phase answered as expected; otherwise a
// class of pkg/probe (refused, protocol, tls, cert_invalid, auth,
// cert_expiring, temporary, timeout, monitor) or one the sender decides
// before any dialogue (stale, no_password, probe_build: the monitor could
// not run the check).
type ServiceChecked struct {
	V            int    `json:"v"`
	TestID       string `json:"test_id"`
	CheckID      string `json:"check_id"`
	Site         string `json:"site"`
	Kind         string `json:"kind"` // KindSMTP, KindIMAP, KindPOP3
	Attempt      int    `json:"attempt"`
	Reason       string `json:"reason,omitempty"`
	OriginTestID string `json:"origin_test_id,omitempty"`
	// StartedAt and FinishedAt bound the dialogue (monitor clock).
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Target     string    `json:"target,omitempty"` // host:port checked
	ErrorClass string    `json:"error_class,omitempty"`
	Error      string    `json:"error,omitempty"`
	Phase      string    `json:"phase,omitempty"` // the phase that failed ("greeting", "tls", ...)
	// Reply is the SMTP reply that failed or degraded the check; nil for
	// IMAP and POP3 (their response is in Error).
	Reply   *SMTPReply `json:"smtp_reply,omitempty"`
	Timings Timings    `json:"timings"`
	TLS     *TLSInfo   `json:"tls,omitempty"`
	// Evidence holds the dialogue (Evidence.Dialogue) of a check that did
	// not pass or was slow; nil for a good one.
	Evidence *Evidence `json:"evidence,omitempty"`
}

// Subject implements Event.
func (e ServiceChecked) Subject() string {
	return SiteCheckSubject(SubjectServiceChecked, e.Site, e.CheckID)
}

// MsgID implements Event: one observation per test.
func (e ServiceChecked) MsgID() string { return "checked:" + e.TestID }

// Validate implements Event.
func (e ServiceChecked) Validate() error {
	errs := routing(e.TestID, e.Site, e.CheckID)
	switch e.Kind {
	case KindSMTP, KindIMAP, KindPOP3:
	default:
		errs = append(errs, fmt.Errorf("kind %q is not a service check (smtp, imap, pop3)", e.Kind))
	}
	if e.Attempt < 1 {
		errs = append(errs, errors.New("attempt must be >= 1"))
	}
	if e.StartedAt.IsZero() {
		errs = append(errs, errors.New("started_at is required"))
	}
	return joinEventErrors("service.checked", errs)
}

// TLSVersionName names a TLS protocol version (crypto/tls.VersionTLS13
// etc.) as Timings.TLSVersion and TLSInfo.Version carry it: "TLS1.3";
// an unknown version as "0x0305".
func TLSVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// TLSInfo describes the TLS session of a service check.
type TLSInfo struct {
	Version       string    `json:"version"`                  // "TLS1.2", "TLS1.3"
	CipherSuite   string    `json:"cipher_suite,omitempty"`   // IANA name
	PeerNotAfter  time.Time `json:"peer_not_after,omitempty"` // leaf certificate expiry
	DaysLeft      int       `json:"days_left"`                // whole days until PeerNotAfter
	HostnameMatch bool      `json:"hostname_match"`           // the leaf certificate names the host checked
	Verified      bool      `json:"verified"`                 // the chain verified against the system roots
	PeerSubject   string    `json:"peer_subject,omitempty"`   // leaf certificate subject
	VerifyError   string    `json:"verify_error,omitempty"`   // why Verified is false
}

// CheckResult is the final outcome of one attempt, the evaluator's
// verdict. Published on check.result.<site>.<check> by the evaluator only:
// from mail.sent, mail.returned and its own deadlines for round trips, from
// service.checked for service checks.
//
// Round-trip times come from monitor clocks only: RTTMS = ReceivedAt -
// StartedAt. The legs use the reflector's clock and are stored for analysis,
// never used for a verdict.
type CheckResult struct {
	V        int    `json:"v"`
	TestID   string `json:"test_id"`
	CheckID  string `json:"check_id"`
	Customer string `json:"customer"`
	Site     string `json:"site"`
	Kind     string `json:"kind"`
	Attempt  int    `json:"attempt"`
	// Reason and OriginTestID repeat the TestScheduled that asked for the
	// attempt, so a verdict can tell a confirmation from a regular test.
	Reason       string `json:"reason,omitempty"`
	OriginTestID string `json:"origin_test_id,omitempty"`
	Status       string `json:"status"` // StatusOK, StatusSlow, ...
	// Revision is 1 for the verdict and 2 for the update of a timeout whose
	// probe came back late (Late is then true). The status never changes
	// between revisions: a late return keeps the timeout verdict.
	Revision int  `json:"revision"`
	Late     bool `json:"late,omitempty"`

	StartedAt   time.Time  `json:"started_at"`
	SentAt      *time.Time `json:"sent_at,omitempty"`
	ReflectedAt *time.Time `json:"reflected_at,omitempty"` // remote clock
	ReceivedAt  *time.Time `json:"received_at,omitempty"`
	FinishedAt  time.Time  `json:"finished_at"` // when the verdict was made

	RTTMS         *int64 `json:"rtt_ms,omitempty"`          // monitor clock round trip
	OutgoingLegMS *int64 `json:"outgoing_leg_ms,omitempty"` // reflected_at - started_at (mixed clocks)
	IncomingLegMS *int64 `json:"incoming_leg_ms,omitempty"` // received_at - reflected_at (mixed clocks)
	SkewMS        *int64 `json:"skew_ms,omitempty"`         // estimated remote clock offset
	SkewSuspect   bool   `json:"skew_suspect,omitempty"`    // the legs are impossible or the skew is large

	Reply      *SMTPReply `json:"smtp_reply,omitempty"`
	ErrorClass string     `json:"error_class,omitempty"`
	Error      string     `json:"error,omitempty"`
	// Phase is the service-check phase that failed ("greeting", "tls", ...).
	Phase   string   `json:"phase,omitempty"`
	Timings Timings  `json:"timings"`
	TLS     *TLSInfo `json:"tls,omitempty"`
	Target  string   `json:"target,omitempty"` // address or host:port checked
	// Evidence is what the attempt showed (submission, bounce, hops);
	// Summary says it in one line (Evidence.Line), empty for an ok attempt.
	Evidence *Evidence `json:"evidence,omitempty"`
	Summary  string    `json:"summary,omitempty"`
	// Warnings are what did not fail the attempt but is worth knowing: a
	// delayed DSN, a deferral that passed.
	Warnings []string `json:"warnings,omitempty"`
	// DKIM is the return's DKIM result (MailReturned.DKIM); ReturnPath
	// how it came back (MailReturned.Path).
	DKIM       string `json:"dkim,omitempty"`
	ReturnPath string `json:"return_path,omitempty"`
}

// Subject implements Event.
func (e CheckResult) Subject() string {
	return SiteCheckSubject(SubjectCheckResult, e.Site, e.CheckID)
}

// MsgID implements Event.
func (e CheckResult) MsgID() string {
	return "result:" + e.TestID + ":" + strconv.Itoa(max(e.Revision, 1))
}

// Validate implements Event.
func (e CheckResult) Validate() error {
	errs := routing(e.TestID, e.Site, e.CheckID)
	if !validStatus(e.Status) {
		errs = append(errs, fmt.Errorf("status %q is unknown", e.Status))
	}
	if !validKind(e.Kind) {
		errs = append(errs, fmt.Errorf("kind %q is unknown", e.Kind))
	}
	if e.Attempt < 1 {
		errs = append(errs, errors.New("attempt must be >= 1"))
	}
	return joinEventErrors("check.result", errs)
}

// SiteVote is one site's part in an incident.
type SiteVote struct {
	Site     string       `json:"site"`
	Verdict  string       `json:"verdict"` // "down", "slow", "degraded"
	Attempts []AttemptRef `json:"attempts"`
}

// AttemptRef names one attempt that formed a verdict.
type AttemptRef struct {
	TestID     string     `json:"test_id"`
	Attempt    int        `json:"attempt"`
	Status     string     `json:"status"`
	StartedAt  time.Time  `json:"started_at"`
	RTTMS      *int64     `json:"rtt_ms,omitempty"`
	Reply      *SMTPReply `json:"smtp_reply,omitempty"`
	ErrorClass string     `json:"error_class,omitempty"`
	Phase      string     `json:"phase,omitempty"`
	Summary    string     `json:"summary,omitempty"` // CheckResult.Summary
}

// IncidentOpen says that a quorum of sites agrees a check is down (critical)
// or slow/degraded (warning). Published on incident.open.<check>.
type IncidentOpen struct {
	V          int    `json:"v"`
	IncidentID string `json:"incident_id"`
	CheckID    string `json:"check_id"`
	CheckName  string `json:"check_name,omitempty"`
	Customer   string `json:"customer"`
	Kind       string `json:"kind"`
	Severity   string `json:"severity"` // SeverityCritical, SeverityWarning
	// Since is the start of the first failing attempt; OpenedAt is when the
	// quorum formed.
	Since    time.Time  `json:"since"`
	OpenedAt time.Time  `json:"opened_at"`
	Reason   string     `json:"reason"` // one human sentence, e.g. "no return from 2 of 3 sites; retest failed"
	Sites    []SiteVote `json:"sites"`
	Quorum   int        `json:"quorum"`             // sites needed
	Eligible int        `json:"eligible"`           // sites that could vote (healthy monitor sites)
	Notify   bool       `json:"notify"`             // false: record only (warnings by default, maintenance windows)
	Silenced string     `json:"silenced,omitempty"` // why Notify is false
}

// Subject implements Event.
func (e IncidentOpen) Subject() string { return CheckSubject(SubjectIncidentOpen, e.CheckID) }

// MsgID implements Event.
func (e IncidentOpen) MsgID() string { return "open:" + e.IncidentID }

// Validate implements Event.
func (e IncidentOpen) Validate() error {
	var errs []error
	if e.IncidentID == "" {
		errs = append(errs, errors.New("incident_id is required"))
	}
	if !ValidToken(e.CheckID) {
		errs = append(errs, fmt.Errorf("check_id %q is not a valid token", e.CheckID))
	}
	if e.Severity != SeverityCritical && e.Severity != SeverityWarning {
		errs = append(errs, fmt.Errorf("severity %q is unknown", e.Severity))
	}
	if e.OpenedAt.IsZero() {
		errs = append(errs, errors.New("opened_at is required"))
	}
	return joinEventErrors("incident.open", errs)
}

// IncidentResolved says that an open incident's quorum no longer holds and no
// confirmation attempt is pending. Published on incident.resolved.<check>,
// only ever for an incident that was opened.
type IncidentResolved struct {
	V          int       `json:"v"`
	IncidentID string    `json:"incident_id"`
	CheckID    string    `json:"check_id"`
	CheckName  string    `json:"check_name,omitempty"`
	Customer   string    `json:"customer"`
	Kind       string    `json:"kind"`
	Severity   string    `json:"severity"`
	Since      time.Time `json:"since"`
	OpenedAt   time.Time `json:"opened_at"`
	ResolvedAt time.Time `json:"resolved_at"`
	Reason     string    `json:"reason"` // e.g. "3 of 3 sites deliver again"; ResolvedCheckRemoved
	Notify     bool      `json:"notify"` // mirrors the open: a silenced incident resolves silently
}

// ResolvedCheckRemoved is IncidentResolved.Reason when the incident's check
// left the check file: nobody tests it any more, so the incident is closed
// without the service having recovered (docs/configuration.md, "Reloading
// the check file").
const ResolvedCheckRemoved = "check removed"

// Subject implements Event.
func (e IncidentResolved) Subject() string {
	return CheckSubject(SubjectIncidentResolved, e.CheckID)
}

// MsgID implements Event.
func (e IncidentResolved) MsgID() string { return "resolved:" + e.IncidentID }

// Validate implements Event.
func (e IncidentResolved) Validate() error {
	var errs []error
	if e.IncidentID == "" {
		errs = append(errs, errors.New("incident_id is required"))
	}
	if !ValidToken(e.CheckID) {
		errs = append(errs, fmt.Errorf("check_id %q is not a valid token", e.CheckID))
	}
	if e.ResolvedAt.IsZero() {
		errs = append(errs, errors.New("resolved_at is required"))
	}
	return joinEventErrors("incident.resolved", errs)
}

// Notification outcomes.
const (
	NotifySent   = "sent"
	NotifyFailed = "failed"
	// NotifySuppressed: recorded, deliberately not sent (Notification.Reason
	// says why: Notify=false, a maintenance window, the open was not sent).
	NotifySuppressed = "suppressed"
)

// Notification reports one message to one contact for one incident
// transition. Published on notification.sent.<check>,
// notification.failed.<check> or notification.suppressed.<check>.
type Notification struct {
	V          int       `json:"v"`
	IncidentID string    `json:"incident_id"`
	CheckID    string    `json:"check_id"`
	Customer   string    `json:"customer"`
	Transition string    `json:"transition"`            // "open" or "resolved"
	Contact    string    `json:"contact"`               // contact name
	Address    string    `json:"address"`               // E.164 number or webhook URL host (never a secret)
	Provider   string    `json:"provider"`              // "twilio", "log", "webhook"
	Outcome    string    `json:"outcome"`               // NotifySent, NotifyFailed, NotifySuppressed
	ProviderID string    `json:"provider_id,omitempty"` // e.g. the Twilio message SID
	Attempts   int       `json:"attempts"`
	Error      string    `json:"error,omitempty"`
	Reason     string    `json:"reason,omitempty"` // why a message was suppressed
	Text       string    `json:"text"`
	Segments   int       `json:"segments,omitempty"`
	At         time.Time `json:"at"`
}

// Subject implements Event.
func (e Notification) Subject() string {
	switch e.Outcome {
	case NotifySent:
		return CheckSubject(SubjectNotificationSent, e.CheckID)
	case NotifySuppressed:
		return CheckSubject(SubjectNotificationSuppressed, e.CheckID)
	}
	return CheckSubject(SubjectNotificationFailed, e.CheckID)
}

// MsgID implements Event: one per incident, transition and contact.
func (e Notification) MsgID() string {
	return "notify:" + e.IncidentID + ":" + e.Transition + ":" + e.Contact + ":" + e.Address
}

// Validate implements Event.
func (e Notification) Validate() error {
	var errs []error
	if e.IncidentID == "" {
		errs = append(errs, errors.New("incident_id is required"))
	}
	if !ValidToken(e.CheckID) {
		errs = append(errs, fmt.Errorf("check_id %q is not a valid token", e.CheckID))
	}
	if e.Outcome != NotifySent && e.Outcome != NotifyFailed && e.Outcome != NotifySuppressed {
		errs = append(errs, fmt.Errorf("outcome %q is unknown", e.Outcome))
	}
	return joinEventErrors("notification", errs)
}

// Monitor health states (MonitorHealthEvent.Status).
const (
	MonitorOK       = "ok"
	MonitorDegraded = "degraded"
	MonitorDown     = "down"
)

// MonitorHealthEvent is the monitor's own health at one site: whether it can
// submit probes and receive results. It is for the platform team (metrics
// and alerts), never for customers. Published on monitor.health.<site> when
// the status changes.
type MonitorHealthEvent struct {
	V      int       `json:"v"`
	Site   string    `json:"site"`
	Status string    `json:"status"` // MonitorOK, MonitorDegraded, MonitorDown
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	At     time.Time `json:"at"`
}

// Subject implements Event.
func (e MonitorHealthEvent) Subject() string { return SiteSubject(SubjectMonitorHealth, e.Site) }

// MsgID implements Event.
func (e MonitorHealthEvent) MsgID() string {
	return "health:" + e.Site + ":" + e.Status + ":" + strconv.FormatInt(e.Since.UnixMilli(), 10)
}

// Validate implements Event.
func (e MonitorHealthEvent) Validate() error {
	var errs []error
	if !ValidToken(e.Site) {
		errs = append(errs, fmt.Errorf("site %q is not a valid token", e.Site))
	}
	switch e.Status {
	case MonitorOK, MonitorDegraded, MonitorDown:
	default:
		errs = append(errs, fmt.Errorf("status %q is unknown", e.Status))
	}
	return joinEventErrors("monitor.health", errs)
}

func routing(testID, site, check string) []error {
	var errs []error
	if testID == "" {
		errs = append(errs, errors.New("test_id is required"))
	}
	if !ValidToken(site) {
		errs = append(errs, fmt.Errorf("site %q is not a valid token", site))
	}
	if !ValidToken(check) {
		errs = append(errs, fmt.Errorf("check_id %q is not a valid token", check))
	}
	return errs
}

func validKind(k string) bool {
	switch k {
	case KindRoundTrip, KindSMTP, KindIMAP, KindPOP3:
		return true
	}
	return false
}

func validStatus(s string) bool {
	switch s {
	case StatusOK, StatusSlow, StatusDegraded, StatusTimeout, StatusFailed, StatusMonitorError:
		return true
	}
	return false
}

func joinEventErrors(name string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrEvent, name, errors.Join(errs...))
}

// version implements Event for every event type.
func (e TestScheduled) version() int      { return e.V }
func (e MailSent) version() int           { return e.V }
func (e MailReturned) version() int       { return e.V }
func (e CheckTimeout) version() int       { return e.V }
func (e MailBounced) version() int        { return e.V }
func (e CheckResult) version() int        { return e.V }
func (e ServiceChecked) version() int     { return e.V }
func (e IncidentOpen) version() int       { return e.V }
func (e IncidentResolved) version() int   { return e.V }
func (e Notification) version() int       { return e.V }
func (e MonitorHealthEvent) version() int { return e.V }
