package probe

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/pkg/mailtest"
)

// TestStatusOf: the verdict table of the package documentation, the
// monitor's own classes included.
func TestStatusOf(t *testing.T) {
	cases := map[string]string{
		"":                events.StatusOK,
		ClassCertExpiring: events.StatusDegraded,
		ClassTemporary:    events.StatusDegraded,
		ClassTimeout:      events.StatusTimeout,
		ClassMonitor:      events.StatusMonitorError,
		ClassStale:        events.StatusMonitorError,
		ClassNoPassword:   events.StatusMonitorError,
		ClassBadTarget:    events.StatusMonitorError,
		ClassCredentials:  events.StatusMonitorError,
		ClassRefused:      events.StatusFailed,
		ClassProtocol:     events.StatusFailed,
		ClassTLS:          events.StatusFailed,
		ClassAuth:         events.StatusFailed,
		ClassCertInvalid:  events.StatusFailed,
	}
	for class, want := range cases {
		t.Run(class, func(t *testing.T) {
			if got := StatusOf(class); got != want {
				t.Errorf("StatusOf = %q, want %q", got, want)
			}
			if got := (Result{Class: class}).Status(); got != want {
				t.Errorf("Result.Status = %q, want %q", got, want)
			}
		})
	}
}

// TestServiceStatus: an ok dialogue at or over the slow threshold is
// slow; under it, or with the threshold off, ok; other statuses are kept.
func TestServiceStatus(t *testing.T) {
	cases := []struct {
		class   string
		totalMS float64
		slow    time.Duration
		want    string
	}{
		{"", 9999.9, 10 * time.Second, events.StatusOK},
		{"", 10000, 10 * time.Second, events.StatusSlow},
		{"", 60000, 0, events.StatusOK},
		{ClassCertExpiring, 60000, 10 * time.Second, events.StatusDegraded},
		{ClassRefused, 60000, 10 * time.Second, events.StatusFailed},
		{ClassTimeout, 30000, 10 * time.Second, events.StatusTimeout},
	}
	for _, c := range cases {
		if got := ServiceStatus(c.class, c.totalMS, c.slow); got != c.want {
			t.Errorf("ServiceStatus(%q, %v, %v) = %q, want %q", c.class, c.totalMS, c.slow, got, c.want)
		}
	}
}

func TestLogValueHidesThePassword(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&b, nil))
	log.Info("probe", "target", Target{Host: "imap.acme.example", Port: 993, TLS: "implicit", Username: "webscout", Password: "s3cret"})
	if strings.Contains(b.String(), "s3cret") || !strings.Contains(b.String(), `"password_set":true`) ||
		!strings.Contains(b.String(), "imap.acme.example:993") {
		t.Errorf("log = %s", b.String())
	}
}

func TestValidate(t *testing.T) {
	good := Target{Host: "mx.acme.example", Port: 25, TLS: checks.TLSStartTLS}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
	bad := []Target{
		{Port: 25, TLS: checks.TLSNone},
		{Host: "h", Port: 0, TLS: checks.TLSNone},
		{Host: "h", Port: 25, TLS: "ssl"},
		{Host: "h", Port: 25, TLS: checks.TLSNone, Username: "u"},
	}
	for _, tg := range bad {
		if err := tg.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", tg)
		}
	}
}

func TestInspect(t *testing.T) {
	now := time.Now()
	cert, pool := mailtest.CertificateValid(t, now.Add(-time.Hour), now.Add(10*24*time.Hour+time.Hour), "mx.acme.example")
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(cert.Certificate[1])
	cs := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
		PeerCertificates: []*x509.Certificate{leaf, ca}}

	cases := []struct {
		name     string
		host     string
		roots    *x509.CertPool
		at       time.Time
		days     int
		verified bool
		hostname bool
	}{
		{"valid", "mx.acme.example", pool, now, 10, true, true},
		{"trailing dot", "mx.acme.example.", pool, now, 10, true, true},
		{"other host", "mail.acme.example", pool, now, 10, true, false},
		{"unknown CA", "mx.acme.example", x509.NewCertPool(), now, 10, false, true},
		{"seen after expiry", "mx.acme.example", pool, now.Add(12 * 24 * time.Hour), -2, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info := Inspect(cs, tc.host, tc.roots, tc.at)
			if info.DaysLeft != tc.days || info.Verified != tc.verified || info.HostnameMatch != tc.hostname {
				t.Errorf("info = %+v, want days %d verified %v hostname %v", info, tc.days, tc.verified, tc.hostname)
			}
			if info.Version != "TLS1.3" || info.CipherSuite != "TLS_AES_128_GCM_SHA256" || !info.PeerNotAfter.Equal(leaf.NotAfter) ||
				info.PeerSubject != "CN=mx.acme.example" {
				t.Errorf("info = %+v", info)
			}
			if info.Verified == (info.VerifyError != "") {
				t.Errorf("verified %v with verify_error %q", info.Verified, info.VerifyError)
			}
		})
	}
	if info := Inspect(tls.ConnectionState{Version: tls.VersionTLS12}, "h", pool, now); info.Verified || info.VerifyError == "" {
		t.Errorf("no certificate: %+v", info)
	}
}
