package pop3

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/mailtest"
)

// saslServer is the server side of RFC 5034 for bearer tokens: it accepts
// the token "good..." (any length) and refuses others with the error
// challenge of RFC 7628 section 3.2.2, then -ERR [AUTH]. It records the
// AUTH lines and responses it read.
type saslServer struct {
	mu    sync.Mutex
	lines []string
}

func (s *saslServer) record(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, l)
}

func (s *saslServer) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func (s *saslServer) dial(t *testing.T) *Client {
	t.Helper()
	addr := mailtest.Script(t, func(c net.Conn) {
		send := func(l string) { _, _ = c.Write([]byte(l + "\r\n")) }
		send("+OK ready")
		line, err := mailtest.ReadLine(c)
		if err != nil {
			return
		}
		s.record(line)
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "AUTH" {
			send("-ERR unknown command")
			return
		}
		ir := ""
		if len(f) == 3 {
			ir = f[2]
		} else {
			send("+ ")
			if ir, err = mailtest.ReadLine(c); err != nil {
				return
			}
			s.record(ir)
		}
		dec, _ := base64.StdEncoding.DecodeString(ir)
		if strings.Contains(string(dec), "Bearer good") || strings.Contains(string(dec), "auth=Bearer good") {
			send("+OK Logged in")
			return
		}
		send("+ " + base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_token","schemes":"bearer","scope":"mail"}`)))
		resp, err := mailtest.ReadLine(c)
		if err != nil {
			return
		}
		s.record(resp)
		send("-ERR [AUTH] Authentication failed.")
	})
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := NewClient(conn)
	if _, err := c.Greeting(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAuth(t *testing.T) {
	long := "good" + strings.Repeat("x", 300)
	cases := []struct {
		name, mech, token string
		inline            bool   // the initial response on the AUTH line
		code              string // "" success, else the -ERR code
	}{
		{"short token on the AUTH line", mailauth.XOAuth2, "good1", true, ""},
		{"long token after an empty challenge", mailauth.XOAuth2, long, false, ""},
		{"oauthbearer, long", mailauth.OAuthBearer, long, false, ""},
		{"refused xoauth2", mailauth.XOAuth2, "bad", true, "AUTH"},
		{"refused oauthbearer", mailauth.OAuthBearer, "bad", true, "AUTH"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &saslServer{}
			c := s.dial(t)
			var trace []string
			c.Trace = func(l string) { trace = append(trace, l) }
			sc, err := mailauth.NewClient(tc.mech, "webscout", tc.token)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Auth(sc)
			var e *Error
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("Auth = %v", err)
			case tc.code != "" && (!errors.As(err, &e) || e.Code != tc.code):
				t.Fatalf("Auth = %v, want -ERR [%s]", err, tc.code)
			}
			lines := s.got()
			if len(lines) == 0 || !strings.HasPrefix(lines[0], "AUTH "+strings.ToUpper(tc.mech)) {
				t.Fatalf("server read %q", lines)
			}
			if inline := len(strings.Fields(lines[0])) == 3; inline != tc.inline || len(lines[0]) > 253 {
				t.Errorf("AUTH line %q: initial response inline %v, want %v (and at most 255 octets)", lines[0], inline, tc.inline)
			}
			if tc.code != "" {
				if f := sc.Failure(); f == nil || !strings.Contains(f.Error(), "invalid_token") {
					t.Errorf("Failure() = %v, want the server's challenge", f)
				}
				if last := lines[len(lines)-1]; last != "" && last != "AQ==" {
					t.Errorf("response to the error challenge %q, want empty or the 0x01 dummy", last)
				}
			}
			for _, l := range trace {
				if strings.Contains(l, tc.token) {
					t.Errorf("trace shows the token: %q", l)
				}
			}
		})
	}
}
