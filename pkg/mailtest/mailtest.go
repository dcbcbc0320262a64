// Package mailtest runs real SMTP servers (emersion/go-smtp) and IMAP
// servers (emersion/go-imap/v2 imapserver with imapmemserver) on loopback
// for tests, and makes TLS certificates for them, in the spirit of
// net/http/httptest. Nothing here is a mock: clients speak the full protocol
// to a real server on 127.0.0.1.
package mailtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message a Server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	At   time.Time
}

// Options configure a Server.
type Options struct {
	// TLS offers STARTTLS with a certificate for 127.0.0.1 and localhost
	// (see Certificate). The client must trust Server.RootCAs.
	TLS bool
	// Auth, when not nil, offers AUTH PLAIN and accepts these user/password
	// pairs; MAIL is refused without it.
	Auth map[string]string
	// Tokens, when not nil, offers AUTH XOAUTH2 and OAUTHBEARER and accepts
	// these bearer tokens, each for its user (token -> user); MAIL is
	// refused without a login. A refusal is 535 5.7.8, after the error
	// challenge of RFC 7628 section 3.2.2.
	Tokens map[string]string
	// Rcpt decides on each recipient; nil accepts all. Return an
	// *smtp.SMTPError to choose the reply.
	Rcpt func(to string) error
	// Data decides on each message after it was read; nil accepts all.
	Data func(m Message) error
	// Domain is the server's name in its banner; empty means "mailtest.local".
	Domain string
}

// Server is a running SMTP server.
type Server struct {
	Addr    string         // 127.0.0.1:port
	RootCAs *x509.CertPool // trusts the server certificate when Options.TLS
	// CAPEM is the CA certificate of RootCAs in PEM (for clients that read
	// a CA file); nil without Options.TLS.
	CAPEM []byte

	srv   *smtp.Server
	opts  Options
	conns atomic.Int64
	mu    sync.Mutex
	msgs  []Message
	got   chan struct{}
}

// NewServer starts a server on 127.0.0.1 and stops it when the test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{opts: opts, got: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s}, nil
	}))
	s.srv.Domain = opts.Domain
	if s.srv.Domain == "" {
		s.srv.Domain = "mailtest.local"
	}
	s.srv.AllowInsecureAuth = true
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	if opts.TLS {
		cert, pool := Certificate(t, "127.0.0.1", "localhost")
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.RootCAs = pool
		s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[len(cert.Certificate)-1]})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mailtest: listen: %v", err)
	}
	s.Addr = l.Addr().String()
	go func() { _ = s.srv.Serve(countingListener{l, &s.conns}) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// Connections returns how many TCP connections the server accepted: the
// SMTP sessions of its clients.
func (s *Server) Connections() int64 { return s.conns.Load() }

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// Messages returns a copy of the messages accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Wait blocks until at least n messages were accepted or timeout passes, and
// returns the messages so far.
func (s *Server) Wait(n int, timeout time.Duration) []Message {
	deadline := time.After(timeout)
	for {
		if m := s.Messages(); len(m) >= n {
			return m
		}
		select {
		case <-s.got:
		case <-deadline:
			return s.Messages()
		}
	}
}

type session struct {
	s      *Server
	authed bool
	from   string
	to     []string
}

func (x *session) AuthMechanisms() []string {
	var m []string
	if x.s.opts.Auth != nil {
		m = append(m, sasl.Plain)
	}
	if x.s.opts.Tokens != nil {
		m = append(m, "XOAUTH2", sasl.OAuthBearer)
	}
	return m
}

var smtpAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}

func (x *session) token(user, token string) error {
	if u, ok := x.s.opts.Tokens[token]; ok && u == user {
		x.authed = true
		return nil
	}
	return smtpAuthFailed
}

func (x *session) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case "XOAUTH2":
		return &xoauth2Server{check: x.token}, nil
	case sasl.OAuthBearer:
		return smtpFailure{sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if x.token(o.Username, o.Token) != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		})}, nil
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if want, ok := x.s.opts.Auth[user]; ok && want == pass {
			x.authed = true
			return nil
		}
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
	}), nil
}

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	if (x.s.opts.Auth != nil || x.s.opts.Tokens != nil) && !x.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	x.from = from
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if x.s.opts.Rcpt != nil {
		if err := x.s.opts.Rcpt(to); err != nil {
			return err
		}
	}
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{From: x.from, To: append([]string(nil), x.to...), Data: data, At: time.Now()}
	if x.s.opts.Data != nil {
		if err := x.s.opts.Data(m); err != nil {
			return err
		}
	}
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, m)
	x.s.mu.Unlock()
	select {
	case x.s.got <- struct{}{}:
	default:
	}
	return nil
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

// smtpFailure turns the errors of go-sasl's servers into 535 5.7.8.
type smtpFailure struct{ sasl.Server }

func (f smtpFailure) Next(resp []byte) ([]byte, bool, error) {
	c, done, err := f.Server.Next(resp)
	if err != nil {
		return nil, true, smtpAuthFailed
	}
	return c, done, nil
}

// Certificate returns a leaf certificate for hosts (IP addresses or names),
// valid from an hour ago for a day, signed by a fresh CA, and a pool that
// trusts that CA.
func Certificate(t testing.TB, hosts ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	return CertificateValid(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), hosts...)
}

// CertificateValid is Certificate with a chosen validity period, for expired
// and expiring certificates.
func CertificateValid(t testing.TB, notBefore, notAfter time.Time, hosts ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mailtest CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, pool
}

// Script runs a raw TCP server on 127.0.0.1 whose every connection is
// handled by fn, for servers that break the protocol on purpose (a banner
// that never comes, STARTTLS that never upgrades). It returns the address.
func Script(t testing.TB, fn func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				go func() { <-done; _ = c.Close() }()
				fn(c)
			}()
		}
	}()
	t.Cleanup(func() { close(done); _ = l.Close(); wg.Wait() })
	return l.Addr().String()
}

// ReadLine reads one CRLF line from c (for Script handlers), without it.
func ReadLine(c net.Conn) (string, error) {
	var b bytes.Buffer
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return b.String(), err
		}
		if one[0] == '\n' {
			return strings.TrimSuffix(b.String(), "\r"), nil
		}
		if b.Len() > 4096 {
			return b.String(), errors.New("line too long")
		}
		b.WriteByte(one[0])
	}
}

// ClosedAddr returns a loopback address on which nothing listens.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// Context returns a context that ends five seconds before the test's
// deadline (or after 2 minutes without one) and when the test ends, so that
// a stuck exchange fails the test with its own message instead of the test
// binary's timeout panic.
func Context(t testing.TB) context.Context {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := tt.Deadline(); ok {
			deadline = d.Add(-5 * time.Second)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}
