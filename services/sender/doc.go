// Package sender is Email Scout's sender service for one site: it consumes
// the site's test.scheduled events, builds and signs a round-trip probe
// (pkg/probemail), submits it over SMTP (pkg/submit) either to the
// monitor's own relay or straight to the customer's MX, and publishes
// mail.sent with the outcome. For service checks (kinds smtp, imap, pop3)
// it runs the protocol dialogue itself and publishes check.result (see
// "Service checks" below).
//
// # Outcomes
//
// mail.sent carries one of three statuses (events.Sent*):
//
//	sent           the first hop answered 250 to the DATA (RFC 5321 section 4.1.1.4)
//	failed         the customer's side refused or could not be reached (mx delivery only)
//	monitor_error  the monitor could not run the attempt: our relay refused or was
//	               unreachable, the test was picked up too late, no signing key, ...
//
// In relay delivery every failure is the relay's, hence the monitor's
// (docs/field-cases.md, c02): a refusing relay never turns into a customer outage.
// In mx delivery a 5xx from the customer's MX, a 4xx that persists until
// the send window closes, an unreachable MX and a DNS failure are the
// customer's (failed).
//
// A temporary failure (4xx reply, network error) is retried by asking
// JetStream to redeliver the test (NakWithDelay) for as long as the retry
// can still start before the test's NotAfter; after that the last failure
// is reported. A probe is never sent after NotAfter: a test picked up late
// is reported as monitor_error with error class "stale".
//
// # Service checks
//
// A test of kind smtp, imap or pop3 runs the prober of its kind
// (internal/probe/{smtpprobe,imapprobe,pop3probe}; docs/service-checks.md)
// against the check's host and port, bounded by the check's timeout, and
// publishes exactly one events.CheckResult (message id result:<test>:1)
// that repeats the test's attempt, reason and origin test id, so that the
// evaluator matches confirmations. Its status is the prober's (ok,
// degraded, timeout, failed, monitor_error), except that an ok dialogue
// whose total time is at or above the check's slow threshold is "slow", a
// warning. The monitor's own faults are monitor_error, never a customer
// failure: a test picked up after NotAfter (class stale, nothing is run), a
// password or OAuth variable that is unset or empty (class no_password, the
// error names the check, the field and the variable), an OAuth credential
// the token endpoint refuses or a key that cannot be used (credentials),
// an invalid target (probe_build).
// A redelivered test publishes the result decided before and never probes
// twice; while a check runs, the message is kept from redelivery with
// progress acknowledgements.
//
// # Signals
//
// The platform team learns that probes cannot be submitted from the gauge
// scout_sender_submission_up{delivery} (1 or 0 after each attempt against
// our relay; absent until the first attempt, so that an old success is
// never shown as current), the counter scout_sender_submissions_total
// {outcome}, the histogram scout_sender_submit_seconds and an error-level
// log line with the relay's reply. Service checks count in
// scout_sender_service_checks_total{kind,status},
// scout_sender_service_check_seconds{kind} and
// scout_sender_check_results_total{kind,status,error_class} (results
// stored).
package sender
