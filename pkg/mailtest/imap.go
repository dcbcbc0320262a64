package mailtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
)

// IMAP user of an IMAPServer.
const (
	IMAPUser     = "webscout"
	IMAPPassword = "secret"
)

// IMAPServer is a real IMAP4rev1 server (go-imap/v2 imapserver backed by
// imapmemserver) on 127.0.0.1 with one user (IMAPUser, IMAPPassword) and
// an INBOX. It accepts the password without TLS and records every line it
// receives, so that tests can count commands (IDLE, UID EXPUNGE, ...).
type IMAPServer struct {
	Addr string // 127.0.0.1:port

	t    testing.TB
	mem  *imapmemserver.Server
	user *imapmemserver.User
	caps imap.CapSet

	mu         sync.Mutex
	srv        *imapserver.Server
	wire       bytes.Buffer
	log        *imapLogger
	tokens     map[string]bool // bearer tokens accepted for IMAPUser
	used       []string        // tokens of successful logins, in order
	silentIdle bool
}

// NewIMAPServer starts a server offering caps (nil: IMAP4rev1 only; the
// server offers IDLE whatever caps say, see IMAPHideCapability) and stops
// it when the test ends.
func NewIMAPServer(t testing.TB, caps imap.CapSet) *IMAPServer {
	t.Helper()
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}}
	}
	s := &IMAPServer{t: t, mem: imapmemserver.New(), user: imapmemserver.NewUser(IMAPUser, IMAPPassword), caps: caps,
		log: &imapLogger{t: t}}
	if err := s.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	s.mem.AddUser(s.user)
	s.serve("127.0.0.1:0")
	t.Cleanup(func() {
		s.log.close()
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = s.srv.Close()
	})
	return s
}

// Write records what the server receives (imapserver's DebugWriter).
func (s *IMAPServer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wire.Write(p)
}

// Commands counts the client commands (tagged lines) whose verb is verb,
// e.g. "IDLE", "UID EXPUNGE" or "EXPUNGE" (which does not count UID
// EXPUNGE).
func (s *IMAPServer) Commands(verb string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	words := len(strings.Fields(verb))
	n := 0
	for _, l := range strings.Split(s.wire.String(), "\r\n") {
		f := strings.Fields(l)
		if len(f) >= 1+words && strings.EqualFold(strings.Join(f[1:1+words], " "), verb) {
			n++
		}
	}
	return n
}

func (s *IMAPServer) serve(addr string) {
	s.t.Helper()
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &imapSession{Session: s.mem.NewSession(), s: s}, nil, nil
		},
		Caps:         s.caps,
		InsecureAuth: true,
		DebugWriter:  s,
		Logger:       s.log,
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	s.srv = srv
	go func() { _ = srv.Serve(l) }()
}

// Restart drops every connection and serves again on the same address.
func (s *IMAPServer) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.srv.Close()
	s.serve(s.Addr)
}

// RecreateInbox deletes and creates the INBOX, as a restore or a migration
// does: its messages are gone and UIDs start at 1 again under a new
// UIDVALIDITY (RFC 3501 section 2.3.1.1).
func (s *IMAPServer) RecreateInbox() {
	s.t.Helper()
	if err := s.user.Delete("INBOX"); err != nil {
		s.t.Fatal(err)
	}
	if err := s.user.Create("INBOX", nil); err != nil {
		s.t.Fatal(err)
	}
}

type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

// Deliver appends msg to the INBOX with the given internal date (zero: now),
// as a delivery agent does, and returns its UID. A client idling on the
// INBOX is told at once (EXISTS).
func (s *IMAPServer) Deliver(msg []byte, internalDate time.Time) imap.UID {
	s.t.Helper()
	data, err := s.user.Append("INBOX", literal{bytes.NewReader(msg)}, &imap.AppendOptions{Time: internalDate})
	if err != nil {
		s.t.Fatal(err)
	}
	return data.UID
}

// UIDs lists the INBOX's UIDs over IMAP, as any client would see them.
func (s *IMAPServer) UIDs() []imap.UID {
	s.t.Helper()
	c, err := imapclient.DialInsecure(s.Addr, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(IMAPUser, IMAPPassword).Wait(); err != nil {
		s.t.Fatal(err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		s.t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		s.t.Fatal(err)
	}
	var out []imap.UID
	for _, m := range msgs {
		out = append(out, m.UID)
	}
	slices.Sort(out)
	return out
}

// WaitUIDs waits until the INBOX holds exactly want, and fails the test
// when ctx ends first.
func (s *IMAPServer) WaitUIDs(ctx context.Context, want ...imap.UID) {
	s.t.Helper()
	slices.Sort(want)
	for {
		got := s.UIDs()
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("INBOX UIDs %v, want %v", got, want)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// IMAPHideCapability runs a TCP proxy on 127.0.0.1 to the IMAP server at
// backend that removes capability from the server's CAPABILITY lists, as
// a server without it would answer. It returns the proxy's address.
func IMAPHideCapability(t testing.TB, backend, capability string) string {
	return Script(t, func(c net.Conn) {
		b, err := net.Dial("tcp", backend)
		if err != nil {
			return
		}
		defer b.Close()
		go func() { _, _ = io.Copy(b, c); _ = b.Close() }()
		r := bufio.NewReader(b)
		for {
			line, err := r.ReadString('\n')
			if strings.Contains(line, "CAPABILITY ") {
				line = strings.Replace(line, " "+capability+" ", " ", 1)
				line = strings.Replace(line, " "+capability+"]", "]", 1)
				line = strings.Replace(line, " "+capability+"\r\n", "\r\n", 1)
			}
			if _, werr := io.WriteString(c, line); werr != nil || err != nil {
				return
			}
		}
	})
}

// AllowToken makes the server accept token as a bearer token of IMAPUser
// (AUTHENTICATE XOAUTH2 and OAUTHBEARER).
func (s *IMAPServer) AllowToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens == nil {
		s.tokens = map[string]bool{}
	}
	s.tokens[token] = true
}

// RevokeToken makes the server refuse token from now on.
func (s *IMAPServer) RevokeToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
}

// TokensUsed lists the bearer tokens of the successful logins, in order.
func (s *IMAPServer) TokensUsed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.used)
}

// SilentIdle makes IDLE announce nothing (as some servers do, whose IDLE
// stays open but stops reporting new mail): changes are reported only in
// answer to other commands (NOOP, FETCH, ...).
func (s *IMAPServer) SilentIdle(silent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silentIdle = silent
}

func (s *IMAPServer) token(user, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if user != IMAPUser || !s.tokens[token] {
		return false
	}
	s.used = append(s.used, token)
	return true
}

// imapSession adds SASL (PLAIN, XOAUTH2, OAUTHBEARER) and a polling IDLE to
// an imapmemserver session.
type imapSession struct {
	imapserver.Session
	s *IMAPServer
}

// Idle reports mailbox changes during IDLE by checking every few
// milliseconds, as Dovecot does (unless SilentIdle). imapmemserver's own
// IDLE reports only changes made after it registered, so a message
// delivered just as the client entered IDLE would wait for the next
// command.
func (x *imapSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		x.s.mu.Lock()
		silent := x.s.silentIdle
		x.s.mu.Unlock()
		if !silent {
			if err := x.Poll(w, true); err != nil {
				return err
			}
		}
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
	}
}

func (x *imapSession) AuthenticateMechanisms() []string {
	return []string{sasl.Plain, "XOAUTH2", sasl.OAuthBearer}
}

var authFailed = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed,
	Text: "Authentication failed (token refused)"}

func (x *imapSession) Authenticate(mech string) (sasl.Server, error) {
	login := func() error { return x.Login(IMAPUser, IMAPPassword) }
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return x.Login(user, pass) }), nil
	case "XOAUTH2":
		return &xoauth2Server{check: func(user, token string) error {
			if !x.s.token(user, token) {
				return authFailed
			}
			return login()
		}}, nil
	case sasl.OAuthBearer:
		return imapFailure{sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if !x.s.token(o.Username, o.Token) || login() != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		})}, nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
}

// imapFailure turns the errors of go-sasl's servers into the tagged NO
// [AUTHENTICATIONFAILED] that a real server sends.
type imapFailure struct{ sasl.Server }

func (f imapFailure) Next(resp []byte) ([]byte, bool, error) {
	c, done, err := f.Server.Next(resp)
	if err != nil {
		return nil, true, authFailed
	}
	return c, done, nil
}

// xoauth2Server is the server side of XOAUTH2 as Google documents it
// (for the IMAP and the SMTP server): "user=" u ^A "auth=Bearer " t ^A
// ^A; a refused token gets a JSON challenge, and the client's (empty)
// answer to it the error of check.
type xoauth2Server struct {
	check  func(user, token string) error
	failed error
	step   int
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	x.step++
	switch {
	case x.step == 1 && resp == nil:
		x.step = 0
		return []byte{}, false, nil // ask for the initial response
	case x.step == 1:
		var user, token string
		for _, kv := range strings.Split(string(resp), "\x01") {
			if v, ok := strings.CutPrefix(kv, "user="); ok {
				user = v
			}
			if v, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
				token = v
			}
		}
		if err := x.check(user, token); err != nil {
			x.failed = err
			return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
		}
		return nil, true, nil
	case x.step == 2 && x.failed != nil:
		return nil, true, x.failed
	}
	return nil, true, errors.New("unexpected XOAUTH2 response")
}

// imapLogger logs to the test until it ends: imapserver's connection
// goroutines may still log after Close, and testing forbids (and the race
// detector flags) a Logf after the test completed.
type imapLogger struct {
	t      testing.TB
	mu     sync.Mutex
	closed bool
}

func (l *imapLogger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.t.Logf("imapserver: "+format, args...)
	}
}

func (l *imapLogger) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
}
