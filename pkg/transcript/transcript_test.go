package transcript

import (
	"encoding/base64"
	"net"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/events"
)

// dialogue feeds t alternating server (S) and client (C) chunks.
func dialogue(t *Transcript, parts ...string) []string {
	for _, p := range parts {
		dir, data, _ := strings.Cut(p, ":")
		if dir == "S" {
			t.read([]byte(data))
		} else {
			t.wrote([]byte(data))
		}
	}
	return t.Lines()
}

func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("transcript:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSMTP: AUTH PLAIN's initial response, AUTH LOGIN's exchange and the
// 334 challenges are masked; the message is counted, not kept.
func TestSMTP(t *testing.T) {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00scout\x00s3cret"))
	got := dialogue(New(events.KindSMTP),
		"S:220 mx ESMTP\r\n", "C:EHLO me\r\n", "S:250-mx\r\n250 AUTH PLAIN LOGIN\r\n",
		"C:AUTH PLAIN "+plain+"\r\n", "S:535 5.7.8 bad\r\n",
		"C:auth login\r\n", "S:334 VXNlcm5hbWU6\r\n", "C:c2NvdXQ=\r\n", "S:334 UGFzc3dvcmQ6\r\n", "C:czNjcmV0\r\n", "S:235 2.7.0 ok\r\n",
		"C:DATA\r\n", "S:354 go\r\n", "C:Subject: hi\r\n\r\nbody\r\n.\r\n", "S:250 2.0.0 Ok: queued as 4XyZ\r\n")
	wantLines(t, got,
		"S: 220 mx ESMTP", "C: EHLO me", "S: 250-mx", "S: 250 AUTH PLAIN LOGIN",
		"C: AUTH PLAIN ****", "S: 535 5.7.8 bad",
		"C: auth login", "S: 334 ****", "C: ****", "S: 334 ****", "C: ****", "S: 235 2.7.0 ok",
		"C: DATA", "S: 354 go", "C: <message: 21 bytes>", "C: .", "S: 250 2.0.0 Ok: queued as 4XyZ")
}

// TestIMAP: LOGIN keeps the tag and command only, a password sent as a
// literal is masked, AUTHENTICATE's exchange is masked up to its tagged
// completion, and what follows is kept, even pipelined before the
// completion.
func TestIMAP(t *testing.T) {
	got := dialogue(New(events.KindIMAP),
		"S:* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready\r\n",
		"C:a1 LOGIN scout {9}\r\n", "S:+ Ready\r\n", "C:my s3cret\r\n", "S:a1 NO [AUTHENTICATIONFAILED] no\r\n",
		"C:a2 LOGIN {5+}\r\nscout {6+}\r\ns3cret\r\n", "C:a3 EXAMINE INBOX\r\n", "S:a2 NO no\r\n",
		"C:a4 AUTHENTICATE XOAUTH2 dXNlcj1zY291dAFhdXRoPUJlYXJlciB0b2sBAQ==\r\n",
		"S:+ eyJzdGF0dXMiOiI0MDEifQ==\r\n", "C:\r\n", "S:a4 NO [AUTHENTICATIONFAILED] bad token\r\n",
		"C:a5 AUTHENTICATE PLAIN\r\n", "S:+ \r\n", "C:AHNjb3V0AHMzY3JldA==\r\n", "C:a6 EXAMINE INBOX\r\n", "S:a5 OK done\r\n",
		"S:* 3 EXISTS\r\na6 OK [READ-ONLY] done\r\n")
	wantLines(t, got,
		"S: * OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready",
		"C: a1 LOGIN ****", "S: + Ready", "C: ****", "S: a1 NO [AUTHENTICATIONFAILED] no",
		"C: a2 LOGIN ****", "C: ****", "C: ****", "C: a3 EXAMINE INBOX", "S: a2 NO no",
		"C: a4 AUTHENTICATE XOAUTH2 ****", "S: + ****", "C: ****", "S: a4 NO [AUTHENTICATIONFAILED] bad token",
		"C: a5 AUTHENTICATE PLAIN", "S: + ****", "C: ****", "C: a6 EXAMINE INBOX", "S: a5 OK done",
		"S: * 3 EXISTS", "S: a6 OK [READ-ONLY] done")
	if all := strings.Join(got, "\n"); strings.Contains(all, "s3cret") {
		t.Errorf("a password is in the transcript:\n%s", all)
	}
}

// TestPOP3: PASS, APOP's digest and AUTH's exchange are masked; a bare
// AUTH (a mechanism list) starts no exchange.
func TestPOP3(t *testing.T) {
	got := dialogue(New(events.KindPOP3),
		"S:+OK ready <1.2@mx>\r\n", "C:USER scout\r\n", "S:+OK\r\n", "C:PASS s3cret\r\n", "S:-ERR [AUTH] no\r\n",
		"C:APOP scout c4c9334bac560ecc979e58001b3e22fb\r\n", "S:-ERR no\r\n",
		"C:AUTH\r\n", "S:+OK\r\nXOAUTH2\r\n.\r\n",
		"C:AUTH XOAUTH2 dXNlcj1zY291dA==\r\n", "S:+ eyJzdGF0dXMiOiI0MDEifQ==\r\n", "C:\r\n", "S:-ERR [AUTH] bad\r\n",
		"C:STAT\r\n", "S:+OK 2 320\r\n")
	wantLines(t, got,
		"S: +OK ready <1.2@mx>", "C: USER scout", "S: +OK", "C: PASS ****", "S: -ERR [AUTH] no",
		"C: APOP scout ****", "S: -ERR no",
		"C: AUTH", "S: +OK", "S: XOAUTH2", "S: .",
		"C: AUTH XOAUTH2 ****", "S: + ****", "C: ****", "S: -ERR [AUTH] bad",
		"C: STAT", "S: +OK 2 320")
}

// TestPartialLinesAndCaps: a line split over several writes is one line;
// the transcript is capped at events.MaxTranscriptLines lines of
// events.MaxTranscriptLine bytes, the last saying how many were dropped.
func TestPartialLinesAndCaps(t *testing.T) {
	tr := New(events.KindSMTP)
	got := dialogue(tr, "S:220 m", "S:x ESMTP\r", "S:\n", "C:NO", "C:OP\r\n")
	wantLines(t, got, "S: 220 mx ESMTP", "C: NOOP")
	for range 2 * events.MaxTranscriptLines {
		tr.wrote([]byte("NOOP " + strings.Repeat("x", 4*events.MaxTranscriptLine) + "\r\n"))
	}
	got = tr.Lines()
	if len(got) != events.MaxTranscriptLines || !strings.HasPrefix(got[len(got)-1], "... ") {
		t.Errorf("%d lines ending %q, want %d ending with the count dropped", len(got), got[len(got)-1], events.MaxTranscriptLines)
	}
	for _, l := range got {
		if len(l) > events.MaxTranscriptLine {
			t.Errorf("line of %d bytes", len(l))
		}
	}
}

// TestConn: the wrapper records both directions of a real connection and
// Unwrap gives the connection under it.
func TestConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	tr := New(events.KindPOP3)
	c := tr.Conn(a)
	if Unwrap(c) != a || Unwrap(a) != a {
		t.Fatal("Unwrap does not give the connection under the wrapper")
	}
	go func() {
		_, _ = b.Write([]byte("+OK hi\r\n"))
		buf := make([]byte, 64)
		_, _ = b.Read(buf)
	}()
	buf := make([]byte, 64)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("QUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	wantLines(t, tr.Lines(), "S: +OK hi", "C: QUIT")
}
