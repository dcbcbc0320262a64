package checks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestLoadGood(t *testing.T) {
	f, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := len(f.Checks); got != 2 {
		t.Fatalf("checks = %d, want 2", got)
	}
	acme := f.Lookup("acme-roundtrip")
	if acme == nil {
		t.Fatal("acme-roundtrip not found")
	}
	want := Settings{Interval: 20 * time.Minute, Timeout: 10 * time.Minute, Slow: 2 * time.Minute,
		RetryDelay: 45 * time.Second, Retries: 1, Quorum: 2}
	if acme.Settings != want {
		t.Errorf("acme settings = %+v, want the built-in defaults with the file's retry_delay %+v", acme.Settings, want)
	}
	if acme.Name != "acme-roundtrip" {
		t.Errorf("name defaults to id, got %q", acme.Name)
	}
	if strings.Join(acme.Sites, ",") != "eu-west,us-east" {
		t.Errorf("sites default to the file's, got %v", acme.Sites)
	}
	if acme.Line != 6 {
		t.Errorf("line = %d, want 6", acme.Line)
	}
	g := f.Lookup("globex-fast")
	if g.Interval != 10*time.Minute || g.Timeout != 5*time.Minute || g.Slow != time.Minute || g.Retries != 2 {
		t.Errorf("globex overrides not applied: %+v", g.Settings)
	}
	if g.Quorum != 3 || g.EffectiveQuorum() != 1 {
		t.Errorf("quorum %d effective %d, want 3 capped at 1 site", g.Quorum, g.EffectiveQuorum())
	}
	if got := f.ForSite("us-east"); len(got) != 1 || got[0].ID != "acme-roundtrip" {
		t.Errorf("ForSite(us-east) = %v", got)
	}
	if got := f.AllSites(); strings.Join(got, ",") != "eu-west,us-east" {
		t.Errorf("AllSites = %v", got)
	}
}

// TestLoadErrors loads every testdata/*.yaml that has a .err file beside it
// and compares the reported problems, one per line, with the file.
func TestLoadErrors(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.err")
	if len(files) == 0 {
		t.Fatal("no testdata/*.err files")
	}
	for _, errFile := range files {
		name := strings.TrimSuffix(filepath.Base(errFile), ".err")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(errFile)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join("testdata", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(name+".yaml", data)
			if err == nil {
				t.Fatal("Parse succeeded, want errors")
			}
			if got := err.Error() + "\n"; got != string(want) {
				t.Errorf("errors:\n%s\nwant:\n%s", got, want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("no *Error in %T", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want os.ErrNotExist wrapped", err)
	}
}

func TestLoadService(t *testing.T) {
	f, err := Load("testdata/service.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	cases := []struct {
		id       string
		want     Service
		greeting string // ExpectGreeting source; "" for none
		settings Settings
	}{
		{"acme-mx", Service{Host: "mx.acme.example", Port: 25, TLS: TLSStartTLS, CertWarningDays: 14}, "", DefaultService},
		{"acme-submission", Service{Host: "smtp.acme.example", Port: 587, TLS: TLSStartTLS,
			Username: "webscout@acme.example", PasswordEnv: "ACME_SMTP_PASSWORD", CertWarningDays: 30},
			`^smtp\.acme\.example ESMTP`,
			Settings{Interval: 2 * time.Minute, Timeout: 20 * time.Second, Slow: 5 * time.Second,
				RetryDelay: 30 * time.Second, Retries: 1, Quorum: 2}},
		{"acme-imaps", Service{Host: "imap.acme.example", Port: 993, TLS: TLSImplicit,
			Username: "webscout", PasswordEnv: "ACME_IMAP_PASSWORD", CertWarningDays: 14}, "", DefaultService},
		{"acme-imap-plain", Service{Host: "192.0.2.10", Port: 143, TLS: TLSNone, CertWarningDays: 14}, "", DefaultService},
		{"acme-pop3", Service{Host: "2001:db8::25", Port: 110, TLS: TLSStartTLS, CertWarningDays: 14}, "",
			Settings{Interval: 5 * time.Minute, Timeout: 30 * time.Second, Slow: 10 * time.Second,
				RetryDelay: 30 * time.Second, Retries: 2, Quorum: 1}},
		{"acme-pop3s", Service{Host: "pop.acme.example.", Port: 995, TLS: TLSImplicit, CertWarningDays: 0}, "", DefaultService},
		{"acme-smtps", Service{Host: "smtp.acme.example", Port: 465, TLS: TLSImplicit, CertWarningDays: 14}, "", DefaultService},
	}
	if len(f.Checks) != len(cases) {
		t.Fatalf("checks = %d, want %d", len(f.Checks), len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			c := f.Lookup(tc.id)
			if c == nil {
				t.Fatal("not found")
			}
			if c.Service == nil {
				t.Fatal("no service")
			}
			got := *c.Service
			re := got.ExpectGreeting
			got.ExpectGreeting = nil
			if got != tc.want {
				t.Errorf("service = %+v\nwant      %+v", got, tc.want)
			}
			switch {
			case tc.greeting == "" && re != nil:
				t.Errorf("expect_greeting = %q, want none", re)
			case tc.greeting != "" && (re == nil || re.String() != tc.greeting):
				t.Errorf("expect_greeting = %v, want %q", re, tc.greeting)
			}
			if c.Settings != tc.settings {
				t.Errorf("settings = %+v, want %+v", c.Settings, tc.settings)
			}
			if c.Target != "" {
				t.Errorf("target = %q, want empty for a service check", c.Target)
			}
		})
	}
	if got := f.Lookup("acme-pop3").Where(); got != "[2001:db8::25]:110" {
		t.Errorf("Where = %q, want [2001:db8::25]:110", got)
	}
	if re := f.Lookup("acme-submission").Service.ExpectGreeting; !re.MatchString("smtp.acme.example ESMTP Postfix") {
		t.Errorf("expect_greeting %v does not match the server's greeting", re)
	}
}

func TestDefaultPort(t *testing.T) {
	cases := []struct {
		kind, tls string
		want      int
	}{
		{"smtp", TLSNone, 25}, {"smtp", TLSStartTLS, 25}, {"smtp", TLSImplicit, 465},
		{"imap", TLSNone, 143}, {"imap", TLSStartTLS, 143}, {"imap", TLSImplicit, 993},
		{"pop3", TLSNone, 110}, {"pop3", TLSStartTLS, 110}, {"pop3", TLSImplicit, 995},
		{"roundtrip", TLSStartTLS, 0},
	}
	for _, tc := range cases {
		t.Run(tc.kind+"/"+tc.tls, func(t *testing.T) {
			if got := DefaultPort(tc.kind, tc.tls); got != tc.want {
				t.Errorf("DefaultPort = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	f, err := Parse("w.yaml", []byte(`sites: [a, b]
checks:
  - id: lonely
    customer: acme
    kind: roundtrip
    target: p@acme.example
    quorum: 3
    interval: 5m
  - id: fine
    customer: acme
    kind: roundtrip
    target: q@acme.example
    contacts: [{name: Ops, phone: "+15555550100"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range f.Warnings {
		got = append(got, w.Error())
	}
	want := []string{
		`w.yaml:7: check "lonely": quorum: 3 is capped at the check's 2 site(s): 2 must agree`,
		`w.yaml:3: check "lonely": contacts: none: incidents are recorded and published, but nobody is sent a message`,
		`w.yaml:8: check "lonely": interval: 5m0s is shorter than timeout 10m0s: attempts of consecutive slots overlap`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestContactPhonesNormalised: numbers written with spaces, brackets or
// the national trunk prefix load in E.164 form, the form the notifier
// sends to and keys its receipts by.
func TestContactPhonesNormalised(t *testing.T) {
	data, err := os.ReadFile("testdata/phones.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Keep only the two good contacts (the first two list items).
	good, _, _ := strings.Cut(string(data), "      - name: Missing digit")
	f, err := Parse("phones.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range f.Lookup("phones").Contacts {
		got = append(got, c.Phone)
	}
	if want := "+442079460018,+15555550100"; strings.Join(got, ",") != want {
		t.Errorf("phones = %v, want %s", got, want)
	}
}

func TestPhoneNumber(t *testing.T) {
	for in, want := range map[string]string{
		"+15555550100":        "+15555550100",
		"+49 30 1234567":      "+49301234567",
		"+33 6 12 34 56 78":   "+33612345678",
		"+1.555.555.0100":     "+15555550100",
		"+44 (0)7911 123 456": "+447911123456",
	} {
		if got, err := PhoneNumber(in); err != nil || got != want {
			t.Errorf("PhoneNumber(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// "+8110000000000000" was found by FuzzPhoneNumber: possible for
	// libphonenumber, but 16 digits, more than E.164 allows.
	for _, in := range []string{"", "15555550100", "+1555555", "+123456789012345678", "+4420123", "+0123456", "+8110000000000000"} {
		if got, err := PhoneNumber(in); err == nil {
			t.Errorf("PhoneNumber(%q) = %q, want an error", in, got)
		}
	}
}

func TestLive(t *testing.T) {
	a, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load("testdata/service.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var src Source = a
	if src.Current() != a || src.Changed() != nil {
		t.Fatal("a *File is its own unchanging Source")
	}
	l := NewLive(a)
	ch := l.Changed()
	select {
	case <-ch:
		t.Fatal("Changed ready before Set")
	default:
	}
	l.Set(b)
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by Set")
	}
	if l.Current() != b {
		t.Error("Current is not the file Set")
	}
	select {
	case <-l.Changed():
		t.Fatal("a new Changed is ready before the next Set")
	default:
	}
}

// TestDetectionBound: the defaults' 40m30s (docs/evaluation.md, section
// 5), and the bound's parts.
func TestDetectionBound(t *testing.T) {
	f, err := Parse("checks.yaml", []byte(`
sites: [a]
checks:
  - {id: defaults, customer: acme, kind: roundtrip, target: p@acme.example}
  - {id: no-retry, customer: acme, kind: roundtrip, target: p@acme.example, retries: 0}
  - {id: three, customer: acme, kind: roundtrip, target: p@acme.example, interval: 5m, timeout: 2m, slow: 1m, retry_delay: 10s, retries: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]time.Duration{
		"defaults": 40*time.Minute + 30*time.Second,
		"no-retry": 30 * time.Minute,
		"three":    5*time.Minute + 2*time.Minute + 3*(10*time.Second+2*time.Minute),
	} {
		if got := f.Lookup(id).DetectionBound(); got != want {
			t.Errorf("%s: DetectionBound() = %v, want %v", id, got, want)
		}
	}
}

// TestReturnPath: a round trip's "return" is reflector (the default) or
// forward; anything else, or a return on a service check, is an error
// naming the file, line, check and field.
func TestReturnPath(t *testing.T) {
	f, err := Parse("checks.yaml", []byte(`
sites: [a]
checks:
  - {id: reflected, customer: acme, kind: roundtrip, target: p@acme.example}
  - {id: forwarded, customer: acme, kind: roundtrip, target: q@acme.example, return: forward}
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Lookup("reflected").Return != ReturnReflector || f.Lookup("forwarded").Return != ReturnForward {
		t.Errorf("returns %q %q", f.Lookup("reflected").Return, f.Lookup("forwarded").Return)
	}
	_, err = Parse("checks.yaml", []byte(`
sites: [a]
checks:
  - {id: bad, customer: acme, kind: roundtrip, target: p@acme.example, return: pigeon}
  - {id: svc, customer: acme, kind: smtp, host: mx.acme.example, return: forward}
`))
	for _, want := range []string{`checks.yaml:4: check "bad": return: "pigeon" is not reflector or forward`, `checks.yaml:5: check "svc": return: is only for roundtrip checks`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}

func TestLoadServiceOAuth(t *testing.T) {
	f, err := Load("testdata/service-oauth.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := map[string]OAuth{
		"contoso-imap": {Provider: OAuthMicrosoft, Tenant: "contoso.onmicrosoft.com", ClientID: "11111111-2222-3333-4444-555555555555",
			ClientSecretEnv: "CONTOSO_CLIENT_SECRET"},
		"contoso-pop3": {Provider: OAuthMicrosoft, Tenant: "contoso.onmicrosoft.com", ClientID: "11111111-2222-3333-4444-555555555555",
			ClientSecretEnv: "CONTOSO_CLIENT_SECRET", Mechanism: "oauthbearer"},
		"example-gmail": {Provider: OAuthGoogle, ServiceAccountFileEnv: "EXAMPLE_SA_FILE", Subject: "webscout@example.com"},
	}
	for id, w := range want {
		c := f.Lookup(id)
		if c == nil || c.Service.OAuth == nil {
			t.Fatalf("%s: no oauth block", id)
		}
		got := *c.Service.OAuth
		if got.Provider != w.Provider || got.Tenant != w.Tenant || got.ClientID != w.ClientID || got.ClientSecretEnv != w.ClientSecretEnv ||
			got.ServiceAccountFileEnv != w.ServiceAccountFileEnv || got.Subject != w.Subject || got.Mechanism != w.Mechanism || len(got.Scopes) != 0 {
			t.Errorf("%s: %+v, want %+v", id, got, w)
		}
		if c.Service.PasswordEnv != "" || c.Service.Username == "" {
			t.Errorf("%s: username %q password_env %q", id, c.Service.Username, c.Service.PasswordEnv)
		}
	}
	// A secret pasted where the variable's name goes is never echoed.
	data, _ := os.ReadFile("testdata/service-oauth-invalid.yaml")
	_, err = Parse("service-oauth-invalid.yaml", data)
	if err == nil || strings.Contains(err.Error(), "Xy8Q~secret.value") {
		t.Errorf("err %v: want errors that do not show the pasted secret", err)
	}
}

// TestParseSharesWhatChecksRepeat: a file of many checks holds a customer's
// contact list, its phone numbers and its name once, and a round-trip
// check carries no service block (docs/capacity.md, "Memory"); what differs
// stays apart, and a bad phone is reported at every check that has it.
func TestParseSharesWhatChecksRepeat(t *testing.T) {
	f, err := Parse("many.yaml", []byte(`
sites: [eu-west]
checks:
  - {id: a, customer: acme, kind: roundtrip, target: a@acme.example, contacts: [{name: Ops, phone: "+1 555 555 0100"}]}
  - {id: b, customer: acme, kind: roundtrip, target: b@acme.example, contacts: [{name: Ops, phone: "+15555550100"}]}
  - {id: c, customer: acme, kind: roundtrip, target: c@acme.example, contacts: [{name: Night, phone: "+15555550100"}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := f.Lookup("a"), f.Lookup("b"), f.Lookup("c")
	if &a.Contacts[0] != &b.Contacts[0] {
		t.Error("two checks with the same contact list (after E.164) hold two copies")
	}
	if &a.Contacts[0] == &c.Contacts[0] || c.Contacts[0].Name != "Night" || c.Contacts[0].Phone != "+15555550100" {
		t.Errorf("a different contact list was shared: %+v", c.Contacts)
	}
	if unsafe.StringData(a.Customer) != unsafe.StringData(c.Customer) {
		t.Error("the customer's name is held once per check")
	}
	if a.Service != nil {
		t.Errorf("a round-trip check has a service block: %+v", a.Service)
	}

	_, err = Parse("bad.yaml", []byte(`
sites: [eu-west]
checks:
  - {id: a, customer: acme, kind: roundtrip, target: a@acme.example, contacts: [{name: Ops, phone: "555"}]}
  - {id: b, customer: acme, kind: roundtrip, target: b@acme.example, contacts: [{name: Ops, phone: "555"}]}
`))
	for _, id := range []string{`check "a": contacts[0].phone`, `check "b": contacts[0].phone`} {
		if err == nil || !strings.Contains(err.Error(), id) {
			t.Errorf("error %v does not name %s", err, id)
		}
	}
}

// BenchmarkParseLiveHeap reports the live heap a parsed check file keeps
// per check (live-B/check), for a file like scout scale's: round-trip
// checks of 100 customers with one contact each.
func BenchmarkParseLiveHeap(b *testing.B) {
	const n = 20000
	var spec strings.Builder
	spec.WriteString("sites: [site-0, site-1, site-2]\nchecks:\n")
	for c := range n {
		fmt.Fprintf(&spec, "  - {id: scale-%d, customer: cust-%d, kind: roundtrip, target: probe%d@cust-%d.test, contacts: [{name: on-call, phone: \"+15555550100\"}]}\n", c, c%100, c, c%100)
	}
	data := []byte(spec.String())
	var live float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f, err := Parse("scale.yaml", data)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		live = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(f)
	}
	b.ReportMetric(live, "live-B/check")
}
