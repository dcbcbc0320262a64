package dsn

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/probemail"
)

// The probe every sample in testdata returns (or would have returned): its
// X-Scout-Probe value there was made by probemail.Sign with these values.
var (
	probeKey = probemail.Key{ID: "acme-2026a", Customer: "acme", Secret: probemail.Secret(bytes.Repeat([]byte{7}, 32))}
	probe    = probemail.Probe{
		KeyID: "acme-2026a", TestID: "k7q2m4xwz3b5nd6pfr2taey4", CheckID: "acme-roundtrip", Site: "eu-west",
		Attempt: 1, StartedAt: time.Date(2026, 12, 5, 2, 30, 0, 0, time.UTC), ReturnTo: "scout@eu-west.return.example",
	}
	probeTo  = "webscout@acme.example"
	verpFrom = "scout+k7q2m4xwz3b5nd6pfr2taey46e2is2ach3w5@eu-west.return.example"
)

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err) // test table constants only
	}
	return t.UTC()
}

func TestParseSamples(t *testing.T) {
	cases := []struct {
		file         string
		parser       string
		reportingMTA string
		arrival      time.Time
		envID        string
		subject      string
		recipient    Recipient
		permanent    bool
		delayed      bool
		summary      string
		original     bool // a returned original with the signed probe header
	}{
		{
			file: "postfix-user-unknown.eml", parser: ParserRFC3464, reportingMTA: "relay.monitor.example",
			arrival: utc("2026-12-05T02:30:00Z"), subject: "Undelivered Mail Returned to Sender",
			recipient: Recipient{
				FinalRecipient: probeTo, OriginalRecipient: probeTo, Action: ActionFailed, Status: "5.1.1",
				DiagnosticType: "smtp", Code: 550, RemoteMTA: "mx1.acme.example",
				Diagnostic: "550 5.1.1 <webscout@acme.example>: Recipient address rejected: User unknown in local recipient table",
			},
			permanent: true,
			summary:   "mx1.acme.example refused the probe: 550 5.1.1 <webscout@acme.example>: Recipient address rejected: User unknown in local recipient table",
			original:  true,
		},
		{
			file: "postfix-access-denied.eml", parser: ParserRFC3464, reportingMTA: "relay.monitor.example",
			arrival: utc("2026-12-05T02:50:01Z"), envID: "k7q2m4xwz3b5nd6pfr2taey4", subject: "Undelivered Mail Returned to Sender",
			recipient: Recipient{
				FinalRecipient: probeTo, OriginalRecipient: probeTo, Action: ActionFailed, Status: "5.7.1",
				DiagnosticType: "smtp", Code: 554, RemoteMTA: "mx2.acme.example",
				Diagnostic: "554 5.7.1 <webscout@acme.example>: Recipient address rejected: Access denied",
			},
			permanent: true,
			summary:   "mx2.acme.example refused the probe: 554 5.7.1 <webscout@acme.example>: Recipient address rejected: Access denied",
			original:  true,
		},
		{
			file: "postfix-delayed.eml", parser: ParserRFC3464, reportingMTA: "relay.monitor.example",
			arrival: utc("2026-12-05T02:30:00Z"), subject: "Delayed Mail (still being retried)",
			recipient: Recipient{
				FinalRecipient: probeTo, OriginalRecipient: probeTo, Action: ActionDelayed, Status: "4.4.1",
				DiagnosticType: "X-Postfix", Diagnostic: "connect to mx1.acme.example[192.0.2.25]:25: Connection timed out",
				WillRetryUntil: utc("2026-12-10T02:30:00Z"),
			},
			delayed:  true,
			summary:  "relay.monitor.example delayed the probe: 4.4.1 connect to mx1.acme.example[192.0.2.25]:25: Connection timed out",
			original: true,
		},
		{
			file: "gmail.eml", parser: ParserRFC3464, reportingMTA: "googlemail.com",
			arrival: utc("2026-12-05T10:30:00Z"), subject: "Delivery Status Notification (Failure)",
			recipient: Recipient{
				FinalRecipient: probeTo, Action: ActionFailed, Status: "5.1.1", DiagnosticType: "smtp", Code: 550,
				RemoteMTA: "aspmx.l.google.com", LastAttemptDate: utc("2026-12-05T10:30:01Z"),
				Diagnostic: "550 5.1.1 The email account that you tried to reach does not exist. Please try " +
					"double-checking the recipient's email address for typos or unnecessary spaces. For more " +
					"information, go to https://support.google.com/mail/?p=NoSuchUser a640c23a62f3a-a9e8f1c2d3b4si1234567ejc.321 - gsmtp",
			},
			permanent: true,
			summary: "aspmx.l.google.com refused the probe: 550 5.1.1 The email account that you tried to reach does not exist. " +
				"Please try double-checking the recipient's email address for typos or unnecessary spaces. For more " +
				"information, go to https://support.google.com/mail/?p=NoSuchUser a640c23a62f3a-a9e8f1c2d3b4s...",
			original: true,
		},
		{
			file: "exchange-online.eml", parser: ParserRFC3464, reportingMTA: "AM0PR01MB1234.eurprd01.prod.exchangelabs.com",
			arrival: utc("2026-12-05T02:30:01Z"),
			subject: "Unzustellbar: Email Scout probe k7q2m4xwz3b5nd6pfr2taey4 (acme-roundtrip, site eu-west, attempt 1)",
			recipient: Recipient{
				FinalRecipient: probeTo, Action: ActionFailed, Status: "5.1.10", DiagnosticType: "smtp", Code: 550,
				Diagnostic: "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient webscout@acme.example not found by SMTP address lookup",
			},
			permanent: true,
			summary:   "AM0PR01MB1234.eurprd01.prod.exchangelabs.com refused the probe: 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient webscout@acme.example not found by SMTP address lookup",
			original:  true,
		},
		{
			file: "exchange-online-html.eml", parser: ParserExchange, reportingMTA: "DB9PR02MB5678.eurprd02.prod.exchangelabs.com",
			subject: "Undeliverable: Email Scout probe k7q2m4xwz3b5nd6pfr2taey4 (acme-roundtrip, site eu-west, attempt 1)",
			recipient: Recipient{
				FinalRecipient: probeTo, Action: ActionFailed, Status: "5.7.1", Code: 554, RemoteMTA: "mx1.acme.example",
				Diagnostic: "554 5.7.1 <webscout@acme.example>: Recipient address rejected: Access denied",
			},
			permanent: true,
			summary:   "mx1.acme.example refused the probe: 554 5.7.1 <webscout@acme.example>: Recipient address rejected: Access denied",
			original:  true,
		},
		{
			file: "exchange-legacy.eml", parser: ParserExchange, reportingMTA: "EX01.corp.acme.example",
			subject: "Undeliverable: Email Scout probe k7q2m4xwz3b5nd6pfr2taey4 (acme-roundtrip, site eu-west, attempt 1)",
			recipient: Recipient{
				FinalRecipient: probeTo, Action: ActionFailed, Status: "5.1.1", Code: 550,
				Diagnostic: "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
			},
			permanent: true,
			summary:   "EX01.corp.acme.example refused the probe: 550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
			original:  true,
		},
		{
			file: "exim.eml", parser: ParserExim, reportingMTA: "mail.acme.example",
			subject: "Mail delivery failed: returning message to sender",
			recipient: Recipient{
				FinalRecipient: probeTo, Action: ActionFailed, Status: "5.1.1", Code: 550, RemoteMTA: "mbox1.internal.acme.example",
				Diagnostic: "550 5.1.1 <webscout@acme.example>: Recipient address rejected: User unknown in virtual mailbox table",
			},
			permanent: true,
			summary:   "mbox1.internal.acme.example refused the probe: 550 5.1.1 <webscout@acme.example>: Recipient address rejected: User unknown in virtual mailbox table",
			original:  true,
		},
		{
			file: "qmail.eml", parser: ParserQmail, reportingMTA: "mail.acme.example", subject: "failure notice",
			recipient: Recipient{
				FinalRecipient: probeTo, Action: ActionFailed, Status: "5.1.1", Code: 550, RemoteMTA: "192.0.2.40",
				Diagnostic: "550 5.1.1 <webscout@acme.example>: Recipient address rejected: User unknown in virtual mailbox table",
			},
			permanent: true,
			summary:   "192.0.2.40 refused the probe: 550 5.1.1 <webscout@acme.example>: Recipient address rejected: User unknown in virtual mailbox table",
			original:  true,
		},
	}
	keys, err := probemail.NewKeyring(probeKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			r, err := Parse(readSample(t, tc.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if r.Parser != tc.parser || r.ReportingMTA != tc.reportingMTA || !r.ArrivalDate.Equal(tc.arrival) ||
				r.OriginalEnvelopeID != tc.envID || r.Subject != tc.subject {
				t.Errorf("report = parser %q, reporting MTA %q, arrival %v, envid %q, subject %q;\nwant %q, %q, %v, %q, %q",
					r.Parser, r.ReportingMTA, r.ArrivalDate, r.OriginalEnvelopeID, r.Subject,
					tc.parser, tc.reportingMTA, tc.arrival, tc.envID, tc.subject)
			}
			if len(r.Recipients) != 1 || !reflect.DeepEqual(r.Recipients[0], tc.recipient) {
				t.Errorf("recipients = %+v\nwant [%+v]", r.Recipients, tc.recipient)
			}
			if r.Permanent() != tc.permanent || r.Delayed() != tc.delayed {
				t.Errorf("Permanent() = %v, Delayed() = %v; want %v, %v", r.Permanent(), r.Delayed(), tc.permanent, tc.delayed)
			}
			if got := r.Summary(); got != tc.summary {
				t.Errorf("Summary() =\n  %q\nwant\n  %q", got, tc.summary)
			}
			if len(r.Summary()) > MaxSummaryBytes {
				t.Errorf("Summary() is %d bytes, over %d", len(r.Summary()), MaxSummaryBytes)
			}
			// The bounce goes to the probe's VERP envelope sender, which names
			// the test on its own.
			if tok, ok := probemail.ParseVERP(r.To); !ok || tok.TestID != probe.TestID || !tok.Verify(probe.Site, probe.CheckID, probeKey) {
				t.Errorf("To %q is not the probe's verified VERP address (%+v, %v)", r.To, tok, ok)
			}
			if !tc.original {
				if r.Original != nil {
					t.Errorf("Original = %+v, want nil", r.Original)
				}
				return
			}
			o := r.Original
			if o == nil {
				t.Fatal("Original = nil, want the returned probe's header")
			}
			if o.TestID != probe.TestID || o.MatchedBy != probemail.MatchHeader || o.Truncated ||
				o.MessageID != probemail.ProbeMessageID(probe.TestID, probe.ReturnTo) {
				t.Errorf("Original = %+v", o)
			}
			// A caller verifies the returned header against the recipient.
			p, _, err := probemail.Verify(o.Probe, r.Recipients[0].FinalRecipient, keys)
			if err != nil || p != probe {
				t.Errorf("returned X-Scout-Probe does not verify: %v (%+v)", err, p)
			}
		})
	}
}

// report returns a minimal multipart/report (RFC 6522) whose
// delivery-status part is status and whose third part, when original is not
// empty, is a message/rfc822 with that content. Lines end in CRLF.
func report(status, original string) []byte {
	var b strings.Builder
	b.WriteString("From: MAILER-DAEMON@relay.monitor.example\nTo: " + verpFrom + "\nSubject: Undelivered Mail\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\n\n" +
		"--b1\nContent-Type: text/plain\n\nThe mail system\n\n" +
		"--b1\nContent-Type: message/delivery-status\n\n" + status + "\n")
	if original != "" {
		b.WriteString("--b1\nContent-Type: message/rfc822\n\n" + original + "\n")
	}
	b.WriteString("--b1--\n")
	return []byte(strings.ReplaceAll(b.String(), "\n", "\r\n"))
}

const perMessageBlock = "Reporting-MTA: dns; relay.monitor.example\n"

func TestParseErrors(t *testing.T) {
	msg, err := probemail.Build(probe, probeTo, probeKey, probemail.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reflection, err := probemail.Reflect(msg, probe, probeTo, probeTo, probe.StartedAt.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	mdn := "From: a@b\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=disposition-notification; boundary=x\n\n" +
		"--x\nContent-Type: text/plain\n\nYour message was displayed.\n--x\nContent-Type: message/disposition-notification\n\n" +
		"Reporting-UA: mua.example\nFinal-Recipient: rfc822; webscout@acme.example\nDisposition: manual-action/MDN-sent-manually; displayed\n--x--\n"
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrNotBounce},
		{"a probe", msg, ErrNotBounce},
		{"a reflection", reflection, ErrNotBounce},
		{"plain mail", []byte("From: a@b\nSubject: hello\n\nSee you tomorrow.\n"), ErrNotBounce},
		{"read receipt (RFC 8098)", []byte(mdn), ErrNotBounce},
		{"binary garbage", []byte("\x00\x01\x02\xff\xfe:\x00\n\n\x00"), ErrMalformed},
		{"header starts with a continuation", []byte(" folded: x\n\nbody\n"), ErrMalformed},
		{"report without per-recipient block", report(perMessageBlock+"Arrival-Date: Sat, 5 Dec 2026 02:30:00 +0000\n", ""), ErrNoRecipient},
		{"report with an empty status part", report("", ""), ErrNoRecipient},
		{"qmail notice naming nobody", []byte("Subject: failure notice\n\nHi. This is the qmail-send program at x.example.\nSorry.\n"), ErrNoRecipient},
		{"too large", append([]byte("Subject: x\n\n"), make([]byte, MaxMessageBytes)...), ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(tc.msg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse = %+v, %v; want an error wrapping %v", r, err, tc.want)
			}
		})
	}
}

// Fields RFC 3464 allows to be folded or (in text) RFC 2047-encoded, a
// base64 status part, an mbox "From " line, and a missing blank line
// between the per-message and the per-recipient block.
func TestParseEncodings(t *testing.T) {
	status := "Reporting-MTA: dns;\n relay.monitor.example\nArrival-Date: Sat, 5 Dec 2026\n 02:30:00 +0000\n" +
		"Final-Recipient: rfc822;\n\t<webscout@acme.example>\nAction: Failed\nStatus: 5.1.1 (bad destination mailbox)\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 =?utf-8?q?Empf=C3=A4nger?=\n =?utf-8?q?_unbekannt?=\n"
	enc := base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(status, "\n", "\r\n")))
	msg := "From MAILER-DAEMON Sat Dec  5 02:30:01 2026\n" +
		"From: MAILER-DAEMON@relay.monitor.example\nSubject: =?iso-8859-1?q?Unzustellbar=3A_R=FCcksendung?=\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=b1\n\n" +
		"--b1\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n" + enc + "\n--b1--\n"
	r, err := Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	want := Recipient{FinalRecipient: probeTo, Action: ActionFailed, Status: "5.1.1", DiagnosticType: "smtp",
		Diagnostic: "550 5.1.1 Empfänger unbekannt", Code: 550}
	if len(r.Recipients) != 1 || !reflect.DeepEqual(r.Recipients[0], want) {
		t.Errorf("recipients = %+v, want [%+v]", r.Recipients, want)
	}
	if r.ReportingMTA != "relay.monitor.example" || !r.ArrivalDate.Equal(utc("2026-12-05T02:30:00Z")) {
		t.Errorf("reporting MTA %q, arrival %v", r.ReportingMTA, r.ArrivalDate)
	}
	if r.Subject != "Unzustellbar: Rücksendung" {
		t.Errorf("subject = %q", r.Subject)
	}
	if r.Original != nil {
		t.Errorf("Original = %+v, want nil (the report returns nothing)", r.Original)
	}
	if got := r.Summary(); got != "relay.monitor.example refused the probe: 550 5.1.1 Empfänger unbekannt" {
		t.Errorf("Summary() = %q", got)
	}
}

func TestParseLimits(t *testing.T) {
	t.Run("recipients", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(perMessageBlock)
		for i := 0; i < MaxRecipients+50; i++ {
			fmt.Fprintf(&b, "\nFinal-Recipient: rfc822; u%d@acme.example\nAction: failed\nStatus: 5.1.1\n", i)
		}
		r, err := Parse(report(b.String(), ""))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Recipients) != MaxRecipients || r.Recipients[0].FinalRecipient != "u0@acme.example" {
			t.Errorf("%d recipients, first %+v; want the first %d", len(r.Recipients), r.Recipients[0], MaxRecipients)
		}
	})
	t.Run("returned header", func(t *testing.T) {
		value, err := probemail.Sign(probe, probeTo, probeKey)
		if err != nil {
			t.Fatal(err)
		}
		original := "X-Scout-Probe: " + value + "\n" +
			strings.Repeat("Received: from a.example by b.example; Sat, 5 Dec 2026 02:30:00 +0000\n", 2*MaxOriginalHeaderBytes/70) +
			"Message-Id: <after-the-cut@x>\n\nbody\n"
		r, err := Parse(report(perMessageBlock+"\nFinal-Recipient: rfc822; webscout@acme.example\nAction: failed\n", original))
		if err != nil {
			t.Fatal(err)
		}
		o := r.Original
		if o == nil || !o.Truncated || o.TestID != probe.TestID || o.MessageID != "" {
			t.Errorf("Original = %+v; want the probe header read, truncated before the Message-Id", o)
		}
	})
}

func TestClassification(t *testing.T) {
	cases := []struct {
		rc                 Recipient
		permanent, delayed bool
	}{
		{Recipient{Action: ActionFailed, Status: "5.1.1"}, true, false},
		{Recipient{Action: ActionFailed, Status: "4.4.7"}, true, false}, // gave up after retrying
		{Recipient{Action: ActionDelayed, Status: "4.4.1"}, false, true},
		{Recipient{Action: ActionDelayed, Status: "5.0.0"}, false, true}, // a delay is never a failure
		{Recipient{Action: ActionDelivered, Status: "2.0.0"}, false, false},
		{Recipient{Action: ActionRelayed, Status: "5.1.1"}, false, false},
		{Recipient{Status: "5.7.1"}, true, false},
		{Recipient{Status: "4.2.2"}, false, false},
		{Recipient{Code: 554}, true, false},
		{Recipient{Code: 554, Status: "4.0.0"}, false, false}, // the status decides
		{Recipient{}, false, false},
	}
	for _, tc := range cases {
		if tc.rc.Permanent() != tc.permanent || tc.rc.Delayed() != tc.delayed {
			t.Errorf("%+v: Permanent() = %v, Delayed() = %v; want %v, %v", tc.rc, tc.rc.Permanent(), tc.rc.Delayed(), tc.permanent, tc.delayed)
		}
	}
	mixed := &Report{ReportingMTA: "relay.monitor.example", Recipients: []Recipient{
		{FinalRecipient: "a@acme.example", Action: ActionDelayed, Status: "4.4.1"},
		{FinalRecipient: "b@acme.example", Action: ActionFailed, Status: "5.2.2", RemoteMTA: "mx1.acme.example", Diagnostic: "552 5.2.2 Mailbox full\r\n\tsorry"},
	}}
	if !mixed.Permanent() || mixed.Delayed() {
		t.Errorf("a report with a failure and a delay: Permanent() = %v, Delayed() = %v", mixed.Permanent(), mixed.Delayed())
	}
	if got := mixed.Summary(); got != "mx1.acme.example refused the probe: 552 5.2.2 Mailbox full sorry" {
		t.Errorf("Summary() = %q", got)
	}
}

func TestSummaryFallbacks(t *testing.T) {
	cases := []struct {
		r    Report
		want string
	}{
		{Report{Recipients: []Recipient{{Action: ActionFailed, Status: "5.1.1"}}}, "the mail system refused the probe: 5.1.1"},
		{Report{ReportingMTA: "relay.example", Recipients: []Recipient{{Action: ActionFailed}}}, "relay.example refused the probe"},
		{Report{ReportingMTA: "relay.example", Recipients: []Recipient{{Action: ActionDelivered, Status: "2.0.0"}}},
			`relay.example reported "delivered" for the probe: 2.0.0`},
		{Report{ReportingMTA: "relay.example", Recipients: []Recipient{{Action: ActionFailed, Diagnostic: "550 \x1b[31mred\x00\u2028x"}}},
			"relay.example refused the probe: 550 [31mred x"},
		{Report{}, ""},
	}
	for _, tc := range cases {
		if got := tc.r.Summary(); got != tc.want {
			t.Errorf("Summary() of %+v = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestEximDelayed(t *testing.T) {
	msg := "From: Mail Delivery System <Mailer-Daemon@mail.acme.example>\nTo: " + verpFrom + "\n" +
		"Subject: Warning: message 1vRk2D-000Abc-0x delayed 24 hours\n\n" +
		"This message was created automatically by mail delivery software.\n" +
		"A message that you sent has not yet been delivered to one or more of its\n" +
		"recipients after more than 24 hours on the queue on mail.acme.example.\n\n" +
		"The address to which the message has not yet been delivered is:\n\n" +
		"  webscout@acme.example\n    host mbox1.internal.acme.example [10.0.0.12]: 451 4.3.0 Temporary lookup failure\n\n" +
		"No action is required on your part.\n"
	r, err := Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if r.Parser != ParserExim || !r.Delayed() || r.Permanent() {
		t.Errorf("parser %q, Delayed() %v, Permanent() %v", r.Parser, r.Delayed(), r.Permanent())
	}
	if got := r.Summary(); got != "mbox1.internal.acme.example delayed the probe: 451 4.3.0 Temporary lookup failure" {
		t.Errorf("Summary() = %q", got)
	}
}
