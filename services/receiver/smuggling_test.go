package receiver_test

import (
	"bufio"
	"bytes"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// TestSMTPSmugglingRefused: a return whose DATA ends with a non-standard
// end of data (<LF>.<LF>, <CR>.<CR> and their mixes; the SMTP smuggling
// of CVE-2023-51764/51765/51766; also <LF>.<CR>, <CR>.<LF> and a NUL
// next to the dot) followed by a second, smuggled
// transaction never stores the smuggled message: only <CRLF>.<CRLF> ends
// DATA (RFC 5321 section 4.1.1.4). Each variant runs on its own
// connection; the smuggled probe is a valid, signed one, so only the
// framing could keep it out.
func TestSMTPSmugglingRefused(t *testing.T) {
	e := newEnv(t)
	r := e.start(config())
	smuggledIDs := map[string]bool{}
	ends := []string{"\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r",
		"\n.\r", "\r.\n", "\r\n.\x00\r\n", "\r\n\x00.\r\n"}
	for _, end := range ends {
		t.Run(strings.NewReplacer("\r", "CR", "\n", "LF", "\x00", "NUL").Replace(end), func(t *testing.T) {
			first, smuggled := probe(t), probe(t)
			smuggledIDs[smuggled.TestID] = true
			msg1 := reflection(t, first, acmeKey, target, now.Add(-time.Second))
			msg2 := reflection(t, smuggled, acmeKey, target, now.Add(-time.Second))
			conn, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
			tp := textproto.NewConn(conn)
			expect := func(code int) {
				t.Helper()
				if _, _, err := tp.ReadResponse(code); err != nil {
					t.Fatalf("want %d: %v", code, err)
				}
			}
			expect(220)
			for _, cmd := range []string{"EHLO mx.acme.example", "MAIL FROM:<" + target + ">", "RCPT TO:<" + returnAddr + ">"} {
				if err := tp.PrintfLine("%s", cmd); err != nil {
					t.Fatal(err)
				}
				expect(250)
			}
			if err := tp.PrintfLine("DATA"); err != nil {
				t.Fatal(err)
			}
			expect(354)
			var b bytes.Buffer
			b.Write(bytes.TrimRight(msg1, "\r\n"))
			b.WriteString(end)
			b.WriteString("MAIL FROM:<" + target + ">\r\nRCPT TO:<" + returnAddr + ">\r\nDATA\r\n")
			b.Write(msg2)
			b.WriteString("\r\n.\r\nQUIT\r\n")
			if _, err := conn.Write(b.Bytes()); err != nil {
				t.Fatal(err)
			}
			// Whatever the server answers (a refusal of the whole message,
			// or one message holding the smuggled text), read to the end.
			_, _ = bufio.NewReader(conn).ReadString(0)
		})
	}
	// Settle, then look at what was stored.
	time.Sleep(200 * time.Millisecond)
	n := e.count()
	evs, _ := e.returned(n)
	seen := map[string]int{}
	for _, ev := range evs {
		seen[ev.TestID]++
	}
	t.Logf("%d returns stored for %d smuggling attempts", n, len(ends))
	for id, c := range seen {
		if c > 1 {
			t.Errorf("test %s stored %d times", id, c)
		}
		if smuggledIDs[id] {
			t.Errorf("the smuggled probe %s was stored as a return", id)
		}
	}
	if n > len(ends) {
		t.Errorf("%d returns stored for %d connections: a smuggled message got through", n, len(ends))
	}
}
