package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/sync/errgroup"
)

// demoHost is the host name that service checks use to reach the demo mail
// server of `scout dev` (.test is reserved for testing, RFC 2606). scout
// dev resolves it to 127.0.0.1 and replaces the check's port with the one
// of the demo listener it starts for the check.
const demoHost = "demo.scout.test"

// demoPasswordEnv is the password_env name whose value `scout dev` provides
// itself: the demo mailbox's password, random per run.
const demoPasswordEnv = "SCOUT_DEMO_PASSWORD"

// demoServices are the SMTP, IMAP and POP3 sides of the demo mail server
// that service checks talk to: one listener on 127.0.0.1 per service check
// whose host is demoHost, with the check's TLS mode (STARTTLS or implicit
// TLS with a certificate for demoHost made at start), the check's user and
// the demo password. --break on such a check makes its listener refuse:
// SMTP answers 554 to EHLO, IMAP greets with BYE, POP3 greets with -ERR.
type demoServices struct {
	pool     *x509.CertPool // trusts the demo certificate
	caPEM    []byte         // the authority of the demo certificate, PEM
	password string
	log      *slog.Logger
	runs     []func(ctx context.Context) error

	mu     sync.Mutex
	broken map[string]bool // check id -> refuse
}

// newDemoServices starts listening for every service check of f on
// demoHost and points the check at its listener (it sets the port). The
// demo mailbox's password is password, or random when "".
func newDemoServices(f *checks.File, breaks []string, password string, log *slog.Logger) (*demoServices, error) {
	cert, pool, err := demoCertificate(demoHost, time.Now())
	if err != nil {
		return nil, err
	}
	if password == "" {
		pw := make([]byte, 18)
		if _, err := rand.Read(pw); err != nil {
			return nil, err
		}
		password = base64.RawURLEncoding.EncodeToString(pw)
	}
	d := &demoServices{pool: pool, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[1]}), password: password, log: log.With("component", "demo-mail-server"),
		broken: map[string]bool{}}
	for _, b := range breaks {
		d.broken[b] = true
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	for _, c := range f.Checks {
		if c.Kind == events.KindRoundTrip || !isDemoHost(c.Service.Host) {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			d.close()
			return nil, err
		}
		c.Service.Port = ln.Addr().(*net.TCPAddr).Port
		run, err := d.serve(c, ln, tlsCfg)
		if err != nil {
			_ = ln.Close()
			d.close()
			return nil, err
		}
		d.runs = append(d.runs, run)
	}
	return d, nil
}

// close releases listeners of a demoServices that will not run.
func (d *demoServices) close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, run := range d.runs {
		_ = run(ctx)
	}
}

func isDemoHost(h string) bool { return strings.EqualFold(strings.TrimSuffix(h, "."), demoHost) }

func (d *demoServices) isBroken(check string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.broken[check]
}

// setBroken makes one check's listener refuse (on) or answer normally.
func (d *demoServices) setBroken(check string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		d.broken[check] = true
	} else {
		delete(d.broken, check)
	}
}

func (d *demoServices) unbreak() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.broken)
}

// lookupEnv returns getenv's value, or the demo password for
// demoPasswordEnv.
func (d *demoServices) lookupEnv(getenv func(string) string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if name == demoPasswordEnv {
			return d.password, true
		}
		v := getenv(name)
		return v, v != ""
	}
}

// run serves every listener until ctx ends.
func (d *demoServices) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, run := range d.runs {
		g.Go(func() error { return run(ctx) })
	}
	return g.Wait()
}

// serve returns the function that serves check c on ln until its context
// ends.
func (d *demoServices) serve(c *checks.Check, ln net.Listener, cfg *tls.Config) (func(context.Context) error, error) {
	broken := func() bool { return d.isBroken(c.ID) }
	user := c.Service.Username
	if user == "" {
		user = "webscout"
	}
	plain := c.Service.TLS == checks.TLSNone
	if c.Service.TLS == checks.TLSImplicit {
		ln = tls.NewListener(ln, cfg)
	}
	switch c.Kind {
	case events.KindSMTP:
		s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
			if broken() {
				return nil, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Service unavailable"}
			}
			return &demoSMTPSession{user: user, pw: d.password}, nil
		}))
		s.Domain = demoHost
		s.ReadTimeout, s.WriteTimeout = time.Minute, time.Minute
		s.AllowInsecureAuth = plain
		if c.Service.TLS == checks.TLSStartTLS {
			s.TLSConfig = cfg
		}
		return func(ctx context.Context) error { return serveUntil(ctx, ln, s.Serve, s.Close) }, nil
	case events.KindIMAP:
		mem := imapmemserver.New()
		u := imapmemserver.NewUser(user, d.password)
		if err := u.Create("INBOX", nil); err != nil {
			return nil, err
		}
		if _, err := u.Append("INBOX", literal(demoWelcome), &imap.AppendOptions{}); err != nil {
			return nil, err
		}
		mem.AddUser(u)
		opts := &imapserver.Options{
			NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
				if broken() {
					return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Service unavailable"}
				}
				return mem.NewSession(), nil, nil
			},
			Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
			InsecureAuth: plain,
			Logger:       stdlog.New(io.Discard, "", 0),
		}
		if c.Service.TLS == checks.TLSStartTLS {
			opts.TLSConfig = cfg
		}
		s := imapserver.New(opts)
		return func(ctx context.Context) error { return serveUntil(ctx, ln, s.Serve, s.Close) }, nil
	case events.KindPOP3:
		p := &demoPOP3{ln: ln, plaintext: plain, user: user, pw: d.password, broken: broken, size: len(demoWelcome)}
		if c.Service.TLS == checks.TLSStartTLS {
			p.tls = cfg
		}
		return p.serve, nil
	}
	return nil, fmt.Errorf("check %q: kind %q has no demo server", c.ID, c.Kind)
}

// serveUntil runs serve(ln) until ctx ends, then stops it with closeFn
// (and closes ln, in case serve had not started yet).
func serveUntil(ctx context.Context, ln net.Listener, serve func(net.Listener) error, closeFn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- serve(ln) }()
	select {
	case <-ctx.Done():
		_ = closeFn()
		_ = ln.Close()
		<-errc
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("demo mail server: %w", err)
	}
}

// demoWelcome is the one message of the demo mailbox (IMAP INBOX, POP3
// maildrop).
const demoWelcome = "From: Email Scout <scout@demo.scout.test>\r\nTo: webscout@demo.scout.test\r\n" +
	"Subject: Welcome to the demo mailbox\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n\r\n" +
	"scout dev's service checks log in here.\r\n"

// literal is an imap.LiteralReader over a string.
func literal(s string) imap.LiteralReader { return sizedReader{strings.NewReader(s), int64(len(s))} }

type sizedReader struct {
	*strings.Reader
	n int64
}

func (r sizedReader) Size() int64 { return r.n }

// demoSMTPSession answers a service check: EHLO, STARTTLS, AUTH PLAIN
// (RFC 4616) with the demo credentials, QUIT. It takes no mail.
type demoSMTPSession struct {
	user, pw string
}

func (s *demoSMTPSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *demoSMTPSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if (identity != "" && identity != username) || username != s.user || password != s.pw {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		return nil
	}), nil
}
func (s *demoSMTPSession) Mail(string, *smtp.MailOptions) error {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "This demo service only answers service checks"}
}
func (s *demoSMTPSession) Rcpt(string, *smtp.RcptOptions) error { return smtp.ErrAuthRequired }
func (s *demoSMTPSession) Data(io.Reader) error                 { return smtp.ErrAuthRequired }
func (s *demoSMTPSession) Reset()                               {}
func (s *demoSMTPSession) Logout() error                        { return nil }

// demoResolver resolves demoHost to 127.0.0.1 and every other name with
// the system resolver (sender.HostResolver).
type demoResolver struct{}

func (demoResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if isDemoHost(host) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// demoCertificate makes a certificate authority and a server certificate
// for host, valid for 90 days from now, and a pool that trusts the
// authority.
func demoCertificate(host string, now time.Time) (tls.Certificate, *x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Email Scout dev CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		// 127.0.0.1 too: `scout soak`'s senders are separate processes that
		// reach the demo listeners by address and trust the authority
		// through SSL_CERT_FILE.
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, pool, nil
}
