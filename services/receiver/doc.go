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
// # IMAP mode
//
// Where the monitor cannot run an SMTP server for the return domain, the
// return addresses are delivered to a mailbox and the receiver watches it
// over IMAP (SCOUT_RECEIVER_MODE=imap) with pkg/imapwatch, the watcher that
// scout-reflector's imap mode uses too: messages are found by UID with
// UIDVALIDITY tracking, never by date or a server-side SEARCH
// (docs/field-cases.md, c10); IDLE (RFC 2177) is re-issued every 9 minutes
// (SCOUT_RECEIVER_IMAP_IDLE_REFRESH), a server without IDLE is polled; a
// lost connection is re-established with exponential backoff.
//
// A message is this receiver's when its probe header is signed for this
// site and for one of the return addresses. It goes through Take, the same
// verification as in SMTP mode, with Via "imap"; a stored (or duplicate)
// return is deleted only after JetStream acknowledged its mail.returned. A
// store failure leaves it in the mailbox and it is taken again 30 seconds
// later, still with the time it was first seen. Another site's probe,
// foreign mail and forged mail are never touched; bounces (null sender)
// are counted and logged as in SMTP mode and left in the mailbox.
//
// ReceivedAt is the monitor clock when a scan first listed the message.
// That is later than the delivery into the mailbox by the server's IDLE
// notification delay (Dovecot: about half a second) or, without IDLE, by up
// to the poll interval; returns waiting in the mailbox while the receiver
// was down count from when it comes back. While this site's probes are out
// the receiver polls every SCOUT_RECEIVER_IMAP_FAST_POLL instead, and when
// the window between the scan that did not list the message and the one
// that did is at most two fast polls wide, ReceivedAt is its middle (Take
// starts the window at the probe's started_at when that is later:
// Envelope.ArrivedAfter and ListedAt). The server's INTERNALDATE is on
// another clock and in whole seconds, so it is only logged. SMTP mode is
// therefore the precise one.
//
// Clean-up (docs/field-cases.md, c01): a message that carries a verified probe of
// this site but could not be taken (a replay, a check this receiver does
// not know, a null-sender copy) is deleted once the probe's signed start is
// older than the longest check timeout plus SCOUT_RECEIVER_IMAP_CLEANUP_MARGIN,
// when first handled or by a sweep every 10 minutes. A probe still in flight
// is never deleted: a return is taken as soon as it is seen, however fast
// it came back, and the clean-up looks only at signed ages, never at IMAP
// dates.
package receiver
