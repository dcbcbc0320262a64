// Package probetest helps the probers' tests: a context bounded by the
// test's deadline, server certificates in the variants a check must tell
// apart (valid, expired, expiring, wrong host), and Peer, the server side of
// a scripted dialogue on loopback (pkg/mailtest.Script) that reads lines
// without buffering ahead, so it can hand the connection to TLS at the
// exact byte where STARTTLS begins; and IMAPServer, go-imap/v2's real
// server with one mailbox.
package probetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/mailtest"
)

// Context returns a context bounded by the test's deadline (see
// mailtest.Context).
func Context(t testing.TB) context.Context {
	t.Helper()
	return mailtest.Context(t)
}

// Timeout returns a context that ends after d (for tests whose server
// never answers), bounded by Context.
func Timeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(Context(t), d)
	t.Cleanup(cancel)
	return ctx
}

// Cert variants.
type Cert int

const (
	Valid     Cert = iota // names 127.0.0.1 and localhost, 90 days left
	Expired               // expired yesterday
	Expiring              // 5 days left
	WrongHost             // names mail.wrong.example only, 90 days left
)

// ExpiringDays is the validity left on an Expiring certificate.
const ExpiringDays = 5

// ServerTLS returns a server TLS configuration with a certificate of the
// given variant and the pool that trusts its CA.
func ServerTLS(t testing.TB, c Cert) (*tls.Config, *x509.CertPool) {
	t.Helper()
	now := time.Now()
	day := 24 * time.Hour
	var cert tls.Certificate
	var pool *x509.CertPool
	switch c {
	case Valid:
		cert, pool = mailtest.CertificateValid(t, now.Add(-time.Hour), now.Add(90*day), "127.0.0.1", "localhost")
	case Expired:
		cert, pool = mailtest.CertificateValid(t, now.Add(-30*day), now.Add(-day), "127.0.0.1", "localhost")
	case Expiring:
		cert, pool = mailtest.CertificateValid(t, now.Add(-time.Hour), now.Add(ExpiringDays*day+time.Hour), "127.0.0.1", "localhost")
	case WrongHost:
		cert, pool = mailtest.CertificateValid(t, now.Add(-time.Hour), now.Add(90*day), "mail.wrong.example")
	default:
		t.Fatalf("unknown cert variant %d", c)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, pool
}

// Peer is the server side of a scripted connection.
type Peer struct {
	C net.Conn
}

// Line reads one line from the client, without CRLF.
func (p *Peer) Line() (string, error) { return mailtest.ReadLine(p.C) }

// Send writes the lines, each followed by CRLF, in one write.
func (p *Peer) Send(lines ...string) error {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	_, err := p.C.Write(b.Bytes())
	return err
}

// Quiet waits d for the client to stay silent and returns whatever it sent
// meanwhile (nil when it was silent): a client must not talk before the
// server's greeting is complete.
func (p *Peer) Quiet(d time.Duration) []byte {
	_ = p.C.SetReadDeadline(time.Now().Add(d))
	defer func() { _ = p.C.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 512)
	n, _ := p.C.Read(buf) // a deadline or a closed connection: silent
	if n > 0 {
		return buf[:n]
	}
	return nil
}

// StartTLS does the server side of the handshake on the connection.
func (p *Peer) StartTLS(cfg *tls.Config) error {
	tc := tls.Server(p.C, cfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	_ = tc.SetDeadline(time.Time{})
	p.C = tc
	return nil
}

// Upper returns the first word of a command line in upper case.
func Upper(line string) string {
	w, _, _ := strings.Cut(line, " ")
	return strings.ToUpper(w)
}

// Replay is a net.Conn that a fuzz target feeds a server's bytes through:
// each Read returns the next line of data (up to and including its LF),
// as a server answering command by command would, so a client's check
// for unsolicited data sees only what really came early; then io.EOF.
// Write accepts and drops everything, deadlines are ignored. No network,
// so a fuzz run makes millions of sessions.
type Replay struct {
	data []byte
}

// NewReplay returns a Replay of data.
func NewReplay(data []byte) *Replay { return &Replay{data: data} }

func (c *Replay) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if i := bytes.IndexByte(c.data, '\n'); i >= 0 {
		n = i + 1
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *Replay) Write(p []byte) (int, error)      { return len(p), nil }
func (c *Replay) Close() error                     { return nil }
func (c *Replay) LocalAddr() net.Addr              { return replayAddr{} }
func (c *Replay) RemoteAddr() net.Addr             { return replayAddr{} }
func (c *Replay) SetDeadline(time.Time) error      { return nil }
func (c *Replay) SetReadDeadline(time.Time) error  { return nil }
func (c *Replay) SetWriteDeadline(time.Time) error { return nil }

type replayAddr struct{}

func (replayAddr) Network() string { return "replay" }
func (replayAddr) String() string  { return "replay" }
