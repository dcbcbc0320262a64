package mailauth_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emersion/go-sasl"
)

// TestXOAUTH2: the initial response of Google's and Microsoft's XOAUTH2
// documents; a refusal challenge (base64-decoded JSON) is answered with an
// empty response and its status, schemes and scope are kept.
func TestXOAUTH2(t *testing.T) {
	c, err := mailauth.NewClient("xoauth2", "box@example.com", "tok")
	if err != nil {
		t.Fatal(err)
	}
	mech, ir, err := c.Start()
	if err != nil || mech != "XOAUTH2" || string(ir) != "user=box@example.com\x01auth=Bearer tok\x01\x01" {
		t.Errorf("Start = %q, %q, %v", mech, ir, err)
	}
	resp, err := c.Next([]byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`))
	if err != nil || resp == nil || len(resp) != 0 {
		t.Errorf("Next = %q, %v; want an empty response", resp, err)
	}
	want := `XOAUTH2 refused: status "400", schemes "Bearer", scope "https://mail.google.com/"`
	if f := c.Failure(); f == nil || f.Error() != want {
		t.Errorf("Failure = %v, want %s", f, want)
	}
	if _, err := c.Next([]byte("{}")); err == nil {
		t.Error("a second challenge was answered")
	}
	for _, mech := range []string{"xoauth2", "oauthbearer"} {
		c, _ := mailauth.NewClient(mech, "box@example.com", "tok-secret")
		if s := fmt.Sprintf("%v %+v %s", c, c, c); strings.Contains(s, "tok-secret") {
			t.Errorf("%s client prints its token: %s", mech, s)
		}
	}
	if _, err := mailauth.NewClient("xoauth2", "a\x01b", "t"); err == nil {
		t.Error("a user name with ^A was accepted")
	}
	if _, err := mailauth.NewClient("plain", "a", "t"); err == nil {
		t.Error("mechanism plain was accepted")
	}
}

// TestOAUTHBEARER: go-sasl's client (RFC 7628 section 3.1), against
// go-sasl's server; a refused token is answered with the ^A dummy
// response of section 3.2.3 and its status kept.
func TestOAUTHBEARER(t *testing.T) {
	for _, good := range []bool{true, false} {
		var got sasl.OAuthBearerOptions
		srv := sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			got = o
			if good {
				return nil
			}
			return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
		})
		c, err := mailauth.NewClient("OAUTHBEARER", "box@example.com", "tok")
		if err != nil {
			t.Fatal(err)
		}
		mech, ir, err := c.Start()
		if err != nil || mech != "OAUTHBEARER" {
			t.Fatalf("Start = %q, %v", mech, err)
		}
		challenge, done, err := srv.Next(ir)
		if good {
			if err != nil || !done || got.Username != "box@example.com" || got.Token != "tok" {
				t.Errorf("server: done %v, %v, options %+v", done, err, got)
			}
			continue
		}
		resp, err := c.Next(challenge)
		if err != nil || string(resp) != "\x01" {
			t.Errorf("Next = %q, %v; want the ^A dummy response", resp, err)
		}
		if _, _, err := srv.Next(resp); err == nil {
			t.Error("the server accepted the refused token")
		}
		if f := c.Failure(); f == nil || !strings.Contains(f.Error(), `OAUTHBEARER refused: status "invalid_token"`) {
			t.Errorf("Failure = %v", f)
		}
	}
}

// TestLoginSASL: a Login takes its token from the source and reports its
// expiry; a static token has none.
func TestLoginSASL(t *testing.T) {
	l, err := mailauth.New(mailauth.Config{Provider: "static", AccessToken: "tok", Mechanism: "oauthbearer"}, "box@example.com", mailauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, exp, err := l.SASL(context.Background())
	if err != nil || !exp.IsZero() {
		t.Fatalf("SASL: %v, expiry %v", err, exp)
	}
	if mech, ir, _ := c.Start(); mech != "OAUTHBEARER" || !strings.Contains(string(ir), "auth=Bearer tok") {
		t.Errorf("Start = %q, %q", mech, ir)
	}
}
