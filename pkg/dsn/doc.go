// Package dsn parses bounces (non-delivery reports) of Email Scout's probes,
// so that a probe the customer's system refused is told in minutes rather
// than when the round trip times out.
//
// Parse reads one bounce into a Report: who reported it (Reporting-MTA), the
// fate of each recipient (Action, RFC 3463 Status, Diagnostic-Code, Remote-MTA)
// and, when the bounce returns it, the header of the original probe (its
// X-Scout-Probe value and Message-ID), so that a caller can find and verify
// the test the bounce belongs to.
//
// Standard reports are RFC 3464 delivery status notifications: a
// multipart/report (RFC 6522) of report-type delivery-status whose second
// part, message/delivery-status, holds one block of per-message fields and
// one block of per-recipient fields per recipient, and whose optional third
// part (message/rfc822, message/global or text/rfc822-headers) is the
// returned original. Reports that are not standard are read best-effort from
// their text: Microsoft Exchange and Exchange Online NDRs, qmail's
// "qmail-send program" notices and Exim's "mail delivery software" notices.
// Report.Parser says which reading matched.
//
// MIME structure and header fields (continuation lines, RFC 2047 encoded
// words, transfer encodings, charsets) are read with
// github.com/emersion/go-message. Every read is bounded (MaxMessageBytes,
// MaxOriginalHeaderBytes and the limits next to them), so a hostile bounce
// costs at most a small multiple of its size.
//
// Report.Permanent and Report.Delayed classify a report, and Report.Summary
// gives the one line of evidence an event carries, such as
//
//	mx1.acme.example refused the probe: 550 5.1.1 <webscout@acme.example>: Recipient address rejected
package dsn
