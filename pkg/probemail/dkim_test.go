package probemail

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

// dnsOf serves the TXT records of DKIM public keys, as DNS would.
func dnsOf(records map[string]string) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if r, ok := records[name]; ok {
			return []string{r}, nil
		}
		return nil, errors.New("no such record")
	}
}

func TestDKIMSignAndVerify(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	records := map[string]string{
		"s1._domainkey.monitor.example": "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edKey.Public().(ed25519.PublicKey)),
		"s2._domainkey.monitor.example": "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPub),
		"s1._domainkey.other.example":   "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edKey.Public().(ed25519.PublicKey)),
	}
	p := testProbe
	p.ReturnTo = "scout@monitor.example"
	msg, err := Build(p, testTo, testKey, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]DKIMSigner{
		"ed25519": {Domain: "monitor.example", Selector: "s1", Key: edKey},
		"rsa":     {Domain: "monitor.example", Selector: "s2", Key: rsaKey},
	} {
		t.Run(name, func(t *testing.T) {
			signed, err := s.Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := VerifyDKIM(signed, dnsOf(records)); got != DKIMAligned {
				t.Errorf("signed for the From domain: %s, want %s", got, DKIMAligned)
			}
			// The probe's header is signed: changing it breaks the signature.
			tampered := []byte(strings.Replace(string(signed), "a=1;", "a=2;", 1))
			if got := VerifyDKIM(tampered, dnsOf(records)); got != DKIMFail {
				t.Errorf("tampered: %s, want %s", got, DKIMFail)
			}
			ret, err := ParseReturned(signed)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := Verify(ret.HeaderValue, testTo, keyring(t)); err != nil {
				t.Errorf("the signed probe no longer verifies: %v", err)
			}
		})
	}
	unaligned, err := DKIMSigner{Domain: "other.example", Selector: "s1", Key: edKey}.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := VerifyDKIM(unaligned, dnsOf(records)); got != DKIMUnaligned {
		t.Errorf("signed for another domain: %s, want %s", got, DKIMUnaligned)
	}
	if got := VerifyDKIM(msg, dnsOf(records)); got != DKIMNone {
		t.Errorf("unsigned: %s, want %s", got, DKIMNone)
	}
}

func TestParseDKIMKey(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(edKey)
	if k, err := ParseDKIMKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil || k == nil {
		t.Errorf("Ed25519 PKCS #8: %v", err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	if _, err := ParseDKIMKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})); err == nil || !strings.Contains(err.Error(), "neither RSA nor Ed25519") {
		t.Errorf("an ECDSA key: %v, want refused (DKIM has no ECDSA)", err)
	}
	for _, bad := range []string{"", "not pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := ParseDKIMKey([]byte(bad)); err == nil || strings.Contains(err.Error(), "AAAA") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
