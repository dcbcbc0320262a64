// Package sender is Email Scout's sender service for one site: it consumes
// the site's test.scheduled events, builds and signs a round-trip probe
// (pkg/probemail), submits it over SMTP (pkg/submit) either to the
// monitor's own relay or straight to the customer's MX, and publishes
// mail.sent with the outcome.
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
// (shared/cases c02): a refusing relay never turns into a customer outage.
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
// # Signals
//
// The platform team learns that probes cannot be submitted from the gauge
// scout_sender_submission_up{delivery} (1 or 0 after each attempt against
// our relay; absent until the first attempt, so that an old success is
// never shown as current), the counter scout_sender_submissions_total
// {outcome}, the histogram scout_sender_submit_seconds and an error-level
// log line with the relay's reply.
package sender
