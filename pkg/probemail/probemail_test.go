package probemail

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	testKey   = Key{ID: "acme-2026a", Customer: "acme", Secret: Secret(bytes.Repeat([]byte{7}, 32))}
	otherKey  = Key{ID: "globex-1", Customer: "globex", Secret: Secret(bytes.Repeat([]byte{9}, 32))}
	testStart = time.Date(2026, 5, 1, 14, 0, 0, 123_000_000, time.UTC)
	testProbe = Probe{
		KeyID: "acme-2026a", TestID: "abcdefghijklmnopqrstuvwx", CheckID: "acme-roundtrip",
		Site: "eu-west", Attempt: 1, StartedAt: testStart, ReturnTo: "return+eu-west@monitor.example",
	}
	testTo = "webscout@acme.example"
)

func keyring(t *testing.T) *Keyring {
	t.Helper()
	k, err := NewKeyring(testKey, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerify(t *testing.T) {
	value, err := Sign(testProbe, testTo, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(value, "v=1; k=acme-2026a; id=abcdefghijklmnopqrstuvwx; c=acme-roundtrip; s=eu-west; a=1; t=1777644000123; r=return+eu-west@monitor.example; sig=") {
		t.Errorf("header value = %q", value)
	}
	p, key, err := Verify(value, "WebScout@ACME.example", keyring(t))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p != testProbe {
		t.Errorf("probe = %+v, want %+v", p, testProbe)
	}
	if key.Customer != "acme" {
		t.Errorf("key customer = %q", key.Customer)
	}
}

func TestVerifyRejects(t *testing.T) {
	good, err := Sign(testProbe, testTo, testKey)
	if err != nil {
		t.Fatal(err)
	}
	forgedKey := Key{ID: "acme-2026a", Customer: "acme", Secret: Secret(bytes.Repeat([]byte{8}, 32))}
	forged, _ := Sign(testProbe, testTo, forgedKey)
	cases := []struct {
		name  string
		value string
		to    string
		want  error
	}{
		{"empty", "", testTo, ErrNoProbe},
		{"other recipient", good, "someone@acme.example", ErrBadSignature},
		{"wrong secret", forged, testTo, ErrBadSignature},
		{"changed attempt", strings.Replace(good, "a=1;", "a=2;", 1), testTo, ErrBadSignature},
		{"changed start", strings.Replace(good, "t=1777644000123", "t=1777644000124", 1), testTo, ErrBadSignature},
		{"changed return", strings.Replace(good, "r=return+eu-west@", "r=evil@", 1), testTo, ErrBadSignature},
		{"unknown key", strings.Replace(good, "k=acme-2026a", "k=acme-1999", 1), testTo, ErrUnknownKey},
		{"version 2", strings.Replace(good, "v=1", "v=2", 1), testTo, ErrVersion},
		{"missing sig", good[:strings.Index(good, "; sig=")], testTo, ErrMalformed},
		{"duplicate field", good + "; a=1", testTo, ErrMalformed},
		{"short sig", good[:len(good)-4], testTo, ErrMalformed},
		{"garbage", "hello world", testTo, ErrMalformed},
		{"check with dot", strings.Replace(good, "c=acme-roundtrip", "c=acme.x", 1), testTo, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Verify(tc.value, tc.to, keyring(t))
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignRefusesBadFields(t *testing.T) {
	p := testProbe
	p.ReturnTo = "a b@c"
	if _, err := Sign(p, testTo, testKey); !errors.Is(err, ErrMalformed) {
		t.Errorf("return address with space: err = %v", err)
	}
	p = testProbe
	p.KeyID = "other"
	if _, err := Sign(p, testTo, testKey); err == nil {
		t.Error("key id mismatch accepted")
	}
}

func TestKeyringRotation(t *testing.T) {
	spec := "acme:acme-new:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)) +
		"; acme:acme-old:" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)) +
		"\nglobex:globex-1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 16))
	k, err := ParseKeys(spec)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := k.SigningKey("acme")
	if err != nil || sk.ID != "acme-new" {
		t.Fatalf("signing key = %v, %v; want acme-new (first listed)", sk.ID, err)
	}
	old, _ := k.Lookup("acme-old")
	p := testProbe
	p.KeyID = old.ID
	v, err := Sign(p, testTo, old)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Verify(v, testTo, k); err != nil {
		t.Errorf("a probe signed with the old key must still verify: %v", err)
	}
	if _, err := k.SigningKey("initech"); err == nil {
		t.Error("signing key for unknown customer")
	}
	for _, bad := range []string{"", "acme:k1", "acme:k1:!!!", "acme:k1:" + base64.StdEncoding.EncodeToString([]byte("short")),
		"acme:k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)) + ";acme:k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))} {
		if _, err := ParseKeys(bad); !errors.Is(err, ErrKeySpec) {
			t.Errorf("ParseKeys(%q) err = %v, want ErrKeySpec", bad, err)
		}
	}
	if s := Secret([]byte("topsecretvalue!!")).String(); strings.Contains(s, "topsecret") {
		t.Errorf("secret printed: %s", s)
	}
}

func buildProbe(t *testing.T) []byte {
	t.Helper()
	msg, err := Build(testProbe, testTo, testKey, BuildOptions{CheckName: "ACME mail"})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestBuildReflectParse(t *testing.T) {
	msg := buildProbe(t)
	probe, err := ParseReturned(msg)
	if err != nil {
		t.Fatal(err)
	}
	if probe.MatchedBy != MatchHeader || probe.TestID != testProbe.TestID {
		t.Fatalf("probe parse: %+v", probe)
	}
	if probe.Reflected() {
		t.Error("an unreflected probe reports a reflection")
	}
	if len(probe.To) != 1 || probe.To[0] != testTo {
		t.Errorf("To = %v, want [%s]", probe.To, testTo)
	}
	if _, _, err := Verify(probe.HeaderValue, testTo, keyring(t)); err != nil {
		t.Fatalf("built probe does not verify: %v", err)
	}

	at := time.Date(2026, 5, 1, 14, 0, 2, 500_000_000, time.UTC)
	refl, err := Reflect(msg, testProbe, testTo, testTo, at)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ReplaceAll(refl, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("reflection has bare LF line ends")
	}
	r, err := ParseReturned(refl)
	if err != nil {
		t.Fatal(err)
	}
	if r.TestID != testProbe.TestID || r.MatchedBy != MatchHeader {
		t.Errorf("test id %q by %q", r.TestID, r.MatchedBy)
	}
	if r.ReflectedAt == nil || !r.ReflectedAt.Equal(at) {
		t.Errorf("reflected at = %v, want %v", r.ReflectedAt, at)
	}
	if r.AutoSubmitted != "auto-replied" {
		t.Errorf("Auto-Submitted = %q", r.AutoSubmitted)
	}
	if !strings.HasSuffix(r.Subject, " [reflected 2026-05-01T14:00:02.500Z]") {
		t.Errorf("subject = %q", r.Subject)
	}
	if r.ProbeTo != testTo {
		t.Errorf("probe to = %q", r.ProbeTo)
	}
	if _, _, err := Verify(r.HeaderValue, r.ProbeTo, keyring(t)); err != nil {
		t.Errorf("reflection does not verify with X-Scout-Probe-To: %v", err)
	}
	for _, want := range []string{"To: <return+eu-west@monitor.example>", "In-Reply-To: <scout.abcdefghijklmnopqrstuvwx@monitor.example>",
		"Message-Id: <reflected.abcdefghijklmnopqrstuvwx@acme.example>", "From: <webscout@acme.example>"} {
		if !bytes.Contains(refl, []byte(want)) {
			t.Errorf("reflection lacks %q:\n%s", want, refl)
		}
	}
}

func TestStripMboxFrom(t *testing.T) {
	msg := buildProbe(t)
	withFrom := append([]byte("From return+eu-west@monitor.example  Fri May  1 14:00:00 2026\n"), msg...)
	if got := StripMboxFrom(withFrom); !bytes.Equal(got, msg) {
		t.Error("mbox From line not stripped")
	}
	if got := StripMboxFrom(msg); !bytes.Equal(got, msg) {
		t.Error("message without From line changed")
	}
	r, err := ParseReturned(withFrom)
	if err != nil || r.TestID != testProbe.TestID {
		t.Errorf("ParseReturned with mbox line: %v %+v", err, r)
	}
}

// TestCaseC08 is docs/field-cases.md, c08: the test id is recovered from a returned
// probe whose Subject was re-encoded, split mid-character, prefixed or
// whose signed header was lost, in the documented order of trust.
func TestCaseC08(t *testing.T) {
	id := testProbe.TestID
	signed, _ := Sign(testProbe, testTo, testKey)
	b64 := base64.StdEncoding.EncodeToString([]byte("Email Scout probe " + id + " rückweg"))
	cases := []struct {
		name      string
		header    string
		matchedBy string
		subject   string // decoded subject expected, "" to skip
	}{
		{"utf8 char split across folded encoded-words",
			"Subject: =?UTF-8?Q?Probe_" + id + "_r=C3=BCckweg_a_b_c_=C3?=\r\n =?UTF-8?Q?=A9?=\r\n",
			MatchSubject, "Probe " + id + " rückweg a b c é"},
		{"base64 subject", "Subject: =?UTF-8?B?" + b64 + "?=\r\n", MatchSubject, "Email Scout probe " + id + " rückweg"},
		{"external prefix", "Subject: [EXTERNAL] Email Scout probe " + id + " (acme)\r\n", MatchSubject, ""},
		{"spam prefix", "Subject: ***SPAM*** Email Scout probe " + id + "\r\n", MatchSubject, ""},
		{"reply prefixes", "Subject: AW: Re: Email Scout probe " + id + "\r\n", MatchSubject, ""},
		{"in-reply-to beats subject", "Subject: Re: something else\r\nIn-Reply-To: <scout." + id + "@monitor.example>\r\n", MatchInReplyTo, ""},
		{"message-id", "Subject: x\r\nMessage-ID: <reflected." + id + "@acme.example>\r\n", MatchMessageID, ""},
		{"signed header beats everything", "Subject: Email Scout probe zzzzzzzzzzzzzzzzzzzzzzzz\r\nX-Scout-Probe: " + signed + "\r\n", MatchHeader, ""},
		{"signed header folded", "X-Scout-Probe: " + strings.Replace(signed, "; r=", ";\r\n\tr=", 1) + "\r\n", MatchHeader, ""},
		{"signed header RFC 2047 encoded", "X-Scout-Probe: =?us-ascii?Q?" + strings.NewReplacer("=", "=3D", " ", "_").Replace(signed) + "?=\r\n", MatchHeader, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte("From: a@b.example\r\n" + tc.header + "\r\nbody\r\n")
			r, err := ParseReturned(msg)
			if err != nil {
				t.Fatal(err)
			}
			if r.TestID != id || r.MatchedBy != tc.matchedBy {
				t.Errorf("test id %q matched by %q; want %q by %q", r.TestID, r.MatchedBy, id, tc.matchedBy)
			}
			if tc.subject != "" && r.Subject != tc.subject {
				t.Errorf("subject = %q, want %q", r.Subject, tc.subject)
			}
			if tc.matchedBy == MatchHeader {
				if _, _, err := Verify(r.HeaderValue, testTo, keyring(t)); err != nil {
					t.Errorf("header no longer verifies: %v", err)
				}
			}
		})
	}
}

// TestCaseC11 is docs/field-cases.md, c11: the reflector's clock is five hours
// ahead; rtt comes from monitor clocks only, the legs are stored as they are
// and the skew is estimated and flagged.
func TestCaseC11(t *testing.T) {
	started := time.Date(2026, 5, 1, 14, 0, 0, 0, time.UTC)
	received := time.Date(2026, 5, 1, 14, 0, 4, 0, time.UTC)
	r, err := ParseReturned([]byte("Subject: Email Scout probe abcdefghijklmnopqrstuvwx [reflected 2026-05-01T19:00:03Z]\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.ReflectedAt == nil {
		t.Fatal("stamp in the Subject not found")
	}
	rt := Measure(started, received, r.ReflectedAt)
	if rt.RTT != 4*time.Second {
		t.Errorf("rtt = %v, want 4s", rt.RTT)
	}
	if *rt.Outgoing != 5*time.Hour+3*time.Second {
		t.Errorf("outgoing = %v, want 5h0m3s", *rt.Outgoing)
	}
	if *rt.Incoming != -(5*time.Hour - time.Second) {
		t.Errorf("incoming = %v, want -4h59m59s", *rt.Incoming)
	}
	if *rt.Skew != 5*time.Hour+time.Second {
		t.Errorf("skew = %v, want 5h0m1s", *rt.Skew)
	}
	if !rt.SkewSuspect {
		t.Error("an impossible leg must flag the skew")
	}
	normal := Measure(started, received, ptr(started.Add(2500*time.Millisecond)))
	if normal.SkewSuspect || *normal.Skew != time.Second/2 {
		t.Errorf("plausible legs: %+v skew %v", normal, *normal.Skew)
	}
	if none := Measure(started, received, nil); none.Outgoing != nil || none.RTT != 4*time.Second {
		t.Errorf("no stamp: %+v", none)
	}
}

func ptr[T any](v T) *T { return &v }

func TestParseReturnedLimits(t *testing.T) {
	if _, err := ParseReturned(make([]byte, MaxMessageBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	r, err := ParseReturned([]byte("Subject: hello\r\n\r\nno probe here\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.TestID != "" || !errors.Is(r.HeaderErr, ErrNoProbe) {
		t.Errorf("foreign mail matched: %+v", r)
	}
	if _, err := ReadMessage(bytes.NewReader(make([]byte, MaxMessageBytes+1))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadMessage oversized: %v", err)
	}
}

func TestKeysOf(t *testing.T) {
	k, err := ParseKeys("acme:a2:" + strings.Repeat("QUJD", 11) + ";globex:g1:" + strings.Repeat("REVG", 11) + ";acme:a1:" + strings.Repeat("R0hJ", 11))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, key := range k.KeysOf("acme") {
		ids = append(ids, key.ID)
	}
	if strings.Join(ids, ",") != "a2,a1" || len(k.KeysOf("nobody")) != 0 {
		t.Errorf("KeysOf(acme) = %v, want a2,a1 (the signing key first)", ids)
	}
}
