package probemail

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// FuzzParseHeader: any string either fails with a classified error or
// parses into a probe that signs and parses back to the same fields.
func FuzzParseHeader(f *testing.F) {
	good, _ := Sign(testProbe, testTo, testKey)
	f.Add(good)
	f.Add("v=1; k=a; id=b; c=c; s=d; a=1; t=1; r=x@y; sig=AAAA")
	f.Add("=?utf-8?q?v=3D1?=")
	f.Add("")
	f.Fuzz(func(t *testing.T, value string) {
		p, _, err := ParseHeader(value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrNoProbe) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		key := Key{ID: p.KeyID, Customer: "c", Secret: testKey.Secret}
		again, err := Sign(p, testTo, key)
		if err != nil {
			t.Fatalf("parsed probe %+v does not sign: %v", p, err)
		}
		p2, _, err := Verify(again, testTo, mapLookup{key.ID: key})
		if err != nil || p2 != p {
			t.Fatalf("re-signed probe differs: %+v vs %+v (%v)", p2, p, err)
		}
	})
}

type mapLookup map[string]Key

func (m mapLookup) Lookup(id string) (Key, bool) { k, ok := m[id]; return k, ok }

// FuzzParseReturned: any message up to MaxMessageBytes parses without
// panicking, and a header match always names the header's test id.
func FuzzParseReturned(f *testing.F) {
	msg, _ := Build(testProbe, testTo, testKey, BuildOptions{})
	f.Add(msg)
	refl, _ := Reflect(msg, testProbe, testTo, testTo, time.Date(2026, 5, 1, 14, 0, 2, 0, time.UTC))
	f.Add(refl)
	f.Add([]byte("From x\nSubject: =?UTF-8?Q?Probe_abcdefghijklmnopqrstuvwx_=C3?=\n =?UTF-8?Q?=A9?=\n\n"))
	f.Add([]byte("In-Reply-To: <scout.abc@x>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseReturned(data)
		if err != nil {
			return
		}
		if r.MatchedBy == MatchHeader && (r.HeaderErr != nil || r.TestID != r.Probe.TestID) {
			t.Fatalf("header match inconsistent: %+v", r)
		}
		if r.TestID != "" && r.MatchedBy == "" {
			t.Fatalf("test id without a match source: %+v", r)
		}
	})
}

// FuzzParseVERP: any string either is not VERP or parses into a token whose
// parts have the documented shapes; a parsed token never verifies for a
// key that did not make it, and VERPAddress of what was parsed (lower case)
// parses back to the same token.
func FuzzParseVERP(f *testing.F) {
	good, _ := VERPAddress("scout@eu-west.return.example", "abcdefghijklmnopqrstuvwx", "eu-west", "acme-roundtrip", testKey)
	f.Add(good)
	f.Add("<" + strings.ToUpper(good) + ">")
	f.Add("scout-return+eu-west@monitor.example")
	f.Add("postmaster@eu-west.return.example")
	f.Add("+abcdefghijklmnopqrstuvwxyzabcdefghij@")
	f.Fuzz(func(t *testing.T, addr string) {
		tok, ok := ParseVERP(addr)
		if !ok {
			if tok != (VERPToken{}) {
				t.Fatalf("not VERP but a non-zero token %+v", tok)
			}
			return
		}
		if !events.ValidTestID(tok.TestID) || len(tok.Hash) != 4 || !strings.Contains(tok.Return, "@") {
			t.Fatalf("ParseVERP(%q) = %+v: malformed parts", addr, tok)
		}
		if tok.Verify("eu-west", "acme-roundtrip", otherKey) {
			t.Fatalf("ParseVERP(%q) verified with a key that signs nothing here", addr)
		}
		again, err := VERPAddress(strings.ToLower(tok.Return), tok.TestID, "eu-west", "acme-roundtrip", testKey)
		if err != nil {
			return // the base may be no plain address (quotes, spaces, too long)
		}
		tok2, ok := ParseVERP(again)
		if !ok || tok2.TestID != tok.TestID || !tok2.Verify("eu-west", "acme-roundtrip", testKey) {
			t.Fatalf("rebuilt %q parses to %+v, %v", again, tok2, ok)
		}
	})
}
