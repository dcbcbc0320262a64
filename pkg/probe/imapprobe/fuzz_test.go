package imapprobe

import (
	"context"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
)

// FuzzPlainDialogue feeds any bytes as a server's greeting and its answer
// to CAPABILITY, the part of an IMAP check read before TLS (RFC 9051
// sections 7.1 and 6.1.1): nothing panics, a failed step leaves the
// session broken (no LOGOUT out of step), a greeting is OK, PREAUTH or BYE,
// and capabilities are upper-case atoms without spaces, CR or NUL.
func FuzzPlainDialogue(f *testing.F) {
	for _, seed := range []string{
		"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK done\r\n",
		"* OK ready\r\n* CAPABILITY IMAP4rev2 AUTH=PLAIN\r\n* CAPABILITY IDLE\r\na1 OK\r\n",
		"* PREAUTH logged in\r\na1 OK\r\n",
		"* BYE go away\r\n",
		"* OK ready\r\na1 NO no\r\n",
		"* OK ready\r\n* BYE shutting down\r\n",
		"* OK ready\r\na2 OK wrong tag\r\n",
		"* OK {5}\r\nhello\r\n",
		"* OK [CAPABILITY\r\n",
		"* OK ready\r\n* CAPABILITY A\rB\r\na1 OK\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := probe.Start(context.Background(), "imap", probe.Target{Host: "mail.example", Port: 143})
		p := newPlain(s, probetest.NewReplay(data))
		atoms := func(where string, caps []string) {
			for _, c := range caps {
				if c == "" || c != strings.ToUpper(c) || strings.ContainsAny(c, " \t\r\n\x00") {
					t.Fatalf("%s capability %q", where, c)
				}
			}
		}
		g, err := p.greeting()
		if err != nil {
			if !p.broken {
				t.Fatalf("greeting failed (%v) but the session is not broken", err)
			}
			return
		}
		if g.status != "OK" && g.status != "PREAUTH" && g.status != "BYE" {
			t.Fatalf("greeting status %q", g.status)
		}
		atoms("greeting", g.caps)
		caps, err := p.capability()
		if err != nil {
			if !p.broken {
				t.Fatalf("CAPABILITY failed (%v) but the session is not broken", err)
			}
			return
		}
		if caps == nil {
			t.Fatal("CAPABILITY succeeded with no capability list")
		}
		atoms("CAPABILITY", caps)
	})
}
