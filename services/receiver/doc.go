// Package receiver is Email Scout's receiver service for one site: it takes
// reflected probes back in, verifies them and publishes mail.returned.
//
// # SMTP mode
//
// The receiver is the SMTP server (RFC 5321) of the return domain. It is not
// an open relay: RCPT is accepted only for the configured return addresses
// (compared case-insensitively) and refused with "550 5.1.1" otherwise. The
// message size, the number of recipients and the time per command are
// bounded; STARTTLS (RFC 3207) is offered when a certificate is configured.
//
// After the DATA, the message is parsed with probemail.ParseReturned and must
// carry a valid X-Scout-Probe header, verified for the probe's recipient
// (the reflector's X-Scout-Probe-To, else the check's target), signed by a
// key of the customer that owns the check, and started less than MaxAge ago.
// Anything else is forged or replayed mail and is refused with "550 5.7.1"
// and the reason. Mail from the null sender is always answered 250: a
// verified reflection (RFC 3834 auto-replies may use the null sender) is a
// return like any other; anything else, a bounce or DSN (RFC 3464) above
// all, is dropped, counted and logged with any test id it mentions, since
// refusing a bounce would make a double bounce.
//
// A verified return is published as events.MailReturned on
// mail.returned.<probe site>.<probe check>, and the 250 is sent only after
// JetStream acknowledged it. If it cannot be stored the answer is
// "451 4.3.0": the sending MTA keeps the message and retries, so a crash or
// a NATS outage loses nothing. A duplicate (JetStream already holds the
// test's return) is accepted with 250 and counted.
//
// ReceivedAt is the injected clock's time at the end of the DATA: the
// monitor-clock end of the round trip.
//
// # Other modes
//
// Verification and publishing (Receiver.Take) do not depend on SMTP, so a
// mailbox watcher (IMAP mode, a later issue) can feed messages through the
// same path with Via "imap".
package receiver
