package pop3

import (
	"errors"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/probe/probetest"
)

// FuzzSession feeds any bytes as a server's side of a whole session
// (greeting, CAPA, USER, PASS, STAT, QUIT): nothing panics, every failure
// is an *Error (-ERR), a *ProtocolError or the connection's end, an -ERR's
// code is upper case and holds no "]", CAPA lines carry no line breaks and
// STAT counts are never negative.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"+OK ready\r\n+OK\r\nUSER\r\nSTLS\r\n.\r\n+OK\r\n+OK\r\n+OK 2 320\r\n+OK bye\r\n",
		"+OK\r\n-ERR no CAPA\r\n+OK\r\n-ERR [AUTH] invalid login\r\n",
		"+OK\r\n+OK\r\n..dot\r\n.\r\n+OK\r\n+OK\r\n+OK 1\r\n",
		"-ERR [SYS/TEMP] busy\r\n",
		"+OK\r\n+OK\r\n.\r\n+OK\r\n-ERR [IN-USE] locked\r\n",
		"+OKAY\r\n",
		"+OK\r\n+OK 1 2\r\nunsolicited\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := NewClient(probetest.NewReplay(data))
		check := func(step string, err error) bool {
			t.Helper()
			if err == nil {
				return true
			}
			var e *Error
			var pe *ProtocolError
			switch {
			case errors.As(err, &e):
				if e.Code != strings.ToUpper(e.Code) || strings.Contains(e.Code, "]") {
					t.Fatalf("%s: -ERR code %q", step, e.Code)
				}
			case errors.As(err, &pe):
			default: // the connection ended (io.EOF) or broke: nothing else to check
			}
			return false
		}
		if _, err := c.Greeting(); !check("greeting", err) {
			return
		}
		caps, err := c.Capa()
		for _, l := range caps {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("CAPA line %q", l)
			}
		}
		var e *Error
		if err != nil && !errors.As(err, &e) && !check("CAPA", err) {
			return
		}
		if !check("USER", c.User("scout")) || !check("PASS", c.Pass("secret")) {
			return
		}
		n, size, err := c.Stat()
		if !check("STAT", err) {
			return
		}
		if n < 0 || size < 0 {
			t.Fatalf("STAT %d %d", n, size)
		}
		check("QUIT", c.Quit())
	})
}

// FuzzAuth feeds any bytes as a server's side of a greeting and an AUTH
// XOAUTH2 exchange (RFC 5034): nothing panics, the exchange ends within
// its bound of challenges, and every failure is an *Error, a
// *ProtocolError, the SASL client's error or the connection's end.
func FuzzAuth(f *testing.F) {
	for _, seed := range []string{
		"+OK ready\r\n+OK Logged in\r\n",
		"+OK\r\n+ \r\n+OK\r\n",
		"+OK\r\n+ eyJzdGF0dXMiOiI0MDEifQ==\r\n-ERR [AUTH] Authentication failed.\r\n",
		"+OK\r\n+ not base64!\r\n-ERR\r\n",
		"+OK\r\n+ \r\n+ \r\n+ \r\n+ \r\n+ \r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := NewClient(probetest.NewReplay(data))
		if _, err := c.Greeting(); err != nil {
			return
		}
		sc, err := mailauth.NewClient(mailauth.XOAuth2, "scout", "token")
		if err != nil {
			t.Fatal(err)
		}
		err = c.Auth(sc)
		var e *Error
		if errors.As(err, &e) && (e.Code != strings.ToUpper(e.Code) || strings.Contains(e.Code, "]")) {
			t.Fatalf("-ERR code %q", e.Code)
		}
	})
}
