package dsn

import (
	"testing"
	"time"
)

func TestFieldReaders(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"dns; mx1.acme.example", "mx1.acme.example"},
		{"dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com", "AM0PR01MB1234.eurprd01.prod.exchangelabs.com"},
		{"dns; aspmx.l.google.com. (2a00:1450:400c:c0b::1b, the server for the domain acme.example.)", "aspmx.l.google.com"},
		{"dns; [192.0.2.25]", "192.0.2.25"},
		{"mx1.acme.example", "mx1.acme.example"},
		{"", ""},
	} {
		if got := mtaName(tc.in); got != tc.want {
			t.Errorf("mtaName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"rfc822; webscout@acme.example", "webscout@acme.example"},
		{"rfc822;<webscout@acme.example>", "webscout@acme.example"},
		{"webscout@acme.example", "webscout@acme.example"},
	} {
		if got := address(tc.in); got != tc.want {
			t.Errorf("address(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"5.1.1", "5.1.1"}, {"4.4.7 (delivery time expired)", "4.4.7"}, {"5.1.10", "5.1.10"},
		{"550", ""}, {"6.1.1", ""}, {"5.1", ""}, {"", ""},
	} {
		if got := status(tc.in); got != tc.want {
			t.Errorf("status(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"failed", ActionFailed}, {"Delayed", ActionDelayed}, {"delivered (to mailbox)", ActionDelivered},
		{"bounced", ""}, {"", ""},
	} {
		if got := action(tc.in); got != tc.want {
			t.Errorf("action(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"Sat,  5 Dec 2026 02:30:00 +0000 (UTC)", utc("2026-12-05T02:30:00Z")},
		{"Sat, 05 Dec 2026 02:30:00 -0800 (PST)", utc("2026-12-05T10:30:00Z")},
		{"5 Dec 2026 02:30:00 +0100", utc("2026-12-05T01:30:00Z")},
		{"yesterday", time.Time{}},
	} {
		if got := date(tc.in); !got.Equal(tc.want) {
			t.Errorf("date(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestTyped(t *testing.T) {
	for _, tc := range []struct{ in, typ, val string }{
		{"smtp; 550 5.1.1 x", "smtp", "550 5.1.1 x"},
		{"X-Postfix; connect to x: timed out", "X-Postfix", "connect to x: timed out"},
		{"smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found", "smtp", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found"},
		{"550 5.1.1 no type; but a semicolon", "", "550 5.1.1 no type; but a semicolon"},
		{"; empty type", "", "; empty type"},
		{"no semicolon", "", "no semicolon"},
	} {
		if typ, val := typed(tc.in); typ != tc.typ || val != tc.val {
			t.Errorf("typed(%q) = %q, %q; want %q, %q", tc.in, typ, val, tc.typ, tc.val)
		}
	}
}

// Multi-line replies as MTAs put them in Diagnostic-Code once unfolded
// (RFC 5321 section 4.2.1).
func TestDiagnostic(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"550 5.1.1 <a@b>: Recipient address rejected", "550 5.1.1 <a@b>: Recipient address rejected"},
		{"550-5.1.1 The account\r\n 550-5.1.1 does not exist.\r\n 550 5.1.1  See https://x/?p=NoSuchUser",
			"550 5.1.1 The account does not exist. See https://x/?p=NoSuchUser"},
		{"554-mx.example\n 554-Your IP is listed\n 554 Go away", "554 mx.example Your IP is listed Go away"},
		{"421 4.7.0 Try again later, closing connection.", "421 4.7.0 Try again later, closing connection."},
		{"connect to mx[192.0.2.1]:25:\n    Connection timed out", "connect to mx[192.0.2.1]:25: Connection timed out"},
		{"", ""},
	} {
		if got := diagnostic(tc.in); got != tc.want {
			t.Errorf("diagnostic(%q) =\n  %q\nwant\n  %q", tc.in, got, tc.want)
		}
	}
}

// The forms Exchange versions give the remote reply in.
func TestExchangeDiagnostic(t *testing.T) {
	for _, tc := range []struct{ in, diag, status string }{
		{"Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found'",
			"550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", ""},
		{"Remote Server returned '< #5.1.1 smtp;550 5.1.1 User unknown>'", "550 5.1.1 User unknown", "5.1.1"},
		{"Remote Server returned '554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain", // no closing quote
			"554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain", ""},
		{"#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##", "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", ""},
		{"#550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found ##rfc822;webscout@acme.example",
			"550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found", ""},
	} {
		diag, st, ok := exchangeDiagnostic(tc.in)
		if !ok || diag != tc.diag || st != tc.status {
			t.Errorf("exchangeDiagnostic(%q) = %q, %q, %v; want %q, %q", tc.in, diag, st, ok, tc.diag, tc.status)
		}
	}
	if _, _, ok := exchangeDiagnostic("The e-mail address you entered couldn't be found."); ok {
		t.Error("prose read as a diagnostic")
	}
}

// Variants of the non-standard notices beside the testdata samples.
func TestNoticeForms(t *testing.T) {
	cases := []struct {
		name, body, parser, summary string
	}{
		{"exim before 4.8x: host and reply on one line", "This message was created automatically by mail delivery software.\n\n" +
			"A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n" +
			"  webscout@acme.example\n    SMTP error from remote mail server after RCPT TO:<webscout@acme.example>:\n" +
			"    host mx1.acme.example [192.0.2.25]: 550 5.1.1 <webscout@acme.example>... User unknown\n",
			ParserExim, "mx1.acme.example refused the probe: 550 5.1.1 <webscout@acme.example>... User unknown"},
		{"exim: routing failure without a remote reply", "This message was created automatically by mail delivery software.\n\n" +
			"A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n" +
			"  webscout@acme.example\n    Unrouteable address\n",
			ParserExim, "mail.acme.example refused the probe: Unrouteable address"},
		{"qmail: a named remote said", "Hi. This is the qmail-send program at mail.acme.example.\n" +
			"I'm afraid I wasn't able to deliver your message to the following addresses.\n\n" +
			"<webscout@acme.example>:\nmx1.acme.example [192.0.2.25] said: 554 5.7.1 Access denied\n",
			ParserQmail, "mx1.acme.example refused the probe: 554 5.7.1 Access denied"},
		{"qmail: local delivery failure", "Hi. This is the qmail-send program at mail.acme.example.\n" +
			"I'm afraid I wasn't able to deliver your message to the following addresses.\n\n" +
			"<webscout@acme.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n",
			ParserQmail, "mail.acme.example refused the probe: Sorry, no mailbox here by that name. (#5.1.1)"},
		{"exchange 2007", "Delivery has failed to these recipients or groups:\n\nwebscout@acme.example\n" +
			"The recipient's e-mail address was not found in the recipient's e-mail system.\n\n" +
			"Diagnostic information for administrators:\n\nGenerating server: ex07.acme.example\n\n" +
			"webscout@acme.example\nmx1.acme.example #550 5.1.1 User unknown ##\n\n" +
			"webscout@acme.example\nRemote Server returned '< #5.1.1 smtp;550 5.1.1 User unknown>'\n",
			ParserExchange, "ex07.acme.example refused the probe: 550 5.1.1 User unknown"},
		{"exchange delay", "Delivery is delayed to these recipients or groups:\n\nwebscout@acme.example\n\n" +
			"Diagnostic information for administrators:\n\nGenerating server: ex07.acme.example\n\n" +
			"webscout@acme.example\nRemote Server returned '451 4.4.0 Primary target IP address responded with: \"421 4.2.1 Unable to connect.\"'\n",
			ParserExchange, `ex07.acme.example delayed the probe: 451 4.4.0 Primary target IP address responded with: "421 4.2.1 Unable to connect."`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := "From: Mail Delivery System <MAILER-DAEMON@mail.acme.example>\nTo: " + verpFrom + "\nSubject: failure\n\n" + tc.body
			r, err := Parse([]byte(msg))
			if err != nil {
				t.Fatal(err)
			}
			if r.Parser != tc.parser || r.Recipients[0].FinalRecipient != probeTo {
				t.Errorf("parser %q, recipients %+v", r.Parser, r.Recipients)
			}
			if got := r.Summary(); got != tc.summary {
				t.Errorf("Summary() =\n  %q\nwant\n  %q", got, tc.summary)
			}
		})
	}
}
