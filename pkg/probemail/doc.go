// Package probemail is Email Scout's probe wire format: building a signed
// probe message, verifying it, stamping it as the reflector does, and
// recovering the test from a returned message, however mail systems on the
// way have re-encoded, folded or prefixed it.
//
// # The probe header
//
// A probe is a normal RFC 5322 message. The monitor's facts travel in one
// signed header field:
//
//	X-Scout-Probe: v=1; k=<key id>; id=<test id>; c=<check>; s=<site>; a=<attempt>;
//	 t=<started_at, unix ms>; r=<return address>; sig=<base64url HMAC-SHA256>
//
// The signature is HMAC-SHA256 (RFC 2104) under the key named by k, over the
// canonical string
//
//	v=1;k=<k>;id=<id>;c=<c>;s=<s>;a=<a>;t=<t>;r=<r>;to=<probe To address, lower case>
//
// so that it covers every field but sig, and the probe's recipient: a probe
// cannot be redirected to another mailbox or re-signed for another check.
// Keys belong to one customer and have ids, so keys can be rotated: a
// Keyring signs with each customer's first key and verifies with any.
//
// # The reflection
//
// The reflector (package reflector) answers a verified probe by adding
//
//	X-Scout-Reflected-At: 2026-05-01T19:00:03.000Z   (RFC 3339, UTC, milliseconds)
//	X-Scout-Probe-To: <the probe's To address>      (so the monitor can verify)
//	Auto-Submitted: auto-replied                     (RFC 3834)
//	In-Reply-To / References: <the probe's Message-ID>
//
// appending " [reflected <same time>]" to the Subject, and mailing it to the
// signed return address r.
//
// # Matching a return
//
// ParseReturned finds the test id from the signed header first (unfolded and
// RFC 2047-decoded), then from the Message-ID, In-Reply-To and References,
// and only last from the decoded Subject, whatever prefixes ("[EXTERNAL]",
// "Re:") were added. Only a verified header makes a return count; the other
// sources identify a probe for clean-up and diagnostics.
//
// Round-trip times use monitor clocks only (Measure); the legs through the
// reflector's clock are reported for analysis with a skew estimate.
package probemail
