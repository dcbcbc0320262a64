package main

import (
	"strings"
	"testing"

	"github.com/emailscout/emailscout/services/notifier"
)

// TestSetupCredentials: production without Twilio credentials stops with
// an error naming the variables; dev falls back to printing messages, with
// a warning; the auth token never reaches the output.
func TestSetupCredentials(t *testing.T) {
	const sid, token = "AC0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	cases := []struct {
		name     string
		env      map[string]string
		provider string
		errs     []string
		out      []string
	}{
		{"production default without credentials", map[string]string{}, "",
			[]string{"no SMS provider in production", "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID are not set"}, nil},
		{"production with a partial set", map[string]string{"SCOUT_ENV": "production", "TWILIO_ACCOUNT_SID": sid}, "",
			[]string{"the twilio provider needs TWILIO_AUTH_TOKEN and TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID"}, nil},
		{"production with credentials", map[string]string{"TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token, "TWILIO_FROM": "+15555550199"}, "twilio", nil, nil},
		{"production with a malformed sid", map[string]string{"TWILIO_ACCOUNT_SID": "XX1", "TWILIO_AUTH_TOKEN": token, "TWILIO_MESSAGING_SERVICE_SID": "MG0123456789abcdef0123456789abcdef"}, "",
			[]string{`TWILIO_ACCOUNT_SID "XX1" is not AC followed by 32 hex digits`}, nil},
		{"production refuses the log provider", map[string]string{"SCOUT_NOTIFIER_PROVIDER": "log"}, "", []string{"refused with SCOUT_ENV=production"}, nil},
		{"dev without credentials", map[string]string{"SCOUT_ENV": "dev"}, "log", nil, []string{`"level":"WARN"`, "no Twilio credentials in dev"}},
		{"dev with credentials", map[string]string{"SCOUT_ENV": "dev", "TWILIO_ACCOUNT_SID": sid, "TWILIO_AUTH_TOKEN": token, "TWILIO_FROM": "+15555550199"}, "twilio", nil, nil},
		{"webhook", map[string]string{"SCOUT_NOTIFIER_PROVIDER": "webhook", "SCOUT_NOTIFIER_WEBHOOK_URL": "https://hooks.example/T0/B0/secret"}, "webhook", nil, nil},
		{"webhook without url", map[string]string{"SCOUT_NOTIFIER_PROVIDER": "webhook"}, "", []string{"SCOUT_NOTIFIER_WEBHOOK_URL is not set"}, nil},
		{"unknown provider", map[string]string{"SCOUT_NOTIFIER_PROVIDER": "pager"}, "", []string{`SCOUT_NOTIFIER_PROVIDER="pager": must be twilio, log or webhook`}, nil},
		{"unknown env", map[string]string{"SCOUT_ENV": "staging"}, "", []string{`SCOUT_ENV="staging": must be production or dev`}, nil},
		{"bad duration", map[string]string{"SCOUT_NOTIFIER_RETRY_FOR": "soon"}, "", []string{`SCOUT_NOTIFIER_RETRY_FOR="soon"`}, nil},
		{"lease too short", map[string]string{"SCOUT_ENV": "dev", "SCOUT_NOTIFIER_LEASE": "1m"}, "", []string{"SCOUT_NOTIFIER_LEASE=1m0s: must exceed"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			_, p, err := setup(func(k string) string { return tc.env[k] }, &out)
			if len(tc.errs) > 0 {
				if err == nil {
					t.Fatalf("no error; provider %v", p)
				}
				for _, want := range tc.errs {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if strings.Contains(err.Error(), token) {
					t.Error("the error shows the auth token")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Name() != tc.provider {
				t.Errorf("provider %s, want %s", p.Name(), tc.provider)
			}
			for _, want := range tc.out {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output %q lacks %q", out.String(), want)
				}
			}
			if strings.Contains(out.String(), token) {
				t.Error("the output shows the auth token")
			}
		})
	}
}

// TestSecretRedacts: the auth token's type never prints its value.
func TestSecretRedacts(t *testing.T) {
	cfg, _, err := setup(func(k string) string {
		return map[string]string{"SCOUT_ENV": "dev", "TWILIO_AUTH_TOKEN": "fedcba9876543210fedcba9876543210"}[k]
	}, &strings.Builder{})
	if err == nil {
		t.Fatal("a token without an account sid was accepted")
	}
	s := notifier.Secret("fedcba9876543210fedcba9876543210")
	for _, v := range []string{cfg.Twilio.AuthToken.String(), s.String(), s.GoString(), s.LogValue().String()} {
		if strings.Contains(v, "fedcba") || v == "" {
			t.Errorf("redacted form %q", v)
		}
	}
	if s.Reveal() != "fedcba9876543210fedcba9876543210" {
		t.Error("Reveal does not return the value")
	}
}
