package imapwatch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/fault"
	"github.com/emailscout/emailscout/pkg/imapwatch"
	"github.com/emailscout/emailscout/pkg/mailauth"
	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/jonboulle/clockwork"
	"golang.org/x/oauth2"
)

// issuer is a token endpoint stand-in: the n-th token is "tok-n", valid
// for life, and the IMAP server is told to accept it. err, when set, is
// returned instead.
type issuer struct {
	srv  *mailtest.IMAPServer
	life time.Duration
	mu   sync.Mutex
	n    int
	err  error
}

func (i *issuer) Token(context.Context) (*oauth2.Token, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.err != nil {
		return nil, i.err
	}
	i.n++
	tok := fmt.Sprintf("tok-%d", i.n)
	i.srv.AllowToken(tok)
	return &oauth2.Token{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(i.life / time.Second)}, nil
}

func runOAuth(t *testing.T, ctx context.Context, cfg imapwatch.Config, h imapwatch.Handler, clock clockwork.Clock) (*imapwatch.Watcher, <-chan error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.TLS, cfg.Username = imapwatch.TLSNone, mailtest.IMAPUser
	w, err := imapwatch.New(cfg, h, clock, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return w, done
}

// TestOAuthLogin: AUTHENTICATE XOAUTH2 and OAUTHBEARER with a token from
// the cache, then the usual watch.
func TestOAuthLogin(t *testing.T) {
	for _, mech := range []string{mailauth.XOAuth2, mailauth.OAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctxFor(t))
			defer cancel()
			srv := mailtest.NewIMAPServer(t, allCaps)
			srv.Deliver(msg("a", "delete"), time.Time{})
			clock := clockwork.NewFakeClockAt(start)
			login := &mailauth.Login{Username: mailtest.IMAPUser, Mechanism: mech,
				Tokens: mailauth.NewCache(&issuer{srv: srv, life: time.Hour}, clock)}
			h := newHandler()
			_, done := runOAuth(t, ctx, imapwatch.Config{Addr: srv.Addr, Auth: login}, h, clock)
			h.waitCalls(ctx, t, 1)
			if n := srv.Commands("AUTHENTICATE"); n != 1 || srv.Commands("LOGIN") != 0 {
				t.Errorf("AUTHENTICATE %d, LOGIN %d; want one AUTHENTICATE", n, srv.Commands("LOGIN"))
			}
			srv.WaitUIDs(ctx) // logs in itself, with LOGIN
			if got := srv.TokensUsed(); !slices.Equal(got, []string{"tok-1"}) {
				t.Errorf("tokens used %v, want tok-1", got)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
}

// TestOAuthRefused: a token the server refuses stops the first session
// with ErrRejected, marked permanent, naming the server's text and the
// status of its error challenge.
func TestOAuthRefused(t *testing.T) {
	for _, tc := range []struct{ mech, challenge string }{
		{mailauth.XOAuth2, `XOAUTH2 refused: status "401", schemes "bearer"`},
		{mailauth.OAuthBearer, `OAUTHBEARER refused: status "invalid_token"`},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			srv := mailtest.NewIMAPServer(t, allCaps)
			login := &mailauth.Login{Username: mailtest.IMAPUser, Mechanism: tc.mech,
				Tokens: mailauth.NewCache(staticSource("never-issued"), nil)}
			_, done := runOAuth(t, ctxFor(t), imapwatch.Config{Addr: srv.Addr, Auth: login}, newHandler(), clockwork.NewFakeClock())
			err := <-done
			t.Logf("Run = %v", err)
			if !errors.Is(err, imapwatch.ErrRejected) || !fault.MarkedPermanent(err) {
				t.Fatalf("Run = %v (%v), want a permanent ErrRejected", err, fault.Of(err))
			}
			for _, want := range []string{"authenticate " + strings.ToUpper(tc.mech) + " as " + mailtest.IMAPUser,
				"AUTHENTICATIONFAILED", "Authentication failed (token refused)", tc.challenge} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Run = %v, want it to name %q", err, want)
				}
			}
		})
	}
}

type staticSource string

func (s staticSource) Token(context.Context) (*oauth2.Token, error) {
	return &oauth2.Token{AccessToken: string(s)}, nil
}

// TestOAuthTokenEndpointRefusal: a permanent token error (a revoked
// client secret) before the first session is a rejection, with the
// provider's text; a temporary one is retried.
func TestOAuthTokenEndpointRefusal(t *testing.T) {
	srv := mailtest.NewIMAPServer(t, allCaps)
	revoked := &mailauth.EndpointError{Status: 401, Code: "invalid_client", Description: "AADSTS7000215: Invalid client secret provided."}
	login := &mailauth.Login{Username: mailtest.IMAPUser, Tokens: mailauth.NewCache(&issuer{srv: srv, err: revoked}, nil)}
	_, done := runOAuth(t, ctxFor(t), imapwatch.Config{Addr: srv.Addr, Auth: login}, newHandler(), clockwork.NewFakeClock())
	err := <-done
	if !errors.Is(err, imapwatch.ErrRejected) || !fault.MarkedPermanent(err) || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("Run = %v (%v), want a permanent ErrRejected naming AADSTS7000215", err, fault.Of(err))
	}
	if srv.Commands("AUTHENTICATE") != 0 {
		t.Error("logged in without a token")
	}

	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	is := &issuer{srv: srv, life: time.Hour, err: fault.Temporary(errors.New("token endpoint: HTTP 503 Service Unavailable"))}
	login = &mailauth.Login{Username: mailtest.IMAPUser, Tokens: mailauth.NewCache(is, nil)}
	clock := clockwork.NewFakeClockAt(start)
	w, done := runOAuth(t, ctx, imapwatch.Config{Addr: srv.Addr, Auth: login}, newHandler(), clock)
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // the backoff
		t.Fatal(err)
	}
	if st := w.Status(); st == nil || !strings.Contains(st.Error(), "HTTP 503") {
		t.Errorf("Status = %v, want the 503", st)
	}
	is.mu.Lock()
	is.err = nil
	is.mu.Unlock()
	for w.Status() != nil {
		clock.Advance(5 * time.Minute)
		select {
		case <-ctx.Done():
			t.Fatal("no session after the endpoint recovered")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
}

// TestOAuthRenewBeforeExpiry: with RenewBeforeExpiry the session logs out
// before its token expires and the next one logs in with a new token;
// mail delivered meanwhile is handled.
func TestOAuthRenewBeforeExpiry(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, allCaps)
	clock := clockwork.NewFakeClockAt(start)
	// 60 s tokens: the cache renews them after 30 s; the session ends 10 s
	// before expiry, at 50 s.
	login := &mailauth.Login{Username: mailtest.IMAPUser, Tokens: mailauth.NewCache(&issuer{srv: srv, life: time.Minute}, clock)}
	h := newHandler()
	w, done := runOAuth(t, ctx, imapwatch.Config{Addr: srv.Addr, Auth: login, RenewBeforeExpiry: 10 * time.Second}, h, clock)
	for w.Status() != nil {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // idling
		t.Fatal(err)
	}
	clock.Advance(50 * time.Second)
	srv.Deliver(msg("during", "delete"), time.Time{})
	h.waitCalls(ctx, t, 1)
	srv.WaitUIDs(ctx)
	for len(srv.TokensUsed()) < 2 {
		select {
		case <-ctx.Done():
			t.Fatalf("tokens used %v, want a second login", srv.TokensUsed())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if got := srv.TokensUsed(); !slices.Equal(got, []string{"tok-1", "tok-2"}) {
		t.Errorf("tokens used %v, want tok-1 then tok-2", got)
	}
	if srv.Commands("LOGOUT") < 1 {
		t.Error("the old session did not log out")
	}
	cancel()
	<-done
}

// TestScanWhileIdleIsSilent: a server whose IDLE announces nothing: new
// mail is found by the scan every PollInterval (IDLE ended, NOOP, scan).
func TestScanWhileIdleIsSilent(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	srv := mailtest.NewIMAPServer(t, allCaps)
	srv.SilentIdle(true)
	h := newHandler()
	clock := clockwork.NewFakeClockAt(start)
	w, done := run(t, ctx, srv.Addr, h, clock)
	for w.Status() != nil {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // idling
		t.Fatal(err)
	}
	idles, noops := srv.Commands("IDLE"), srv.Commands("NOOP")
	srv.Deliver(msg("quiet", "delete"), time.Time{})
	// Had the server announced it, the message would be seen at start, not
	// at the scan a PollInterval later, and without a NOOP.
	clock.Advance(time.Minute) // the default PollInterval
	calls := h.waitCalls(ctx, t, 1)
	srv.WaitUIDs(ctx)
	if calls[0].Name != "quiet" || !calls[0].SeenAt.Equal(start.Add(time.Minute)) {
		t.Errorf("call %+v, want quiet seen at +1m", calls[0])
	}
	if idles < 1 || srv.Commands("NOOP") != noops+1 {
		t.Errorf("IDLE %d before, NOOP %d more; want an IDLE ended by one NOOP", idles, srv.Commands("NOOP")-noops)
	}
	cancel()
	<-done
}
