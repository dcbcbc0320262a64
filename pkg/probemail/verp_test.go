package probemail

import (
	"errors"
	"strings"
	"testing"
)

const (
	verpReturn = "scout@eu-west.return.example"
	verpTestID = "abcdefghijklmnopqrstuvwx"
	verpSite   = "eu-west"
	verpCheck  = "acme-roundtrip"
)

func verpAddress(t *testing.T) string {
	t.Helper()
	addr, err := VERPAddress(verpReturn, verpTestID, verpSite, verpCheck, testKey)
	if err != nil {
		t.Fatalf("VERPAddress: %v", err)
	}
	return addr
}

func TestVERPRoundTrip(t *testing.T) {
	addr := verpAddress(t)
	local, domain, _ := strings.Cut(addr, "@")
	if domain != "eu-west.return.example" {
		t.Errorf("domain = %q", domain)
	}
	if !strings.HasPrefix(local, "scout+"+verpTestID) || len(local) != len("scout+")+VERPTokenLen {
		t.Errorf("local part = %q, want scout+<%d-character token starting with the test id>", local, VERPTokenLen)
	}
	if strings.Trim(local[len("scout+"):], "abcdefghijklmnopqrstuvwxyz234567") != "" {
		t.Errorf("token %q has characters outside lowercase base32", local)
	}
	again := verpAddress(t)
	if again != addr {
		t.Errorf("VERPAddress is not deterministic: %q then %q", addr, again)
	}
	for _, in := range []string{addr, "<" + addr + ">", strings.ToUpper(addr), " " + addr + " "} {
		tok, ok := ParseVERP(in)
		if !ok {
			t.Fatalf("ParseVERP(%q) = false", in)
		}
		if tok.TestID != verpTestID || tok.Hash != VERPHash(verpSite, verpCheck) {
			t.Errorf("ParseVERP(%q) = %+v", in, tok)
		}
		if !strings.EqualFold(tok.Return, verpReturn) {
			t.Errorf("ParseVERP(%q).Return = %q, want %q", in, tok.Return, verpReturn)
		}
		if !tok.Verify(verpSite, verpCheck, testKey) {
			t.Errorf("ParseVERP(%q) does not verify", in)
		}
	}
}

// A return address that already has a "+extension" (one per site) keeps it.
func TestVERPReturnWithExtension(t *testing.T) {
	addr, err := VERPAddress("scout-return+eu-west@monitor.example", verpTestID, verpSite, verpCheck, testKey)
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := ParseVERP(addr)
	if !ok || tok.Return != "scout-return+eu-west@monitor.example" || !tok.Verify(verpSite, verpCheck, testKey) {
		t.Errorf("ParseVERP(%q) = %+v, %v", addr, tok, ok)
	}
}

func TestVERPVerifyRejects(t *testing.T) {
	addr := verpAddress(t)
	local, domain, _ := strings.Cut(addr, "@")
	token := local[len("scout+"):]
	// flip returns s with the character at i replaced by another of the alphabet.
	flip := func(s string, i int) string {
		c := byte('a')
		if s[i] == 'a' {
			c = 'b'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	cases := []struct {
		name  string
		addr  string
		site  string
		check string
		key   Key
	}{
		{"wrong key", addr, verpSite, verpCheck, otherKey},
		{"wrong check", addr, verpSite, "acme-smtp", testKey},
		{"wrong site", addr, "us-east", verpCheck, testKey},
		{"changed test id", "scout+" + flip(token, 3) + "@" + domain, verpSite, verpCheck, testKey},
		{"changed hash", "scout+" + flip(token, 25) + "@" + domain, verpSite, verpCheck, testKey},
		{"changed mac", "scout+" + flip(token, VERPTokenLen-1) + "@" + domain, verpSite, verpCheck, testKey},
		{"short key", addr, verpSite, verpCheck, Key{ID: "x", Secret: testKey.Secret[:8]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, ok := ParseVERP(tc.addr)
			if !ok {
				t.Fatalf("ParseVERP(%q) = false, want a token that does not verify", tc.addr)
			}
			if tok.Verify(tc.site, tc.check, tc.key) {
				t.Errorf("%q verified for site %q, check %q, key %q", tc.addr, tc.site, tc.check, tc.key.ID)
			}
		})
	}
	if (VERPToken{}).Verify(verpSite, verpCheck, testKey) {
		t.Error("zero VERPToken verified")
	}
}

func TestParseVERPRejects(t *testing.T) {
	addr := verpAddress(t)
	local, domain, _ := strings.Cut(addr, "@")
	for _, in := range []string{
		"",
		verpReturn,
		"scout-return+eu-west@monitor.example",
		"postmaster@eu-west.return.example",
		"MAILER-DAEMON@eu-west.return.example",
		local[:len(local)-1] + "@" + domain,        // truncated token
		local + "a@" + domain,                      // one character too many
		strings.Replace(addr, "+", "-", 1),         // no '+'
		local[:len(local)-1] + "1@" + domain,       // '1' is not base32
		local[:len(local)-1] + "=@" + domain,       // nor is '='
		local + "@",                                // no domain
		local,                                      // no '@'
		"+" + local[len("scout+"):] + "@" + domain, // nothing before the '+'
		strings.Repeat("a", 250) + "+" + local[6:] + "@x.", // over 254 octets
	} {
		if tok, ok := ParseVERP(in); ok {
			t.Errorf("ParseVERP(%q) = %+v, true; want false", in, tok)
		}
	}
}

func TestVERPAddressRefuses(t *testing.T) {
	long27 := strings.Repeat("s", 27)
	if _, err := VERPAddress(long27+"@x.example", verpTestID, verpSite, verpCheck, testKey); err != nil {
		t.Errorf("27-octet local part: %v (64 - 37 = 27 fit)", err)
	}
	cases := []struct {
		name                 string
		ret, id, site, check string
		key                  Key
	}{
		{"local part over 64 octets", long27 + "s@x.example", verpTestID, verpSite, verpCheck, testKey},
		{"not an address", "scout", verpTestID, verpSite, verpCheck, testKey},
		{"display name", "Scout <scout@x.example>", verpTestID, verpSite, verpCheck, testKey},
		{"short test id", verpReturn, "abc", verpSite, verpCheck, testKey},
		{"upper-case test id", verpReturn, strings.ToUpper(verpTestID), verpSite, verpCheck, testKey},
		{"test id with 1", verpReturn, "abcdefghijklmnopqrstuvw1", verpSite, verpCheck, testKey},
		{"bad site", verpReturn, verpTestID, "eu.west", verpCheck, testKey},
		{"empty check", verpReturn, verpTestID, verpSite, "", testKey},
		{"short secret", verpReturn, verpTestID, verpSite, verpCheck, Key{ID: "k", Secret: Secret("short")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, err := VERPAddress(tc.ret, tc.id, tc.site, tc.check, tc.key)
			if !errors.Is(err, ErrVERP) {
				t.Errorf("VERPAddress = %q, %v; want an error wrapping ErrVERP", addr, err)
			}
		})
	}
}

// The format is shared by senders and receivers of different releases: the
// token for fixed inputs must not change. The golden value was computed
// independently (Python's hashlib, hmac and base64).
func TestVERPGolden(t *testing.T) {
	const want = "scout+abcdefghijklmnopqrstuvwx6e2ic7lpguvs@eu-west.return.example"
	if got := verpAddress(t); got != want {
		t.Errorf("VERPAddress = %q, want %q", got, want)
	}
	if got := VERPHash(verpSite, verpCheck); got != "6e2i" {
		t.Errorf("VERPHash = %q, want 6e2i", got)
	}
	// The separator keeps site and check apart: ("ab", "c") is not ("a", "bc").
	if VERPHash("ab", "c") == VERPHash("a", "bc") && VERPHash("abc", "d") == VERPHash("a", "bcd") {
		t.Error("VERPHash does not separate site from check")
	}
}
