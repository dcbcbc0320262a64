package submit_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emailscout/emailscout/pkg/submit"
	"github.com/jonboulle/clockwork"
	"golang.org/x/oauth2"
)

var oauthMsg = []byte("From: a@monitor.example\r\nTo: b@customer.example\r\nSubject: x\r\n\r\nhello\r\n")

// counter issues "tok-1", "tok-2", ... valid for 60 s, or fails with err.
type counter struct {
	n   int
	err error
}

func (c *counter) Token(context.Context) (*oauth2.Token, error) {
	if c.err != nil {
		return nil, c.err
	}
	c.n++
	return &oauth2.Token{AccessToken: fmt.Sprintf("tok-%d", c.n), ExpiresIn: 60}, nil
}

func send(t *testing.T, srv *mailtest.Server, auth submit.Authenticator) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := submit.Config{Addr: srv.Addr, TLS: submit.TLSStartTLS, TLSConfig: &tls.Config{RootCAs: srv.RootCAs}, Auth: auth}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := submit.Send(ctx, cfg, "return@monitor.example", []string{"probe@customer.example"}, oauthMsg)
	return err
}

// TestOAuthSubmission: AUTH XOAUTH2 and OAUTHBEARER after STARTTLS, each
// submission with the cache's valid token (a new one once it was renewed).
func TestOAuthSubmission(t *testing.T) {
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			srv := mailtest.NewServer(t, mailtest.Options{TLS: true,
				Tokens: map[string]string{"tok-1": "scout@monitor.example", "tok-2": "scout@monitor.example"}})
			clock := clockwork.NewFakeClock()
			src := &counter{}
			login := &mailauth.Login{Username: "scout@monitor.example", Mechanism: mech, Tokens: mailauth.NewCache(src, clock)}
			for i := range 3 {
				if err := send(t, srv, login); err != nil {
					t.Fatalf("submission %d: %v", i, err)
				}
				clock.Advance(20 * time.Second) // 60 s tokens are renewed after 30 s
			}
			if got := len(srv.Messages()); got != 3 || src.n != 2 {
				t.Errorf("%d messages with %d tokens, want 3 with 2", got, src.n)
			}
		})
	}
}

// TestOAuthSubmissionRefused: a refused token is a permanent auth-phase
// error with the server's 535 and its error challenge; token endpoint
// errors keep their mark and send no AUTH.
func TestOAuthSubmissionRefused(t *testing.T) {
	srv := mailtest.NewServer(t, mailtest.Options{TLS: true, Tokens: map[string]string{"other": "scout@monitor.example"}})
	for _, tc := range []struct{ mech, challenge string }{
		{mailauth.XOAuth2, `XOAUTH2 refused: status "401"`},
		{mailauth.OAuthBearer, `OAUTHBEARER refused: status "invalid_token"`},
	} {
		err := send(t, srv, &mailauth.Login{Username: "scout@monitor.example", Mechanism: tc.mech, Tokens: &counter{}})
		var se *submit.Error
		if !errors.As(err, &se) || se.Phase != submit.PhaseAuth || se.Reply == nil || se.Reply.Code != 535 ||
			!fault.MarkedPermanent(err) || !strings.Contains(err.Error(), "535") || !strings.Contains(err.Error(), tc.challenge) {
			t.Errorf("%s: %v (%v), want a permanent auth error naming 535 and %q", tc.mech, err, fault.Of(err), tc.challenge)
		}
	}
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{&mailauth.EndpointError{Status: 401, Code: "invalid_client", Description: "AADSTS7000215: Invalid client secret provided."}, true},
		{&mailauth.EndpointError{Status: 503}, false},
	} {
		err := send(t, srv, &mailauth.Login{Username: "scout@monitor.example", Tokens: &counter{err: tc.err}})
		var se *submit.Error
		if !errors.As(err, &se) || se.Phase != submit.PhaseAuth || se.Reply != nil || fault.MarkedPermanent(err) != tc.permanent ||
			!strings.Contains(err.Error(), tc.err.Error()) {
			t.Errorf("%v: %v (%v), want an auth error, permanent=%v", tc.err, err, fault.Of(err), tc.permanent)
		}
	}
	if len(srv.Messages()) != 0 {
		t.Error("a message was accepted")
	}
}
