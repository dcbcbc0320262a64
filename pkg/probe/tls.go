package probe

import (
	"crypto/tls"
	"crypto/x509"
	"math"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// Inspect describes a completed TLS session and its peer certificate as of
// now: the negotiated version and cipher suite, the leaf certificate's
// expiry (NotAfter, whole days left, negative once expired), whether the
// chain verifies against roots (nil: the system roots) with the
// intermediates the server sent, and whether the leaf names host (RFC 6125
// via x509.Certificate.VerifyHostname; a trailing dot is ignored).
func Inspect(cs tls.ConnectionState, host string, roots *x509.CertPool, now time.Time) *events.TLSInfo {
	info := &events.TLSInfo{
		Version:     events.TLSVersionName(cs.Version),
		CipherSuite: tls.CipherSuiteName(cs.CipherSuite),
	}
	if len(cs.PeerCertificates) == 0 {
		info.VerifyError = "the server sent no certificate"
		return info
	}
	leaf := cs.PeerCertificates[0]
	info.PeerNotAfter = leaf.NotAfter
	info.DaysLeft = int(math.Floor(leaf.NotAfter.Sub(now).Hours() / 24))
	info.PeerSubject = leaf.Subject.String()
	info.HostnameMatch = leaf.VerifyHostname(trimDot(host)) == nil
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	info.Verified = err == nil
	if err != nil {
		info.VerifyError = err.Error()
	}
	return info
}
