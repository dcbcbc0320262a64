package probemail

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIM signs probes so that the customer's filters do not junk them (RFC
// 6376), and reads whether a return arrived signed for the domain of its
// From (DMARC alignment, RFC 7489 section 3.1.1).

// DKIMSigner signs probes for Domain with the key published at
// Selector._domainkey.Domain.
type DKIMSigner struct {
	Domain   string // the return address's domain, so that d= aligns with the probe's From
	Selector string
	Key      crypto.Signer // *rsa.PrivateKey (2048 bits or more) or ed25519.PrivateKey
}

// dkimHeaders are the fields a probe's signature covers (RFC 6376 section
// 5.4.1), its own probe header among them.
var dkimHeaders = []string{"From", "To", "Subject", "Date", "Message-ID", HeaderProbe, "MIME-Version", "Content-Type"}

// Sign returns msg with a DKIM-Signature field (relaxed/relaxed, SHA-256).
func (s DKIMSigner) Sign(msg []byte) ([]byte, error) {
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain: s.Domain, Selector: s.Selector, Signer: s.Key, HeaderKeys: dkimHeaders,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		return nil, fmt.Errorf("dkim sign: %w", err)
	}
	return out.Bytes(), nil
}

// ParseDKIMKey reads a PEM private key for DKIM: RSA (PKCS #1 or #8, at
// least 1024 bits; RFC 8301 asks for 2048 to sign) or Ed25519 (PKCS #8,
// RFC 8463). The error never quotes the key.
func ParseDKIMKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("dkim key: no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("dkim key: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("dkim key: RSA key of %d bits is too short (RFC 8301)", k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("dkim key: %T is neither RSA nor Ed25519", key)
}

// DKIM results of a returned message (MailReturned.DKIM).
const (
	DKIMAligned   = "pass"           // a valid signature for the From domain (or its parent)
	DKIMUnaligned = "pass_unaligned" // valid signatures, none for the From domain
	DKIMFail      = "fail"           // signatures, none valid
	DKIMNone      = "none"           // no signature
	DKIMTempError = "temperror"      // a key could not be looked up
)

// VerifyDKIM reads the DKIM signatures of msg and says whether one is
// valid and aligned with the domain of its From (relaxed alignment: the
// same domain or a parent of it, short of the public suffix check of RFC
// 7489, which needs a suffix list). lookupTXT fetches the keys' TXT
// records (net.Resolver.LookupTXT in production).
func VerifyDKIM(msg []byte, lookupTXT func(string) ([]string, error)) string {
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookupTXT, MaxVerifications: 5})
	if err != nil && len(vs) == 0 {
		return DKIMNone
	}
	if len(vs) == 0 {
		return DKIMNone
	}
	from := ""
	if m, err := mail.ReadMessage(bytes.NewReader(msg)); err == nil {
		if a, err := mail.ParseAddress(m.Header.Get("From")); err == nil {
			from = strings.ToLower(domainOf(a.Address))
		}
	}
	valid, temp := false, false
	for _, v := range vs {
		if v.Err == nil {
			valid = true
			d := strings.ToLower(v.Domain)
			if from != "" && (from == d || strings.HasSuffix(from, "."+d)) {
				return DKIMAligned
			}
			continue
		}
		if dkim.IsTempFail(v.Err) {
			temp = true
		}
	}
	switch {
	case valid:
		return DKIMUnaligned
	case temp:
		return DKIMTempError
	}
	return DKIMFail
}
