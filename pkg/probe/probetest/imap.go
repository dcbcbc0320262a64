package probetest

import (
	"crypto/tls"
	"io"
	stdlog "log"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// IMAP user of IMAPServer.
const (
	IMAPUser     = "webscout"
	IMAPPassword = "s3cret"
)

// IMAPServer runs go-imap/v2's imapserver with the in-memory backend on
// 127.0.0.1 until the test ends: one user (IMAPUser, IMAPPassword) with one
// message in INBOX. With cfg and InsecureAuth off it advertises STARTTLS
// and LOGINDISABLED until the upgrade, like case c07's server; implicit
// serves TLS from the first byte instead. It returns the address.
func IMAPServer(t testing.TB, cfg *tls.Config, implicit bool) string {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(IMAPUser, IMAPPassword)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	msg := "From: a@example.net\r\nTo: webscout@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
	if _, err := u.Append("INBOX", sizedReader{strings.NewReader(msg)}, &imap.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:      imap.CapSet{imap.CapIMAP4rev1: {}},
		TLSConfig: cfg,
		Logger:    stdlog.New(io.Discard, "", 0),
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if implicit {
		l = tls.NewListener(l, cfg)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return addr
}

// sizedReader is the imap.LiteralReader of an APPEND.
type sizedReader struct{ *strings.Reader }

func (r sizedReader) Size() int64 { return r.Reader.Size() }
