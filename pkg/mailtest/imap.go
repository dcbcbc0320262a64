package mailtest

import (
	"bufio"
	"bytes"
	"context"
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

	mu   sync.Mutex
	srv  *imapserver.Server
	wire bytes.Buffer
}

// NewIMAPServer starts a server offering caps (nil: IMAP4rev1 only; the
// server offers IDLE whatever caps say, see IMAPHideCapability) and stops
// it when the test ends.
func NewIMAPServer(t testing.TB, caps imap.CapSet) *IMAPServer {
	t.Helper()
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}}
	}
	s := &IMAPServer{t: t, mem: imapmemserver.New(), user: imapmemserver.NewUser(IMAPUser, IMAPPassword), caps: caps}
	if err := s.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	s.mem.AddUser(s.user)
	s.serve("127.0.0.1:0")
	t.Cleanup(func() {
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
			return idleSession{s.mem.NewSession()}, nil, nil
		},
		Caps:         s.caps,
		InsecureAuth: true,
		DebugWriter:  s,
		Logger:       imapLogger{s.t},
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

// idleSession reports mailbox changes during IDLE by checking every few
// milliseconds, as Dovecot does. imapmemserver's own IDLE reports only
// changes made after it registered, so a message delivered just as the
// client entered IDLE would wait for the next command.
type idleSession struct{ imapserver.Session }

func (s idleSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := s.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
	}
}

type imapLogger struct{ t testing.TB }

func (l imapLogger) Printf(format string, args ...any) { l.t.Logf("imapserver: "+format, args...) }
