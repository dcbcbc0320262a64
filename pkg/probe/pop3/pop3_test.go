package pop3

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
)

// serve runs a scripted server that sends greeting, then answers each
// command line with answers[verb] (lines joined by CRLF).
func serve(t *testing.T, greeting string, answers map[string][]string) *Client {
	t.Helper()
	addr := mailtest.Script(t, func(c net.Conn) {
		_, _ = c.Write([]byte(greeting + "\r\n"))
		for {
			line, err := mailtest.ReadLine(c)
			if err != nil {
				return
			}
			verb, _, _ := strings.Cut(line, " ")
			a, ok := answers[verb]
			if !ok {
				a = []string{"-ERR unknown command"}
			}
			_, _ = c.Write([]byte(strings.Join(a, "\r\n") + "\r\n"))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return NewClient(conn)
}

func TestSession(t *testing.T) {
	c := serve(t, "+OK POP3 server ready <1896.697170952@dbc.mailcom.example>", map[string][]string{
		"CAPA": {"+OK Capability list follows", "TOP", "USER", "SASL PLAIN", "..dotted", "."},
		"USER": {"+OK"},
		"PASS": {"+OK maildrop locked and ready"},
		"STAT": {"+OK 2 320"},
		"QUIT": {"+OK dewey POP3 server signing off"},
	})
	var trace []string
	c.Trace = func(l string) { trace = append(trace, l) }
	g, err := c.Greeting()
	if err != nil || g != "POP3 server ready <1896.697170952@dbc.mailcom.example>" {
		t.Fatalf("greeting %q %v", g, err)
	}
	caps, err := c.Capa()
	if err != nil || strings.Join(caps, "|") != "TOP|USER|SASL PLAIN|.dotted" {
		t.Fatalf("capa %q %v (byte-stuffing undone?)", caps, err)
	}
	if err := c.User("webscout"); err != nil {
		t.Fatal(err)
	}
	if err := c.Pass("s3cret"); err != nil {
		t.Fatal(err)
	}
	n, size, err := c.Stat()
	if err != nil || n != 2 || size != 320 {
		t.Fatalf("stat %d %d %v", n, size, err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if len(trace) != 11 || trace[0] != "+OK POP3 server ready <1896.697170952@dbc.mailcom.example>" {
		t.Errorf("trace = %q", trace)
	}
	for _, l := range trace {
		if strings.Contains(l, "s3cret") {
			t.Error("the trace holds the password")
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		line      string
		code      string
		text      string
		temporary bool
	}{
		{"-ERR [IN-USE] Mailbox is locked by another POP3 session", "IN-USE", "Mailbox is locked by another POP3 session", true},
		{"-ERR [LOGIN-DELAY] wait", "LOGIN-DELAY", "wait", true},
		{"-ERR [SYS/TEMP] try later", "SYS/TEMP", "try later", true},
		{"-ERR [sys/perm] gone", "SYS/PERM", "gone", false},
		{"-ERR [AUTH] Authentication failed", "AUTH", "Authentication failed", false},
		{"-ERR invalid password", "", "invalid password", false},
		{"-ERR", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.line, func(t *testing.T) {
			c := serve(t, "+OK ready", map[string][]string{"USER": {"+OK"}, "PASS": {tc.line}})
			if _, err := c.Greeting(); err != nil {
				t.Fatal(err)
			}
			if err := c.User("u"); err != nil {
				t.Fatal(err)
			}
			err := c.Pass("p")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if e.Command != "PASS" || e.Code != tc.code || e.Text != tc.text || e.Temporary() != tc.temporary {
				t.Errorf("got %+v temporary %v", e, e.Temporary())
			}
		})
	}
}

func TestProtocolErrors(t *testing.T) {
	cases := []struct {
		name     string
		greeting string
		answers  map[string][]string
		run      func(c *Client) error
	}{
		{"greeting not +OK/-ERR", "* OK IMAP", nil, func(c *Client) error { _, err := c.Greeting(); return err }},
		{"lower-case indicator", "+ok ready", nil, func(c *Client) error { _, err := c.Greeting(); return err }},
		{"indicator glued to text", "+OKready", nil, func(c *Client) error { _, err := c.Greeting(); return err }},
		{"unsolicited line", "+OK ready\r\n+OK extra", nil, func(c *Client) error {
			if _, err := c.Greeting(); err != nil {
				return err
			}
			_, err := c.Capa()
			return err
		}},
		{"data injected after STLS", "+OK ready", map[string][]string{"STLS": {"+OK go ahead", "+OK injected"}}, func(c *Client) error {
			if _, err := c.Greeting(); err != nil {
				return err
			}
			return c.STLS()
		}},
		{"STAT without numbers", "+OK ready", map[string][]string{"STAT": {"+OK many"}}, func(c *Client) error {
			if _, err := c.Greeting(); err != nil {
				return err
			}
			_, _, err := c.Stat()
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, tc.greeting, tc.answers)
			err := tc.run(c)
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want *ProtocolError", err, err)
			}
		})
	}
}

func TestArgumentsCannotEndTheLine(t *testing.T) {
	c := serve(t, "+OK ready", map[string][]string{"USER": {"+OK"}, "PASS": {"+OK"}})
	if _, err := c.Greeting(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"pw\r\nDELE 1", "a\nb", "nul\x00"} {
		if err := c.Pass(bad); err == nil {
			t.Errorf("Pass(%q) succeeded", bad)
		}
	}
}
