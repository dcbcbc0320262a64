package smtpprobe

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/probe"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
)

// FuzzReadReply feeds any bytes as a server's replies (RFC 5321 section
// 4.2): reading never panics; a reply read has one code from 200 to 559
// on every line, no bare CR or NUL, its last line without "-", and an enhanced status code
// split off only when it is one (RFC 3463) of the reply's class; a failed
// read leaves the session broken (no QUIT on an out-of-step session).
func FuzzReadReply(f *testing.F) {
	for _, seed := range []string{
		"220 mail.example ESMTP ready\r\n",
		"250-mail.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n",
		"550-5.7.1 first line\r\n550 5.7.1 second line\r\n",
		"421 4.3.2 Service not available\r\n",
		"250-a\r\n251 b\r\n",
		"2500\r\n",
		"220\r\n",
		"250-x\n250 y\n220 again\r\n",
		"554 5.7.1\r\n",
		"250-mail.example\rinjected\r\n250 OK\r\n", // a bare CR must not pass
		"250 OK\x00\r\n",
		"\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := probe.Start(context.Background(), "smtp", probe.Target{Host: "mail.example", Port: 25})
		c := newConn(s, probetest.NewReplay(data))
		for range 4 { // a few replies in a row, as a session reads them
			r, err := c.read()
			if err != nil {
				if !c.broken {
					t.Fatalf("read failed (%v) but the session is not broken", err)
				}
				return
			}
			if r.Code < 200 || r.Code > 559 || len(r.Lines) == 0 || len(r.Lines) != len(r.Raw) {
				t.Fatalf("reply %+v", r)
			}
			code := strconv.Itoa(r.Code)
			for i, raw := range r.Raw {
				if strings.ContainsAny(raw, "\r\x00") {
					t.Fatalf("line %q with a bare CR or NUL accepted", raw)
				}
				last := i == len(r.Raw)-1
				if !strings.HasPrefix(raw, code) || (len(raw) > 3 && (raw[3] == '-') == last) {
					t.Fatalf("line %d %q of a %d reply (%d lines)", i, raw, r.Code, len(r.Raw))
				}
			}
			ev := r.event()
			if ev.Code != r.Code || (ev.Enhanced != "" && !enhanced(ev.Enhanced, r.Code)) {
				t.Fatalf("event %+v of reply %+v", ev, r)
			}
		}
	})
}
