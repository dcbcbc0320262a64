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
// # VERP envelope senders
//
// Each probe is sent with an envelope sender (MAIL FROM) that names its
// test, so that a bounce identifies the test even when it quotes nothing of
// the probe (variable envelope return path, VERPAddress and ParseVERP). It
// is the site's return address with a 36-character token after a '+':
//
//	<local>+<token>@<domain>          e.g. scout+<token>@eu-west.return.example
//	token = <test id><hash><mac>      24 + 4 + 8 characters of a-z 2-7
//
// The test id is the 24-character id of events.NewTestID. The hash is the
// first 20 bits of SHA-256("verp-check" NUL site NUL check), so that a
// receiver can index its (site, check) pairs by VERPHash and find the
// candidates a token may belong to; distinct pairs may share a hash, and the
// mac decides. The mac is the first 40 bits of HMAC-SHA256 (RFC 2104) under
// the customer's probe key over "verp" NUL test id NUL site NUL check. The
// hash and the mac are lowercase base32 (the alphabet of test ids), and the
// token is read case-insensitively, since some MTAs change the case of
// addresses. The key id is not in the token: a receiver tries each key of
// the check's customer. The local part stays within 64 octets (RFC 5321
// section 4.5.3.1.1), which leaves at most 27 octets for <local>.
//
// Round-trip times use monitor clocks only (Measure); the legs through the
// reflector's clock are reported for analysis with a skew estimate.
package probemail
