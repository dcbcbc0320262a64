package dsn

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: any input either fails with one of Parse's errors or gives a
// report with a parser, one to MaxRecipients recipients with well-formed
// statuses and codes, a one-line Summary within MaxSummaryBytes, and never
// both Permanent and Delayed. The samples of testdata are the seeds.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no samples in testdata: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b\nAction: failed\nStatus: 5.1.1\n--b--\n"))
	f.Add([]byte("Subject: hi\n\nHi. This is the qmail-send program at x.\n\n<a@b>:\nRemote host said: 550-5.1.1 a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrNotBounce) && !errors.Is(err, ErrNoRecipient) &&
				!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		switch r.Parser {
		case ParserRFC3464, ParserExchange, ParserQmail, ParserExim:
		default:
			t.Fatalf("parser %q", r.Parser)
		}
		if len(r.Recipients) == 0 || len(r.Recipients) > MaxRecipients {
			t.Fatalf("%d recipients", len(r.Recipients))
		}
		for _, rc := range r.Recipients {
			if rc.Status != "" && !statusPattern.MatchString(rc.Status) {
				t.Fatalf("status %q", rc.Status)
			}
			if rc.Code != 0 && (rc.Code < 200 || rc.Code > 599) {
				t.Fatalf("code %d", rc.Code)
			}
			if strings.ContainsAny(rc.Diagnostic, "\r\n") {
				t.Fatalf("diagnostic on several lines: %q", rc.Diagnostic)
			}
		}
		s := r.Summary()
		if s == "" || len(s) > MaxSummaryBytes || strings.ContainsAny(s, "\r\n\t") {
			t.Fatalf("summary %q", s)
		}
		if r.Permanent() && r.Delayed() {
			t.Fatal("both permanent and delayed")
		}
	})
}
