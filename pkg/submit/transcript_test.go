package submit

import (
	"crypto/tls"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailtest"
)

// TestTranscript: a STARTTLS submission with AUTH PLAIN is recorded in
// plain text, the greeting and the server's name first, the credentials
// masked and the message left out.
func TestTranscript(t *testing.T) {
	srv := mailtest.NewServer(t, mailtest.Options{TLS: true, Auth: map[string]string{"scout": "s3cret-pw"}, Domain: "mx1.acme.example"})
	cfg := Config{Addr: srv.Addr, TLS: TLSStartTLS, TLSConfig: &tls.Config{RootCAs: srv.RootCAs}, HelloName: "scout.monitor.example",
		Username: "scout", Password: "s3cret-pw"}
	res, err := Send(testCtx(t), cfg, "return@monitor.example", []string{"probe@customer.example"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(res.Transcript, "\n")
	for _, want := range []string{"S: 220 mx1.acme.example", "C: EHLO scout.monitor.example", "C: STARTTLS", "C: AUTH PLAIN ****",
		"C: MAIL FROM:<return@monitor.example>", "C: RCPT TO:<probe@customer.example>", "C: DATA", "S: 354",
		"C: <message: ", "C: .", "S: 250 2.0.0"} {
		if !strings.Contains(all, want) {
			t.Errorf("transcript lacks %q:\n%s", want, all)
		}
	}
	secret := base64.StdEncoding.EncodeToString([]byte("\x00scout\x00s3cret-pw"))
	if strings.Contains(all, "s3cret-pw") || strings.Contains(all, secret) {
		t.Errorf("the password is in the transcript:\n%s", all)
	}
	if strings.Contains(all, "Subject:") {
		t.Errorf("the message is in the transcript:\n%s", all)
	}
	if res.Server != "mx1.acme.example" {
		t.Errorf("server name %q, want mx1.acme.example", res.Server)
	}
	// The TLS session is recorded decrypted, not as handshake bytes.
	for _, l := range res.Transcript {
		if !strings.HasPrefix(l, "C: ") && !strings.HasPrefix(l, "S: ") {
			t.Errorf("line %q is neither C: nor S:", l)
		}
	}
}

func TestQueueID(t *testing.T) {
	for text, want := range map[string]string{
		"Ok: queued as 4XyZ1b2c3": "4XyZ1b2c3",        // Postfix
		"OK id=1rAbCd-000123-4X":  "1rAbCd-000123-4X", // Exim
		"<a@b> [InternalId=1234567, Hostname=AM0PR] Queued mail for delivery": "1234567",               // Exchange Online
		"OK  1733390000 a1b2c3si1234567abc.12 - gsmtp":                        "a1b2c3si1234567abc.12", // Gmail
		"4B5C6D7E8F9G0H Message accepted for delivery":                        "4B5C6D7E8F9G0H",        // Sendmail
		"OK: queued":               "",
		"Queued mail for delivery": "",
	} {
		if got := QueueID(&events.SMTPReply{Code: 250, Enhanced: "2.0.0", Text: text}); got != want {
			t.Errorf("QueueID(%q) = %q, want %q", text, got, want)
		}
	}
	if QueueID(&events.SMTPReply{Code: 451, Text: "queued as X"}) != "" || QueueID(nil) != "" {
		t.Error("only a 2xx reply has a queue id")
	}
}
