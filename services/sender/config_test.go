package sender_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/services/sender"
	"github.com/prometheus/client_golang/prometheus"
)

func loadConfig(vars map[string]string) (sender.Config, error) {
	return platform.LoadEnv[sender.Config](func(k string) string { return vars[k] })
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(map[string]string{
		"SCOUT_SITE": "eu-west", "SCOUT_RETURN_ADDRESS": returnAddr, "SCOUT_PROBE_KEYS": keySpec,
		"SCOUT_RELAY_ADDR": "relay.monitor.example:587",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := sender.Config{
		Site: "eu-west", ReturnAddress: returnAddr, VERP: true, ProbeKeys: keySpec, Delivery: "relay",
		RelayAddr: "relay.monitor.example:587", RelayTLS: "starttls", MXPort: 25,
		SubmitTimeout: 60 * time.Second, Workers: 8, RelaySessionMessages: 100,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config %+v, want %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
	keys, err := cfg.Keyring()
	if err != nil || len(keys.IDs()) != 2 {
		t.Errorf("keyring %v, %v", keys, err)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	if _, err := loadConfig(map[string]string{}); err == nil ||
		!strings.Contains(err.Error(), "SCOUT_SITE") || !strings.Contains(err.Error(), "SCOUT_RETURN_ADDRESS") || !strings.Contains(err.Error(), "SCOUT_PROBE_KEYS") {
		t.Errorf("missing variables: %v", err)
	}
	if _, err := loadConfig(map[string]string{"SCOUT_SITE": "a", "SCOUT_RETURN_ADDRESS": "a@b.example", "SCOUT_PROBE_KEYS": "x", "SCOUT_SUBMIT_TIMEOUT": "soon"}); err == nil ||
		!strings.Contains(err.Error(), `SCOUT_SUBMIT_TIMEOUT="soon"`) {
		t.Errorf("bad duration: %v", err)
	}
	good := relayConfig("relay.monitor.example:587")
	cases := []struct {
		name   string
		change func(*sender.Config)
		want   string
	}{
		{"site", func(c *sender.Config) { c.Site = "EU West" }, `SCOUT_SITE="EU West"`},
		{"return address", func(c *sender.Config) { c.ReturnAddress = "Scout <r@monitor.example>" }, "SCOUT_RETURN_ADDRESS"},
		{"delivery", func(c *sender.Config) { c.Delivery = "carrier-pigeon" }, `SCOUT_DELIVERY="carrier-pigeon"`},
		{"relay address", func(c *sender.Config) { c.RelayAddr = "relay.monitor.example" }, "SCOUT_RELAY_ADDR"},
		{"relay tls", func(c *sender.Config) { c.RelayTLS = "always" }, `tls mode "always"`},
		{"relay password", func(c *sender.Config) { c.RelayUsername = "scout" }, "SCOUT_RELAY_USERNAME/PASSWORD"},
		{"mx port", func(c *sender.Config) { c.Delivery, c.MXPort = "mx", 0 }, "SCOUT_MX_PORT=0"},
		{"submit timeout", func(c *sender.Config) { c.SubmitTimeout = 5 * time.Minute }, "SCOUT_SUBMIT_TIMEOUT=5m0s"},
		{"workers", func(c *sender.Config) { c.Workers = 0 }, "SCOUT_SENDER_WORKERS=0"},
		{"keys", func(c *sender.Config) { c.ProbeKeys = " " }, "SCOUT_PROBE_KEYS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
	bad := good
	bad.ProbeKeys = "acme:k1:dG9vc2hvcnQ" // a 8-byte secret
	if _, err := bad.Keyring(); err == nil || !strings.Contains(err.Error(), "SCOUT_PROBE_KEYS") || strings.Contains(err.Error(), "dG9vc2hvcnQ") {
		t.Errorf("short key: %v", err)
	}
}

// TestSecretsNeverPrinted: the key list and the relay password print as
// [redacted] with fmt (%v, %+v, %#v) and slog.
func TestSecretsNeverPrinted(t *testing.T) {
	cfg := relayConfig("relay.monitor.example:587")
	cfg.RelayPassword = "hunter2-password"
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", cfg, "keys", cfg.ProbeKeys, "password", cfg.RelayPassword)
	for _, out := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), buf.String()} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "BwcHBwcH") {
			t.Errorf("secret printed: %s", out)
		}
		if !strings.Contains(out, "redacted") {
			t.Errorf("no [redacted] marker: %s", out)
		}
	}
}

// TestSitesShareARegistry: senders of two sites register their metrics on
// one registry (all services in one process, `scout dev`), told apart by
// the site label; a second sender of the same site is refused.
func TestSitesShareARegistry(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	deps := sender.Deps{Checks: e.checks, JetStream: e.js, Publisher: e.publisherFor(), Keyring: e.keys, Registerer: reg}
	for _, s := range []string{"eu-west", "us-east"} {
		cfg := relayConfig("relay.monitor.example:587")
		cfg.Site = s
		if _, err := sender.New(cfg, deps); err != nil {
			t.Fatalf("site %s: %v", s, err)
		}
	}
	if _, err := sender.New(relayConfig("relay.monitor.example:587"), deps); err == nil {
		t.Error("a second sender for eu-west registered the same metrics")
	}
}
