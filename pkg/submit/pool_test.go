package submit

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// countingServer is a go-smtp server with STARTTLS and AUTH PLAIN that
// counts its sessions (TCP connections: go-smtp makes a new Session
// after STARTTLS) and the messages it took; rcptCode, when set, is
// the reply to RCPT.
type countingServer struct {
	addr     string
	roots    *tls.Config
	sessions atomic.Int32
	open     atomic.Int32 // connections not yet closed by the client
	msgs     atomic.Int32
	srv      *smtp.Server
	mu       sync.Mutex
	rcptCode int
}

func startCounting(t *testing.T, readTimeout time.Duration) *countingServer {
	t.Helper()
	cert, pool := mailtest.Certificate(t, "127.0.0.1")
	cs := &countingServer{roots: &tls.Config{RootCAs: pool}}
	cs.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &countingSession{cs: cs}, nil
	}))
	cs.srv.Domain, cs.srv.TLSConfig, cs.srv.AllowInsecureAuth = "relay.monitor.example", &tls.Config{Certificates: []tls.Certificate{cert}}, false
	cs.srv.ReadTimeout = readTimeout
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs.addr = ln.Addr().String()
	go func() { _ = cs.srv.Serve(countingListener{ln, &cs.sessions, &cs.open}) }()
	t.Cleanup(func() { _ = cs.srv.Close() })
	return cs
}

// countingListener counts the connections it accepts and those open.
type countingListener struct {
	net.Listener
	n, open *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	l.n.Add(1)
	l.open.Add(1)
	return &countedConn{Conn: c, open: l.open}, nil
}

// countedConn counts itself out of open when it reads the client's end
// (EOF or an error) or is closed.
type countedConn struct {
	net.Conn
	open *atomic.Int32
	done sync.Once
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.done.Do(func() { c.open.Add(-1) })
	}
	return n, err
}

func (c *countedConn) Close() error {
	c.done.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

type countingSession struct {
	cs *countingServer
}

func (s *countingSession) AuthMechanisms() []string { return []string{"PLAIN"} }
func (s *countingSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "scout" || pass != "pw" {
			return errors.New("bad credentials")
		}
		return nil
	}), nil
}
func (s *countingSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *countingSession) Rcpt(string, *smtp.RcptOptions) error {
	s.cs.mu.Lock()
	defer s.cs.mu.Unlock()
	if s.cs.rcptCode != 0 {
		return &smtp.SMTPError{Code: s.cs.rcptCode, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return nil
}
func (s *countingSession) Data(r io.Reader) error {
	_, _ = io.Copy(io.Discard, r)
	s.cs.msgs.Add(1)
	return nil
}
func (s *countingSession) Reset()        {}
func (s *countingSession) Logout() error { return nil }

func (cs *countingServer) config() Config {
	return Config{Addr: cs.addr, TLS: TLSStartTLS, TLSConfig: cs.roots, Username: "scout", Password: "pw", HelloName: "scout.monitor.example"}
}

// TestPoolReusesSessions: five messages go on one session (one connect,
// greeting, TLS handshake and login); the later ones are marked reused,
// have no connect/TLS/auth phase and a transcript of their own
// transaction; MaxMessages 2 opens a session per two messages.
func TestPoolReusesSessions(t *testing.T) {
	cs := startCounting(t, time.Minute)
	p := NewPool(cs.config())
	defer p.Close()
	for i := range 5 {
		res, err := p.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if res.Reused != (i > 0) || res.Server != "relay.monitor.example" || res.Timings.TLSVersion == "" || res.Reply == nil || res.Reply.Code != 250 {
			t.Errorf("message %d: reused %v server %q tls %q reply %v", i, res.Reused, res.Server, res.Timings.TLSVersion, res.Reply)
		}
		if i > 0 && (res.Timings.ConnectMS != 0 || res.Timings.TLSMS != 0 || res.Timings.AuthMS != 0 || !strings.HasPrefix(res.Transcript[0], "C: MAIL FROM:<r@monitor.example>")) {
			t.Errorf("message %d on a reused session: timings %+v transcript %q", i, res.Timings, res.Transcript)
		}
	}
	if n, m := cs.sessions.Load(), cs.msgs.Load(); n != 1 || m != 5 {
		t.Errorf("%d sessions for %d messages, want 1 for 5", n, m)
	}

	cs2 := startCounting(t, time.Minute)
	p2 := NewPool(cs2.config())
	p2.MaxMessages = 2
	defer p2.Close()
	for i := range 5 {
		res, err := p2.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Reused != (i > 0) {
			t.Errorf("MaxMessages 2, message %d: reused %v, want %v (a retired session's replacement is opened ahead)", i, res.Reused, i > 0)
		}
	}
	if n := cs2.sessions.Load(); n != 3 {
		t.Errorf("MaxMessages 2: %d sessions for 5 messages, want 3", n)
	}
}

// TestPoolReplacesARetiredSessionAhead: a session that served its
// MaxMessages is replaced at once, before the next message comes, so that
// the next message does not wait for a connection, a greeting, TLS and a
// login; with MaxMessages 1 nothing is opened ahead.
func TestPoolReplacesARetiredSessionAhead(t *testing.T) {
	cs := startCounting(t, time.Minute)
	p := NewPool(cs.config())
	p.MaxMessages = 2
	defer p.Close()
	send := func(p *Pool) Result {
		t.Helper()
		res, err := p.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	send(p)
	send(p)
	deadline := time.Now().Add(10 * time.Second)
	for cs.sessions.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no replacement opened after the session's second message: %d sessions", cs.sessions.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if res := send(p); !res.Reused || res.Timings.ConnectMS != 0 || res.Timings.TLSMS != 0 || res.Timings.AuthMS != 0 {
		t.Errorf("the third message: reused %v, timings %+v; want the replacement, opened ahead", res.Reused, res.Timings)
	}
	if n := cs.sessions.Load(); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}
	for cs.open.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions open, want 1: the retired one is not ended", cs.open.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}

	cs1 := startCounting(t, time.Minute)
	p1 := NewPool(cs1.config())
	p1.MaxMessages = 1
	defer p1.Close()
	for i := range 2 {
		if res := send(p1); res.Reused {
			t.Errorf("MaxMessages 1, message %d: reused; want a session opened for it", i)
		}
	}
	if n := cs1.sessions.Load(); n != 2 {
		t.Errorf("MaxMessages 1: %d sessions for 2 messages, want 2", n)
	}
}

// TestPoolSessionClosedByServer: the server ends an idle session (its
// read timeout); the next message fails on it at MAIL and is sent again,
// once, on a new session: the caller sees a success.
func TestPoolSessionClosedByServer(t *testing.T) {
	cs := startCounting(t, 200*time.Millisecond)
	p := NewPool(cs.config())
	defer p.Close()
	if _, err := p.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // past the server's read timeout: it closed the session
	res, err := p.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg)
	if err != nil || res.Reused {
		t.Fatalf("after the server closed the session: %v (reused %v), want a success on a new session", err, res.Reused)
	}
	if n, m := cs.sessions.Load(), cs.msgs.Load(); n != 2 || m != 2 {
		t.Errorf("%d sessions, %d messages; want 2 and 2", n, m)
	}
}

// TestPoolIdleTimeoutAndRefusal: a session idle for IdleTimeout is ended
// by the pool (QUIT) without waiting for the next message, and the next
// one opens a new session; a refusal (5xx to RCPT) on a reused session is
// the caller's error, not retried, and the session is dropped.
func TestPoolIdleTimeoutAndRefusal(t *testing.T) {
	cs := startCounting(t, time.Minute)
	p := NewPool(cs.config())
	p.IdleTimeout = 50 * time.Millisecond
	defer p.Close()
	for range 2 {
		if _, err := p.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for cs.open.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := cs.open.Load(); n != 0 {
			t.Fatalf("%d sessions still open after the idle timeout", n)
		}
	}
	if n := cs.sessions.Load(); n != 2 {
		t.Errorf("%d sessions, want 2 (the first was ended when idle)", n)
	}

	p.IdleTimeout = time.Minute
	if _, err := p.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg); err != nil {
		t.Fatal(err)
	}
	cs.mu.Lock()
	cs.rcptCode = 550
	cs.mu.Unlock()
	// This send reuses the third session and gets the 550; no retry.
	var se *Error
	_, err := p.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg)
	if !errors.As(err, &se) || se.Phase != PhaseRcpt || se.Reply == nil || se.Reply.Code != 550 {
		t.Errorf("err %v, want the 550 to RCPT", err)
	}
	if n := cs.sessions.Load(); n != 3 {
		t.Errorf("%d sessions, want 3: the refusal came on the reused session", n)
	}
	if _, err := p.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg); err == nil {
		t.Fatal("a 550 to RCPT was a success")
	}
	if n := cs.sessions.Load(); n != 4 {
		t.Errorf("%d sessions, want 4: the refused session was dropped, not reused", n)
	}
}

// expiringLogin logs in with AUTH PLAIN and says its token expires life
// after each login, as an OAuth login (pkg/mailauth) does.
type expiringLogin struct{ life time.Duration }

func (a expiringLogin) SASL(context.Context) (sasl.Client, time.Time, error) {
	return sasl.NewPlainClient("", "scout", "pw"), time.Now().Add(a.life), nil
}

// TestPoolRenewsASessionInTheSecondHalfOfItsToken: a session logged in
// with an expiring token is reused in the first half of the token's life,
// not after (a server may end a session whose token expired), and the
// next message logs in on a new session.
func TestPoolRenewsASessionInTheSecondHalfOfItsToken(t *testing.T) {
	cs := startCounting(t, time.Minute)
	cfg := cs.config()
	cfg.Username, cfg.Password, cfg.Auth = "", "", expiringLogin{life: 2 * time.Second}
	p := NewPool(cfg)
	defer p.Close()
	send := func() Result {
		t.Helper()
		res, err := p.Send(testCtx(t), "r@monitor.example", []string{"b@customer.example"}, msg)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if send().Reused || !send().Reused {
		t.Fatal("the second message, right after the first, was not sent on the first one's session")
	}
	time.Sleep(1100 * time.Millisecond) // past half of the token's 2 s
	if res := send(); res.Reused || res.Timings.AuthMS == 0 {
		t.Errorf("a message after half the token's life: reused %v, auth %v ms; want a new session and login", res.Reused, res.Timings.AuthMS)
	}
	if n := cs.sessions.Load(); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}
}
