package submit

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emersion/go-smtp"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var msg = []byte("From: a@monitor.example\r\nTo: b@customer.example\r\nSubject: x\r\n\r\nhello\r\n")

func TestSendModes(t *testing.T) {
	plain := mailtest.NewServer(t, mailtest.Options{})
	tlsSrv := mailtest.NewServer(t, mailtest.Options{TLS: true, Auth: map[string]string{"scout": "pw"}})
	cases := []struct {
		name    string
		srv     *mailtest.Server
		cfg     Config
		wantTLS bool
		phase   string // "" for success
	}{
		{"plain none", plain, Config{TLS: TLSNone}, false, ""},
		{"plain opportunistic", plain, Config{TLS: TLSOpportunistic}, false, ""},
		{"plain but starttls required", plain, Config{TLS: TLSStartTLS}, false, PhaseTLS},
		{"starttls with auth", tlsSrv, Config{TLS: TLSStartTLS, Username: "scout", Password: "pw"}, true, ""},
		{"opportunistic upgrades", tlsSrv, Config{Username: "scout", Password: "pw"}, true, ""},
		{"wrong password", tlsSrv, Config{TLS: TLSStartTLS, Username: "scout", Password: "nope"}, true, PhaseAuth},
		{"no auth where required", tlsSrv, Config{TLS: TLSStartTLS}, true, PhaseMail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Addr = tc.srv.Addr
			cfg.TLSConfig = &tls.Config{RootCAs: tc.srv.RootCAs}
			cfg.HelloName = "scout.monitor.example"
			before := len(tc.srv.Messages())
			res, err := Send(testCtx(t), cfg, "return@monitor.example", []string{"probe@customer.example"}, msg)
			if tc.phase != "" {
				var se *Error
				if !errors.As(err, &se) || se.Phase != tc.phase {
					t.Fatalf("err = %v, want a failure in phase %s", err, tc.phase)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := tc.srv.Messages(); len(got) != before+1 || got[len(got)-1].From != "return@monitor.example" {
				t.Fatalf("server did not get the message from the envelope sender: %+v", got)
			}
			if res.Reply == nil || res.Reply.Code != 250 {
				t.Errorf("reply = %v", res.Reply)
			}
			if (res.Timings.TLSVersion != "") != tc.wantTLS {
				t.Errorf("tls version %q, want tls=%v", res.Timings.TLSVersion, tc.wantTLS)
			}
			if res.Timings.TotalMS <= 0 || res.Timings.GreetingMS <= 0 || res.Timings.TransferMS <= 0 {
				t.Errorf("timings missing: %+v", res.Timings)
			}
		})
	}
}

func TestSendRefusals(t *testing.T) {
	srv := mailtest.NewServer(t, mailtest.Options{
		Rcpt: func(to string) error {
			switch {
			case strings.HasPrefix(to, "full@"):
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
			case strings.HasPrefix(to, "gone@"):
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		},
	})
	send := func(to string) *Error {
		_, err := Send(testCtx(t), Config{Addr: srv.Addr, TLS: TLSNone}, "r@monitor.example", []string{to}, msg)
		var se *Error
		if !errors.As(err, &se) {
			t.Fatalf("err = %v, want *Error", err)
		}
		return se
	}
	full := send("full@customer.example")
	if !full.Temporary() || !full.Refused() || full.Reply.Code != 452 || full.Reply.Enhanced != "4.2.2" || full.Phase != PhaseRcpt {
		t.Errorf("452: %+v temporary=%v", full, full.Temporary())
	}
	gone := send("gone@customer.example")
	if gone.Temporary() || gone.Reply.Code != 550 || gone.Reply.Text != "no such user" {
		t.Errorf("550: %+v temporary=%v", gone, gone.Temporary())
	}

	_, err := Send(testCtx(t), Config{Addr: mailtest.ClosedAddr(t)}, "r@x.example", []string{"p@y.example"}, msg)
	var se *Error
	if !errors.As(err, &se) || se.Phase != PhaseConnect || !se.Temporary() || se.Refused() {
		t.Errorf("closed port: %v", err)
	}
}

// TestStartTLSNeverUpgraded is docs/field-cases.md, c06 on the submission path: the
// server says "220 Ready to start TLS" and keeps talking plain text; the
// submission fails in the TLS phase and nothing is sent.
func TestStartTLSNeverUpgraded(t *testing.T) {
	addr := mailtest.Script(t, func(c net.Conn) {
		c.Write([]byte("220 mx.example.net ESMTP\r\n"))
		for {
			line, err := mailtest.ReadLine(c)
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.Fields(line + " x")[0]) {
			case "EHLO":
				c.Write([]byte("250-mx.example.net\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n"))
			case "STARTTLS":
				c.Write([]byte("220 2.0.0 Ready to start TLS\r\n"))
			default:
				c.Write([]byte("250 ok\r\n"))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := Send(ctx, Config{Addr: addr, TLS: TLSStartTLS}, "r@x.example", []string{"p@y.example"}, msg)
	var se *Error
	if !errors.As(err, &se) || se.Phase != PhaseTLS {
		t.Fatalf("err = %v, want a TLS phase failure", err)
	}
	if res.Timings.TLSVersion != "" {
		t.Errorf("a TLS version is reported without a handshake: %q", res.Timings.TLSVersion)
	}
}

func TestSendHonoursContext(t *testing.T) {
	// A server that accepts and never sends its banner.
	addr := mailtest.Script(t, func(c net.Conn) { _, _ = mailtest.ReadLine(c) })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := Send(ctx, Config{Addr: addr}, "r@x.example", []string{"p@y.example"}, msg)
	var se *Error
	if !errors.As(err, &se) || se.Phase != PhaseGreeting || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want greeting phase deadline", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{Addr: "relay:587", TLS: TLSStartTLS}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	err := Config{Addr: "relay", TLS: "sometimes", Username: "u"}.Validate()
	for _, want := range []string{"address", "tls mode", "password"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}
