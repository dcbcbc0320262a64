package dsn

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
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
