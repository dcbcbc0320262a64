// Package probe holds what the SMTP, IMAP and POP3 service-check probers
// (subpackages smtpprobe, imapprobe, pop3probe) share: the Target to check,
// the Result of one probe, the error classes and phases, and a Session that
// dials, upgrades to TLS, inspects the peer certificate and times each
// phase.
//
// A probe never takes a timeout of its own: the context's deadline bounds
// the whole dialogue (DNS to QUIT/LOGOUT). When the context ends, the
// connection is closed and the probe reports ClassTimeout (deadline) or
// ClassMonitor (cancelled).
//
// # Result, error classes and statuses
//
// A Result carries per-phase timings in milliseconds (events.Timings: dns,
// connect, greeting, tls, capabilities, auth, mailbox, total), the TLS
// session and peer certificate (events.TLSInfo; nil unless a handshake
// completed), the server's replies in order, the phase that failed and an
// error class. StatusOf maps the class to an events.Status* value (the
// evaluator makes the verdict with it, adding the slow threshold):
//
//	""              ok        every phase answered as expected
//	cert_expiring   degraded  the certificate verifies but expires within cert_warning_days
//	temporary       degraded  a temporary refusal: SMTP 4xx, IMAP [UNAVAILABLE]/[INUSE],
//	                          POP3 -ERR [IN-USE]/[LOGIN-DELAY]/[SYS/TEMP] (RFC 2449, RFC 3206)
//	timeout         timeout   the context's deadline passed before the dialogue ended
//	refused         failed    no connection (name does not resolve, TCP refused or reset),
//	                          or a permanent refusal (SMTP 5xx, IMAP BYE/NO, POP3 -ERR)
//	protocol        failed    a reply that breaks the protocol: malformed, an unexpected
//	                          code, unsolicited lines, a greeting that does not match
//	tls             failed    STARTTLS not offered or refused, or no completed handshake
//	cert_invalid    failed    the certificate does not verify or does not name the host
//	auth            failed    the login was rejected (a password, or an OAuth token the
//	                          endpoint issued) or cannot be attempted safely
//	monitor         monitor_error  the monitor could not run the probe (cancelled, bad target)
//	credentials     monitor_error  no OAuth token: the token endpoint refused the monitor's
//	                          credential (e.g. AADSTS7000215) or could not be reached;
//	                          the server was not contacted
//	stale, no_password, probe_build
//	                monitor_error  the sender could not run the check (ClassStale, ...)
package probe
