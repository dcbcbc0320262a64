package checktarget

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/probe"
)

func oauthCheck(o checks.OAuth) *checks.Check {
	return &checks.Check{ID: "contoso-imap", Kind: "imap", Service: &checks.Service{Host: "outlook.office365.com", Port: 993,
		TLS: checks.TLSImplicit, Username: "webscout@contoso.com", OAuth: &o}}
}

var microsoft = checks.OAuth{Provider: checks.OAuthMicrosoft, Tenant: "contoso.onmicrosoft.com", ClientID: "app",
	ClientSecretEnv: "CONTOSO_CLIENT_SECRET"}

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestFromCheckOAuth(t *testing.T) {
	tg, err := FromCheck(oauthCheck(microsoft), env(map[string]string{"CONTOSO_CLIENT_SECRET": "s3cret"}))
	if err != nil || tg.Auth == nil || tg.Password != "" || tg.Username != "webscout@contoso.com" {
		t.Fatalf("target %+v, err %v", tg, err)
	}
	if strings.Contains(tg.LogValue().String(), "s3cret") {
		t.Error("the target logs the secret")
	}

	_, err = FromCheck(oauthCheck(microsoft), env(nil))
	var missing *probe.MissingPasswordError
	if !errors.As(err, &missing) || probe.ClassOf(err) != probe.ClassNoPassword ||
		err.Error() != `check "contoso-imap": oauth.client_secret_env: environment variable CONTOSO_CLIENT_SECRET is not set or empty` {
		t.Errorf("err %v (class %q), want a missing variable naming the check and field", err, probe.ClassOf(err))
	}

	google := checks.OAuth{Provider: checks.OAuthGoogle, ServiceAccountFileEnv: "SA_FILE", Subject: "webscout@example.com"}
	broken := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(broken, []byte(`{"client_email":"x@y.iam.gserviceaccount.com","private_key":"not a key"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = FromCheck(oauthCheck(google), env(map[string]string{"SA_FILE": broken}))
	if probe.ClassOf(err) != probe.ClassCredentials || probe.StatusOf(probe.ClassOf(err)) != "monitor_error" || !strings.Contains(err.Error(), "private_key") ||
		strings.Contains(err.Error(), "not a key") {
		t.Errorf("err %v (class %q), want credentials naming the key, never quoting it", err, probe.ClassOf(err))
	}
}

// Logins builds a check's login once and keeps it while the block, the
// username and the secret stay the same.
func TestLoginsKeepOneLoginPerCheck(t *testing.T) {
	l := NewLogins(nil, nil)
	vars := map[string]string{"CONTOSO_CLIENT_SECRET": "one"}
	a, err := l.Target(oauthCheck(microsoft), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := l.Target(oauthCheck(microsoft), env(vars))
	if a.Auth != b.Auth {
		t.Error("a second run built a new login")
	}
	vars["CONTOSO_CLIENT_SECRET"] = "two"
	c, _ := l.Target(oauthCheck(microsoft), env(vars))
	other := microsoft
	other.Mechanism = "oauthbearer"
	d, _ := l.Target(oauthCheck(other), env(vars))
	if c.Auth == b.Auth || d.Auth == c.Auth {
		t.Error("a changed secret or block kept the old login")
	}
}

func TestFromCheck(t *testing.T) {
	f, err := checks.Parse("checks.yaml", []byte(`
sites: [eu-west]
checks:
  - id: acme-imaps
    customer: acme
    kind: imap
    host: imap.acme.example
    tls: implicit
    username: webscout
    password_env: ACME_IMAP_PASSWORD
    cert_warning_days: 21
  - id: acme-mx
    customer: acme
    kind: smtp
    host: mx.acme.example
`))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ACME_IMAP_PASSWORD": "s3cret", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	tg, err := FromCheck(f.Lookup("acme-imaps"), lookup)
	if err != nil {
		t.Fatal(err)
	}
	if tg.Host != "imap.acme.example" || tg.Port != 993 || tg.TLS != checks.TLSImplicit ||
		tg.Username != "webscout" || tg.Password != "s3cret" || tg.CertWarningDays != 21 {
		t.Errorf("target = %+v", tg)
	}
	tg, err = FromCheck(f.Lookup("acme-mx"), lookup)
	if err != nil || tg.Port != 25 || tg.TLS != checks.TLSStartTLS || tg.Password != "" {
		t.Errorf("target = %+v, %v", tg, err)
	}

	for _, name := range []string{"MISSING", "EMPTY"} {
		c := *f.Lookup("acme-imaps")
		c.Service.PasswordEnv = name
		_, err := FromCheck(&c, lookup)
		if err == nil || !strings.Contains(err.Error(), `check "acme-imaps"`) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v, want one naming the check and the variable", name, err)
		}
		var missing *probe.MissingPasswordError
		if !errors.As(err, &missing) || missing.Variable != name || missing.Check != "acme-imaps" {
			t.Errorf("%s: err = %#v, want a *probe.MissingPasswordError", name, err)
		}
	}
	c := *f.Lookup("acme-mx")
	c.Service.Port = 0
	var missing *probe.MissingPasswordError
	if _, err := FromCheck(&c, lookup); err == nil || errors.As(err, &missing) {
		t.Errorf("invalid port: err = %v, want a target error that is not a missing password", err)
	}
}
