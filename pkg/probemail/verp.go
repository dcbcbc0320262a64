package probemail

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	"github.com/emailscout/emailscout/pkg/events"
)

// VERPTokenLen is the length of the token VERPAddress adds, in characters
// (see "VERP envelope senders" in the package documentation).
const VERPTokenLen = events.TestIDLen + verpHashLen + verpMACLen

const (
	verpHashLen     = 4 // 20 bits of base32
	verpMACLen      = 8 // 40 bits of base32
	maxLocalPartLen = 64
	maxAddrLen      = 254
)

// ErrVERP is wrapped by VERPAddress errors.
var ErrVERP = errors.New("cannot build VERP address")

// verpEncoding is the alphabet of test ids, without padding.
var verpEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// VERPToken is what ParseVERP read from a VERP address. Nothing in it is
// verified until Verify returns true.
type VERPToken struct {
	// Return is the address without the token: <local>@<domain>, in the case
	// it arrived in (compare it with the configured return addresses
	// case-insensitively).
	Return string
	// TestID is the token's test id, lower case (24 characters).
	TestID string
	// Hash is the token's (site, check) hash, lower case (4 characters): look
	// it up among VERPHash of the receiver's checks.
	Hash string
	// mac is the token's 8-character MAC, lower case.
	mac string
}

// VERPAddress returns the envelope sender for the probe of testID at site for
// check, signed with key: returnAddr with "+<token>" appended to its local
// part (see "VERP envelope senders" in the package documentation). It returns an error wrapping ErrVERP when
// returnAddr is not a plain address, testID is not an events.NewTestID id,
// site or check is not an events.ValidToken, key.Secret is shorter than
// MinSecretLen, or the result would exceed 64 octets of local part or 254
// octets in all (RFC 5321 section 4.5.3.1).
func VERPAddress(returnAddr, testID, site, check string, key Key) (string, error) {
	if !validAddr(returnAddr) {
		return "", fmt.Errorf("%w: return address %q is not a plain address", ErrVERP, returnAddr)
	}
	if !events.ValidTestID(testID) {
		return "", fmt.Errorf("%w: test id %q is not %d characters of a-z 2-7", ErrVERP, testID, events.TestIDLen)
	}
	if !events.ValidToken(site) || !events.ValidToken(check) {
		return "", fmt.Errorf("%w: site %q or check %q is not a valid token", ErrVERP, site, check)
	}
	if len(key.Secret) < MinSecretLen {
		return "", fmt.Errorf("%w: key %q: secret is %d bytes, at least %d are required", ErrVERP, key.ID, len(key.Secret), MinSecretLen)
	}
	at := strings.LastIndexByte(returnAddr, '@')
	local, domain := returnAddr[:at], returnAddr[at+1:]
	local += "+" + testID + VERPHash(site, check) + verpMAC(testID, site, check, key)
	if len(local) > maxLocalPartLen {
		return "", fmt.Errorf("%w: local part %q is %d octets, over %d (RFC 5321 section 4.5.3.1.1); shorten %q",
			ErrVERP, local, len(local), maxLocalPartLen, returnAddr[:at])
	}
	addr := local + "@" + domain
	if len(addr) > maxAddrLen {
		return "", fmt.Errorf("%w: address is %d octets, over %d (RFC 5321 section 4.5.3.1.3)", ErrVERP, len(addr), maxAddrLen)
	}
	return addr, nil
}

// VERPHash returns the 4-character (20-bit) hash of (site, check) that VERP
// tokens carry, lower case. Distinct pairs may share a hash.
func VERPHash(site, check string) string {
	sum := sha256.Sum256([]byte("verp-check\x00" + site + "\x00" + check))
	return verpEncoding.EncodeToString(sum[:3])[:verpHashLen]
}

// verpMAC returns the token's 8-character (40-bit) MAC.
func verpMAC(testID, site, check string, key Key) string {
	m := hmac.New(sha256.New, key.Secret)
	m.Write([]byte("verp\x00" + testID + "\x00" + site + "\x00" + check))
	return verpEncoding.EncodeToString(m.Sum(nil)[:5])
}

// ParseVERP recognises a VERP address: <local>+<36 characters of a-z, 2-7,
// any case>@<domain>, optionally in angle brackets (as in a Return-Path or an
// SMTP path). It reports false for any other address, such as the plain
// return address, one with a shorter "+extension" or postmaster@<domain>.
// It does not verify the token: see VERPToken.Verify.
func ParseVERP(addr string) (VERPToken, bool) {
	addr = strings.TrimSpace(addr)
	if len(addr) > 2 && addr[0] == '<' && addr[len(addr)-1] == '>' {
		addr = addr[1 : len(addr)-1]
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 || len(addr) > maxAddrLen {
		return VERPToken{}, false
	}
	local, domain := addr[:at], addr[at+1:]
	plus := strings.LastIndexByte(local, '+')
	if plus <= 0 || len(local)-plus-1 != VERPTokenLen {
		return VERPToken{}, false
	}
	token := strings.ToLower(local[plus+1:])
	if strings.Trim(token, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return VERPToken{}, false
	}
	return VERPToken{
		Return: local[:plus] + "@" + domain,
		TestID: token[:events.TestIDLen],
		Hash:   token[events.TestIDLen : events.TestIDLen+verpHashLen],
		mac:    token[events.TestIDLen+verpHashLen:],
	}, true
}

// Verify reports whether the token was made by VERPAddress for its test id,
// site and check with key. The comparison is constant-time. A zero
// VERPToken, or a key shorter than MinSecretLen, never verifies. A token
// does not expire: a caller trusts a bounce only for a test still in flight.
func (t VERPToken) Verify(site, check string, key Key) bool {
	if len(t.mac) != verpMACLen || len(key.Secret) < MinSecretLen {
		return false
	}
	want := VERPHash(site, check) + verpMAC(t.TestID, site, check, key)
	return subtle.ConstantTimeCompare([]byte(t.Hash+t.mac), []byte(want)) == 1
}
